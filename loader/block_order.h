// OrderByPage: the host-side sort behind the GPU copier's write order
// (loader/gpu_copy.h, Options::write_order). Loads copy blocks in pool-page
// order so that the CTAs in flight write neighbouring pages; the checksum
// sums keep the caller's order through BlockRef::sum_index.
//
// A stable LSD radix sort on the page's bytes (as many byte passes as the
// largest page needs). It runs on the launch path of every load, so its
// passes stay in ordinary memory and `out` (the copier's pinned staging
// buffer, which may be slow to read) is written once, sequentially or by the
// last pass, and never read.
//
// Thread safety: a plain function; `tmp` belongs to the calling thread.
#pragma once

#include <span>
#include <vector>

#include "loader/paged_transfer.h"

namespace kvtier {

// Writes `in` ordered by page (stable: equal pages keep their order) into
// out[0, in.size()), each entry's sum_index set to its index in `in`. `tmp`
// is scratch, grown as needed. REQUIRES: `out` holds in.size() entries and
// does not overlap `in` or `*tmp`.
void OrderByPage(std::span<const BlockRef> in, BlockRef* out, std::vector<BlockRef>* tmp);

}  // namespace kvtier
