// Fuzzes the NVMe tier's decoders of bytes read back from disk: the extent
// header (tiers/nvme_format.h), the superblock, and the RocksDB index value
// (tiers/nvme_index.h). The first input byte picks the decoder. A decoder
// must answer an error for anything malformed and never read past its
// input; what it accepts must encode back to an equivalent value.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tiers/nvme_format.h"
#include "tiers/nvme_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvtier;
  if (size < 1) return 0;
  const uint8_t which = data[0] % 3;
  ++data;
  --size;
  if (which == 0) {
    // The header decoder reads exactly kExtentHeaderBytes: give it those
    // (the input, zero-padded), in a buffer of that size only.
    std::vector<uint8_t> block(kExtentHeaderBytes, 0);
    std::memcpy(block.data(), data, std::min<size_t>(size, block.size()));
    auto h = DecodeExtentHeader(block.data());
    if (h.ok()) {
      std::vector<uint8_t> again(kExtentHeaderBytes, 0);
      EncodeExtentHeader(*h, again.data());
      auto back = DecodeExtentHeader(again.data());
      if (!back.ok() || back->generation != h->generation || back->checksum != h->checksum ||
          back->payload_bytes != h->payload_bytes || back->ns != h->ns)
        __builtin_trap();
    }
  } else if (which == 1) {
    std::vector<uint8_t> block(kSuperblockBytes, 0);
    std::memcpy(block.data(), data, std::min<size_t>(size, block.size()));
    (void)DecodeSuperblock(block.data());
  } else {
    const std::string bytes(reinterpret_cast<const char*>(data), size);
    auto r = DecodeIndexRecord(bytes);
    if (r.ok()) {
      auto back = DecodeIndexRecord(EncodeIndexRecord(*r));
      if (!back.ok()) __builtin_trap();
    }
  }
  return 0;
}
