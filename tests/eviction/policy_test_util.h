// Helpers shared by the eviction policy tests.
#pragma once

#include <vector>

#include "eviction/policy.h"

namespace kvtier::eviction_test {

// An eligibility predicate that accepts every block.
inline bool All(BlockId) { return true; }

// Victims in the order the policy gives them, each removed as it is picked,
// until the policy has none.
inline std::vector<BlockId> Drain(EvictionPolicy& p) {
  std::vector<BlockId> order;
  for (BlockId v = p.PickVictim(All); v != kNoBlock; v = p.PickVictim(All)) {
    order.push_back(v);
    p.Remove(v);
  }
  return order;
}

}  // namespace kvtier::eviction_test
