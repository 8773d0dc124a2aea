// Lease::State: what a Lease shares with the NVMe tier while promotions of
// its blocks are in flight. Private to cache/.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>

#include "cache/cache.h"

namespace kvtier {

struct Lease::State {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Lease::Block> blocks;
  std::vector<bool> failed;      // per block: its promotion failed (entry gone or unpinned)
  size_t pending = 0;            // promotions outstanding
  bool released = false;         // Release() ran while promotions were pending
  std::function<void()> on_ready;
};

}  // namespace kvtier
