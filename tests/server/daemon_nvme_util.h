// Helpers of the daemon tests with an NVMe tier: flags, keys of numbered
// prompts, stores whose bytes are a function of the key, and an audit that
// loads every key on its own and compares its bytes.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tests/server/daemon_fixture.h"

namespace kvtier::testing {

inline std::vector<std::string> NvmeFlags(const std::string& policy) {
  return {"--nvme-capacity", "256M", "--nvme-write-policy", policy, "--nvme-queue-depth", "64"};
}

inline std::vector<BlockKey> Keys(const ClientNamespace& ns, uint32_t prompt, size_t blocks) {
  std::vector<uint32_t> tokens(blocks * ns.spec().layout.tokens_per_block);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(prompt * 7777777 + i);
  return ns.HashTokens(tokens);
}

// Looks each key up on its own and compares the bytes of those found with
// FillFromKey's; adds to *found and *wrong (a load that fails is wrong).
inline void AuditKeys(ClientNamespace& ns, std::span<const BlockKey> keys, size_t* found,
                      size_t* wrong) {
  std::vector<uint8_t> got(ns.block_bytes()), want(got.size());
  for (const BlockKey& k : keys) {
    auto lease = ns.Lookup(std::span(&k, 1));
    if (!lease.ok() || lease->empty()) continue;
    uint8_t* dst = got.data();
    Status st = ns.Load(*lease, std::span(&dst, 1));
    FillFromKey(k, want.data(), want.size());
    if (!st.ok() || got != want) ++*wrong;
    ++*found;
  }
}

// Looks every key up on its own and checks the bytes of those found.
// Returns {found, wrong}.
// Prompts [first, first + prompts) of `blocks` blocks each.
inline std::pair<size_t, size_t> Audit(const std::string& socket, uint32_t prompts, size_t blocks,
                                       uint32_t first = 0) {
  auto c = Client::Connect(socket);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return {0, 0};
  auto ns = (*c)->OpenNamespace(DemoSpec());
  size_t found = 0, wrong = 0;
  for (uint32_t p = first; p < first + prompts; ++p)
    AuditKeys(**ns, Keys(**ns, p, blocks), &found, &wrong);
  return {found, wrong};
}

// Stores keys[i] with the bytes FillFromKey gives it.
inline Status StoreKeys(ClientNamespace& ns, std::span<const BlockKey> keys) {
  std::vector<std::vector<uint8_t>> bufs(keys.size(), std::vector<uint8_t>(ns.block_bytes()));
  std::vector<const uint8_t*> ptrs;
  for (size_t i = 0; i < keys.size(); ++i) {
    FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
    ptrs.push_back(bufs[i].data());
  }
  auto r = ns.Store(keys, ptrs);
  return r.ok() ? Status::OK() : r.status();
}

// Stores `prompts` prompts of `blocks` blocks, bytes from their keys.
inline void StorePrompts(ClientNamespace& ns, uint32_t first, uint32_t prompts, size_t blocks) {
  std::vector<std::vector<uint8_t>> bufs(blocks, std::vector<uint8_t>(ns.block_bytes()));
  for (uint32_t p = first; p < first + prompts; ++p) {
    auto keys = Keys(ns, p, blocks);
    std::vector<const uint8_t*> ptrs;
    for (size_t i = 0; i < keys.size(); ++i) {
      FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
      ptrs.push_back(bufs[i].data());
    }
    auto r = ns.Store(keys, ptrs);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->stored, blocks);
  }
}


}  // namespace kvtier::testing
