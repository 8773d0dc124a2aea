// Several models of other block sizes through one tier (bench/sim_multi.cc):
// each keeps about the hit rate of a private tier of its share of demand.
#include "bench/sim_multi.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "tests/bench/sim_test_util.h"

namespace kvtier::bench {
namespace {

// `prompts` distinct prompts of `len` blocks (ids unique per model), chosen
// with Zipf-like popularity (weight 1/(k+1)^0.9): a stationary demand.
Trace ZipfTrace(uint32_t prompts, uint32_t len, uint32_t requests, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> w(prompts);
  for (uint32_t k = 0; k < prompts; ++k) w[k] = 1.0 / std::pow(k + 1.0, 0.9);
  std::discrete_distribution<uint32_t> pick(w.begin(), w.end());
  std::vector<std::vector<uint64_t>> reqs;
  for (uint32_t i = 0; i < requests; ++i) {
    const uint32_t p = pick(rng);
    std::vector<uint64_t> blocks;
    for (uint32_t b = 0; b < len; ++b) blocks.push_back(uint64_t{p} * len + b);
    reqs.push_back(std::move(blocks));
  }
  return MakeTrace(reqs);
}

// Three models alternate request by request: 16 KiB, 100 KiB and 2 MiB
// blocks, demands of different sizes. The shared tier moves regions between
// them; each model's hit rate stays within 10% of a private tier sized by its
// share of the demand.
TEST(MultiModelTest, AlternatingModelsKeepTheHitRateOfTheirProportionalShare) {
  Trace small = ZipfTrace(3000, 8, 6000, 1);
  Trace mid = ZipfTrace(1500, 8, 6000, 2);
  Trace big = ZipfTrace(200, 4, 6000, 3);
  std::vector<SimModel> models = {{"16k", &small, 16 << 10},
                                  {"100k", &mid, 100 << 10},
                                  {"2m", &big, 2 << 20}};
  uint64_t distinct = 0;
  for (const SimModel& m : models) distinct += uint64_t{m.trace->num_unique_blocks} * m.block_bytes;
  MultiReplayOptions o;
  o.policy = "lru";
  o.capacity_bytes = distinct / 5;  // a fifth of what the models could ever use
  o.region_bytes = 8 << 20;
  o.layout = MultiLayout::kShared;
  auto shared = ReplayModels(models, o);
  ASSERT_TRUE(shared.ok()) << shared.status().ToString();
  o.layout = MultiLayout::kProportional;
  auto priv = ReplayModels(models, o);
  ASSERT_TRUE(priv.ok()) << priv.status().ToString();
  EXPECT_EQ(shared->no_space_blocks, 0u);
  EXPECT_GT(shared->regions_moved, 0u);
  for (size_t i = 0; i < models.size(); ++i) {
    const double s = shared->models[i].block_rate(), p = priv->models[i].block_rate();
    EXPECT_GT(p, 0.2) << models[i].name;  // the comparison means something
    EXPECT_GE(s, 0.9 * p) << models[i].name << ": shared " << s << ", private " << p;
    std::printf("%-5s shared %.4f  proportional %.4f\n", models[i].name.c_str(), s, p);
  }
}

}  // namespace
}  // namespace kvtier::bench
