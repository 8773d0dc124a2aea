// PrefillTiles for every prefill shape: every query row of every sequence in
// exactly one tile, tiles cut at the shape's row count, heaviest first. Runs
// without a GPU too: there the wgmma shapes fall back to shape 1's 128-row
// tiles; on an sm_90a GPU the three-consumer shape cuts 192-row tiles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "engine_adapter/engine/attention.h"
#include "engine_adapter/engine/attention_sm90.h"

namespace kvtier::engine {
namespace {

constexpr int kThreeConsumerShape = 11;  // attention.cu: wgmma shape 7

TEST(PrefillTilesTest, EveryRowOnceHeaviestFirstForEveryShape) {
  // Sequences of different lengths, some starting after cached pages (kv > q).
  const std::vector<int32_t> q = {1000, 17, 1, 4096, 193, 192};
  const std::vector<int32_t> kv = {1500, 17, 1, 4096, 400, 192};
  const int saved = PrefillVariant();
  for (int v = 0; v < NumPrefillVariants(); ++v) {
    SetPrefillVariant(v);
    ASSERT_EQ(PrefillVariant(), v);
    for (int head_dim : {64, 128}) {
      SCOPED_TRACE("shape " + std::to_string(v) + " (" + PrefillVariantName(v) + "), head_dim " +
                   std::to_string(head_dim));
      const int rows = PrefillTileRows(head_dim);
      if (v >= 4) {  // the wgmma shapes: shape 1's 128 rows where they cannot run
        const bool wgmma = WgmmaPrefillAvailable(head_dim);
        EXPECT_EQ(rows, wgmma && v == kThreeConsumerShape ? 192 : 128);
      } else {
        EXPECT_TRUE(rows == 64 || rows == 128) << rows;
      }
      const std::vector<int2> tiles = PrefillTiles(q, kv, head_dim);
      std::vector<std::vector<int>> covered(q.size());
      for (size_t s = 0; s < q.size(); ++s) covered[s].assign(q[s], 0);
      int64_t last_work = INT64_MAX;
      for (const int2& t : tiles) {
        ASSERT_GE(t.x, 0);
        ASSERT_LT(size_t(t.x), q.size());
        const int s = t.x, m0 = t.y;
        EXPECT_EQ(m0 % rows, 0) << "tile of sequence " << s << " at row " << m0;
        ASSERT_GE(m0, 0);
        ASSERT_LT(m0, q[s]);
        for (int r = m0; r < std::min(q[s], m0 + rows); ++r) ++covered[s][r];
        // Keys the tile's last row attends: the work, which never grows.
        const int64_t work = std::min<int64_t>(kv[s], int64_t(kv[s]) - q[s] + m0 + rows);
        EXPECT_LE(work, last_work);
        last_work = work;
      }
      for (size_t s = 0; s < q.size(); ++s)
        for (int r = 0; r < q[s]; ++r)
          ASSERT_EQ(covered[s][r], 1) << "sequence " << s << " row " << r;
    }
  }
  SetPrefillVariant(saved);
}

}  // namespace
}  // namespace kvtier::engine
