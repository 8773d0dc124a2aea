// NVMe tier on-disk format. See tiers/nvme_format.h and docs/nvme-format.md.
#include "tiers/nvme_format.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "tiers/checksum.h"

namespace kvtier {
namespace {

constexpr char kExtentMagic[8] = {'K', 'V', 'T', 'E', 'X', 'T', '0', '1'};
constexpr char kSuperMagic[8] = {'K', 'V', 'T', 'S', 'U', 'P', 'R', '1'};
// The last 8 bytes of a header or superblock hold Sum64 of the bytes before.
constexpr size_t kChecksumAt = 4088;

// Extent header field offsets.
constexpr size_t kHMagic = 0, kHVersion = 8, kHHeaderBytes = 12, kHTag = 16, kHNs = 32,
                 kHReserved = 36, kHGeneration = 40, kHPayload = 48, kHChecksum = 56,
                 kHOffset = 64;
// Superblock field offsets.
constexpr size_t kSMagic = 0, kSVersion = 8, kSBlockBytes = 12, kSEpoch = 16, kSRegion = 24,
                 kSCapacity = 32, kSDataOffset = 40;

void PutU32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void PutU64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t GetU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

void EncodeExtentHeader(const ExtentHeader& h, uint8_t* out) {
  std::memset(out, 0, kExtentHeaderBytes);
  std::memcpy(out + kHMagic, kExtentMagic, 8);
  PutU32(out + kHVersion, kNvmeFormatVersion);
  PutU32(out + kHHeaderBytes, static_cast<uint32_t>(kExtentHeaderBytes));
  std::memcpy(out + kHTag, h.tag.data(), 16);
  PutU32(out + kHNs, h.ns);
  PutU32(out + kHReserved, 0);
  PutU64(out + kHGeneration, h.generation);
  PutU64(out + kHPayload, h.payload_bytes);
  PutU64(out + kHChecksum, h.checksum);
  PutU64(out + kHOffset, h.extent_offset);
  PutU64(out + kChecksumAt, checksum::Sum64(out, kChecksumAt));
}

Result<ExtentHeader> DecodeExtentHeader(const uint8_t* in) {
  if (std::memcmp(in + kHMagic, kExtentMagic, 8) != 0) {
    return Status::Corruption("extent header: bad magic");
  }
  if (GetU64(in + kChecksumAt) != checksum::Sum64(in, kChecksumAt)) {
    return Status::Corruption("extent header: header checksum mismatch");
  }
  if (GetU32(in + kHVersion) != kNvmeFormatVersion) {
    return Status::Corruption("extent header: unknown format version " +
                              std::to_string(GetU32(in + kHVersion)));
  }
  if (GetU32(in + kHHeaderBytes) != kExtentHeaderBytes) {
    return Status::Corruption("extent header: header_bytes is not 4096");
  }
  ExtentHeader h;
  std::memcpy(h.tag.data(), in + kHTag, 16);
  h.ns = GetU32(in + kHNs);
  h.generation = GetU64(in + kHGeneration);
  h.payload_bytes = GetU64(in + kHPayload);
  h.checksum = GetU64(in + kHChecksum);
  h.extent_offset = GetU64(in + kHOffset);
  return h;
}

Status VerifyExtentHeader(const uint8_t* in, const NvmeExtent& e) {
  KVTIER_ASSIGN_OR_RETURN(ExtentHeader h, DecodeExtentHeader(in));
  if (h.extent_offset != e.offset) {
    return Status::Corruption("extent header: written for offset " + Hex(h.extent_offset) +
                              ", read at " + Hex(e.offset));
  }
  if (h.tag != e.tag) return Status::Corruption("extent header: tag mismatch (stale extent)");
  if (h.generation != e.generation) {
    return Status::Corruption("extent header: generation " + Hex(h.generation) + ", expected " +
                              Hex(e.generation));
  }
  if (h.ns != e.ns) return Status::Corruption("extent header: namespace mismatch");
  if (h.payload_bytes != e.payload_bytes) {
    return Status::Corruption("extent header: payload size " + std::to_string(h.payload_bytes) +
                              ", expected " + std::to_string(e.payload_bytes));
  }
  if (h.checksum != e.checksum) {
    return Status::Corruption("extent header: payload checksum differs from the index");
  }
  return Status::OK();
}

void EncodeSuperblock(const Superblock& sb, uint8_t* out) {
  std::memset(out, 0, kSuperblockBytes);
  std::memcpy(out + kSMagic, kSuperMagic, 8);
  PutU32(out + kSVersion, kNvmeFormatVersion);
  PutU32(out + kSBlockBytes, static_cast<uint32_t>(kNvmeBlockBytes));
  PutU64(out + kSEpoch, sb.epoch);
  PutU64(out + kSRegion, sb.region_bytes);
  PutU64(out + kSCapacity, sb.capacity);
  PutU64(out + kSDataOffset, kDataOffset);
  PutU64(out + kChecksumAt, checksum::Sum64(out, kChecksumAt));
}

Result<Superblock> DecodeSuperblock(const uint8_t* in) {
  if (std::memcmp(in + kSMagic, kSuperMagic, 8) != 0) {
    return Status::NotFound("superblock: no magic");
  }
  if (GetU64(in + kChecksumAt) != checksum::Sum64(in, kChecksumAt)) {
    return Status::Corruption("superblock: checksum mismatch");
  }
  uint32_t version = GetU32(in + kSVersion);
  if (version != kNvmeFormatVersion || GetU64(in + kSDataOffset) != kDataOffset ||
      GetU32(in + kSBlockBytes) != kNvmeBlockBytes) {
    return Status::InvalidArgument("superblock: format version " + std::to_string(version) +
                                   " is not supported by this build (" +
                                   std::to_string(kNvmeFormatVersion) + ")");
  }
  Superblock sb;
  sb.epoch = GetU64(in + kSEpoch);
  sb.region_bytes = GetU64(in + kSRegion);
  sb.capacity = GetU64(in + kSCapacity);
  return sb;
}

}  // namespace kvtier
