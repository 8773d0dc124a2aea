#include "loader/block_order.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

namespace kvtier {

namespace {

// Histograms of page bytes [0, bytes) of `in`.
void Count(std::span<const BlockRef> in, int first, int bytes,
           std::array<std::array<uint32_t, 256>, 4>* count) {
  for (const BlockRef& r : in)
    for (int d = first; d < bytes; ++d) ++(*count)[d][(r.page >> (8 * d)) & 0xff];
}

}  // namespace

void OrderByPage(std::span<const BlockRef> in, BlockRef* out, std::vector<BlockRef>* tmp) {
  const size_t n = in.size();
  // One read of `in`: the largest page, whether it is sorted already, and the
  // histograms of the two low page bytes (pools of up to 65,536 pages need
  // no more; larger pages get their high bytes counted in a second read).
  std::array<std::array<uint32_t, 256>, 4> count{};
  uint32_t max_page = 0;
  bool sorted = true;
  uint32_t prev = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t p = in[i].page;
    max_page = std::max(max_page, p);
    sorted = sorted && p >= prev;
    prev = p;
    ++count[0][p & 0xff];
    ++count[1][(p >> 8) & 0xff];
  }
  if (sorted) {
    for (size_t i = 0; i < n; ++i) {
      out[i] = in[i];
      out[i].sum_index = static_cast<uint32_t>(i);
    }
    return;
  }
  int passes = 1;
  while (passes < 4 && (max_page >> (8 * passes)) != 0) ++passes;
  if (passes > 2) Count(in, 2, passes, &count);
  // Passes go in -> tmp -> tmp' -> ... -> out: the last pass writes `out`,
  // the others stay in ordinary memory.
  if (tmp->size() < 2 * n) tmp->resize(2 * n);
  BlockRef* half[2] = {tmp->data(), tmp->data() + n};
  std::array<uint32_t, 256> start;
  auto starts = [&](int d) {
    uint32_t sum = 0;
    for (int b = 0; b < 256; ++b) {
      start[b] = sum;
      sum += count[d][b];
    }
  };
  // Pass 0 reads `in` and numbers the entries.
  BlockRef* dst = passes == 1 ? out : half[0];
  starts(0);
  for (size_t i = 0; i < n; ++i) {
    BlockRef r = in[i];
    r.sum_index = static_cast<uint32_t>(i);
    dst[start[r.page & 0xff]++] = r;
  }
  for (int d = 1; d < passes; ++d) {
    const BlockRef* src = dst;
    dst = d == passes - 1 ? out : half[d % 2];
    starts(d);
    const uint32_t shift = 8 * d;
    for (size_t i = 0; i < n; ++i) dst[start[(src[i].page >> shift) & 0xff]++] = src[i];
  }
}

}  // namespace kvtier
