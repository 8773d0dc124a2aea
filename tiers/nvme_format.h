// NVMe tier on-disk format: constants, the 4 KiB extent header and the
// superblock. The byte-by-byte layout and the crash-safety argument are in
// docs/nvme-format.md; this file is its executable form.
//
// File layout:
//   [0, 4 KiB)        superblock copy A
//   [4 KiB, 8 KiB)    superblock copy B (copies alternate by open epoch)
//   [8 KiB, 1 MiB)    unused (keeps data 1 MiB aligned)
//   [1 MiB, ...)      regions of region_bytes, each cut into extents
// An extent is one 4 KiB header followed by the payload padded to 4 KiB.
//
// tiers/ knows nothing of keys: a block is named by an opaque 16-byte tag.
// All functions are pure (values in, values out); thread-safe.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

#include "tiers/status.h"

namespace kvtier {

static_assert(std::endian::native == std::endian::little, "the on-disk format is little-endian");

// Every file offset, I/O length and buffer address of the NVMe tier is a
// multiple of this (O_DIRECT with 4 KiB logical-block devices).
inline constexpr uint64_t kNvmeBlockBytes = 4096;
inline constexpr uint64_t kExtentHeaderBytes = 4096;
inline constexpr uint64_t kSuperblockBytes = 4096;
inline constexpr uint64_t kDataOffset = 1ull << 20;
inline constexpr uint32_t kNvmeFormatVersion = 1;
// Largest payload of one extent (one I/O length must fit an int32 result).
inline constexpr uint64_t kMaxPayloadBytes = 1ull << 30;

using ExtentTag = std::array<uint8_t, 16>;

inline constexpr uint64_t RoundUpToBlock(uint64_t n) {
  return (n + kNvmeBlockBytes - 1) / kNvmeBlockBytes * kNvmeBlockBytes;
}
// Bytes an extent needs on disk: header + payload padded to 4 KiB.
inline constexpr uint64_t ExtentBytesNeeded(uint64_t payload_bytes) {
  return kExtentHeaderBytes + RoundUpToBlock(payload_bytes);
}

// Where an extent lives and what it must contain: the index record minus
// the priority. Returned by a completed write; passed to reads, frees and
// recovery.
struct NvmeExtent {
  uint64_t offset = 0;         // file offset of the extent's header
  uint64_t payload_bytes = 0;  // unpadded payload size
  uint64_t checksum = 0;       // checksum::Sum64 of the payload_bytes bytes
  uint64_t generation = 0;     // unique per write of this file (epoch << 40 | seq)
  ExtentTag tag{};
  uint32_t ns = 0;  // namespace id, opaque here

  bool operator==(const NvmeExtent&) const = default;
};

// Decoded extent header. Its fields mirror NvmeExtent (offset = where the
// header says it was written).
struct ExtentHeader {
  ExtentTag tag{};
  uint32_t ns = 0;
  uint64_t generation = 0;
  uint64_t payload_bytes = 0;
  uint64_t checksum = 0;
  uint64_t extent_offset = 0;
};

// Writes the kExtentHeaderBytes bytes of `h` (zero padding included) to `out`.
void EncodeExtentHeader(const ExtentHeader& h, uint8_t* out);

// Errors: Corruption (bad magic, version, header checksum or header_bytes).
Result<ExtentHeader> DecodeExtentHeader(const uint8_t* in);

// Decodes `in` and checks it describes exactly `expected` (tag, namespace,
// generation, payload size, checksum, offset). Errors: Corruption, whose
// message names the first field that differs.
Status VerifyExtentHeader(const uint8_t* in, const NvmeExtent& expected);

// The superblock: identifies a kvtier NVMe file and carries the open epoch
// from which generations are drawn. Geometry fields are informational: the
// allocator's geometry comes from the options, and recovery re-validates
// every extent against it.
struct Superblock {
  uint64_t epoch = 0;         // incremented and written at every open
  uint64_t region_bytes = 0;  // geometry of the last open
  uint64_t capacity = 0;
};

// Writes kSuperblockBytes bytes.
void EncodeSuperblock(const Superblock& sb, uint8_t* out);

// Errors: NotFound (no magic: the copy was never written), Corruption (bad
// checksum: a torn write), InvalidArgument (written by a newer format).
Result<Superblock> DecodeSuperblock(const uint8_t* in);

}  // namespace kvtier
