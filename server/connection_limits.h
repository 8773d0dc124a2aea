// Connection limits: what one client connection, and all connections of one
// uid together, may make kvtierd hold, and the accounting that enforces it.
//
// ConnectionLimits is the configuration (kvtierd flags, docs/security.md).
// UidUsage counts what every connection of one peer uid holds (atomics: the
// connections of a uid live on several RPC worker threads). ConnectionUsage
// counts what one connection holds; it is touched only on the event loop of
// the connection's worker thread, and shared (std::shared_ptr) by the
// connection and every capability object it made, so that it outlives them.
//
// Each Take* checks the connection's limit and its uid's, and on success
// counts; it returns ResourceExhausted naming the limit and its flag, and
// counts the refusal, otherwise. Every Take is undone by the matching Give.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "server/metrics.h"
#include "tiers/status.h"

namespace kvtier {

struct ConnectionLimits {
  // Connections.
  uint32_t max_connections = 1024;          // all peers together
  uint32_t max_connections_per_uid = 256;   // of one peer uid (SO_PEERCRED)
  // Memory a connection makes the daemon hold: its input buffer (a message
  // being received) and the answers it has not finished (Cap'n Proto keeps
  // an answer until the caller's Finish).
  uint64_t max_connection_memory = 128ull << 20;
  uint64_t max_uid_memory = 1ull << 30;
  // Calls received and not finished by the caller, per connection.
  uint32_t max_questions = 1024;
  // Leases (pinned prefixes) held.
  uint32_t max_leases = 4096;
  uint32_t max_uid_leases = 16384;
  // Write transactions not yet committed or aborted, and their blocks.
  uint32_t max_txns = 1024;
  uint32_t max_uid_txns = 4096;
  uint32_t max_uncommitted_blocks = 65536;
  uint32_t max_uid_uncommitted_blocks = 262144;
  // Priority ranges in one reserve.
  uint32_t max_priority_ranges = 256;
  // Timeouts, seconds (0: none). handshake: the first whole message; io: a
  // message begun must be whole, and unsent answers must make progress;
  // idle: a connection that holds nothing (no namespace, lease or
  // transaction) and is silent.
  uint32_t handshake_timeout_s = 10;
  uint32_t io_timeout_s = 30;
  uint32_t idle_timeout_s = 300;
  // Unsent answers above which a connection's questions are no longer read.
  uint64_t max_unread_answers = 4ull << 20;
};

struct UidUsage {
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> memory{0};
  std::atomic<int64_t> leases{0};
  std::atomic<int64_t> txns{0};
  std::atomic<int64_t> uncommitted_blocks{0};
};

// Peer uid -> its usage. Thread-safe.
class UidTable {
 public:
  std::shared_ptr<UidUsage> Get(uid_t uid) {
    std::lock_guard<std::mutex> l(mu_);
    auto& slot = map_[uid];
    if (!slot) slot = std::make_shared<UidUsage>();
    return slot;
  }

 private:
  std::mutex mu_;
  std::unordered_map<uid_t, std::shared_ptr<UidUsage>> map_;
};

class ConnectionUsage {
 public:
  // `limits` and `refused` outlive the connection; `uid_usage` may be null
  // (no per-uid accounting, e.g. an in-process client).
  ConnectionUsage(const ConnectionLimits* limits, RefusalMetrics* refused,
                  std::shared_ptr<UidUsage> uid_usage, uid_t uid = 0, pid_t pid = 0)
      : limits_(limits), refused_(refused), uid_(std::move(uid_usage)), uid_value_(uid),
        pid_(pid) {}
  ~ConnectionUsage() {
    if (uid_) uid_->memory.fetch_sub(memory_, std::memory_order_relaxed);
  }
  ConnectionUsage(const ConnectionUsage&) = delete;
  ConnectionUsage& operator=(const ConnectionUsage&) = delete;

  // No limits at all (a client in the daemon's own process, tests).
  static std::shared_ptr<ConnectionUsage> Unlimited() {
    static const ConnectionLimits kNone{
        .max_connections = UINT32_MAX, .max_connections_per_uid = UINT32_MAX,
        .max_connection_memory = UINT64_MAX, .max_uid_memory = UINT64_MAX,
        .max_questions = UINT32_MAX, .max_leases = UINT32_MAX, .max_uid_leases = UINT32_MAX,
        .max_txns = UINT32_MAX, .max_uid_txns = UINT32_MAX,
        .max_uncommitted_blocks = UINT32_MAX, .max_uid_uncommitted_blocks = UINT32_MAX,
        .max_priority_ranges = UINT32_MAX};
    return std::make_shared<ConnectionUsage>(&kNone, nullptr, nullptr);
  }

  const ConnectionLimits& limits() const { return *limits_; }
  uid_t uid() const { return uid_value_; }
  pid_t pid() const { return pid_; }
  void Count(Refusal r) {
    if (refused_ != nullptr) refused_->Count(r);
  }

  Status TakeLeases(int64_t n) {
    return Take(&ConnectionUsage::leases_, &UidUsage::leases, n, limits_->max_leases,
                limits_->max_uid_leases, Refusal::kLeases, "leases", "--max-leases",
                "--max-uid-leases");
  }
  void GiveLeases(int64_t n) { Give(&ConnectionUsage::leases_, &UidUsage::leases, n); }
  // A write transaction of `blocks` reserved blocks.
  Status TakeTxn(int64_t blocks) {
    KVTIER_RETURN_IF_ERROR(Take(&ConnectionUsage::txns_, &UidUsage::txns, 1, limits_->max_txns,
                                limits_->max_uid_txns, Refusal::kTxns,
                                "uncommitted write transactions", "--max-txns",
                                "--max-uid-txns"));
    Status st = Take(&ConnectionUsage::blocks_, &UidUsage::uncommitted_blocks, blocks,
                     limits_->max_uncommitted_blocks, limits_->max_uid_uncommitted_blocks,
                     Refusal::kUncommittedBlocks, "uncommitted blocks",
                     "--max-uncommitted-blocks", "--max-uid-uncommitted-blocks");
    if (!st.ok()) GiveTxn(0);
    return st;
  }
  void GiveTxn(int64_t blocks) {
    Give(&ConnectionUsage::txns_, &UidUsage::txns, 1);
    GiveBlocks(blocks);
  }
  // Part of a transaction's blocks (reserve took one per key, fewer were reserved).
  void GiveBlocks(int64_t blocks) {
    Give(&ConnectionUsage::blocks_, &UidUsage::uncommitted_blocks, blocks);
  }
  void AddNamespace(int delta) { namespaces_ += delta; }

  // Memory (bytes) held for the connection; false when taking `delta` more
  // would pass its limit or its uid's (nothing is taken then).
  bool ChargeMemory(int64_t delta) {
    if (delta > 0) {
      if (static_cast<uint64_t>(memory_ + delta) > limits_->max_connection_memory) return false;
      if (uid_ && static_cast<uint64_t>(uid_->memory.load(std::memory_order_relaxed) + delta) >
                      limits_->max_uid_memory)
        return false;
    }
    memory_ += delta;
    if (uid_) uid_->memory.fetch_add(delta, std::memory_order_relaxed);
    return true;
  }
  int64_t memory() const { return memory_; }

  // Holds no namespace, lease or transaction (the idle timeout applies).
  bool holds_nothing() const { return namespaces_ == 0 && leases_ == 0 && txns_ == 0; }
  int64_t leases() const { return leases_; }
  int64_t txns() const { return txns_; }

 private:
  Status Take(int64_t ConnectionUsage::*mine, std::atomic<int64_t> UidUsage::*theirs, int64_t n,
              uint64_t limit, uint64_t uid_limit, Refusal reason, const char* what,
              const char* flag, const char* uid_flag) {
    if (static_cast<uint64_t>(this->*mine + n) > limit) {
      Count(reason);
      return Status::ResourceExhausted("this connection holds " + std::to_string(this->*mine) +
                                       " " + what + "; " + std::to_string(n) +
                                       " more would pass the limit of " + std::to_string(limit) +
                                       " (" + flag + ")");
    }
    if (uid_) {
      const int64_t now = ((*uid_).*theirs).fetch_add(n, std::memory_order_relaxed);
      if (static_cast<uint64_t>(now + n) > uid_limit) {
        ((*uid_).*theirs).fetch_sub(n, std::memory_order_relaxed);
        Count(reason);
        return Status::ResourceExhausted("uid " + std::to_string(uid_value_) + " holds " +
                                         std::to_string(now) + " " + what + "; " +
                                         std::to_string(n) + " more would pass the limit of " +
                                         std::to_string(uid_limit) + " (" + uid_flag + ")");
      }
    }
    this->*mine += n;
    return Status::OK();
  }
  void Give(int64_t ConnectionUsage::*mine, std::atomic<int64_t> UidUsage::*theirs, int64_t n) {
    this->*mine -= n;
    if (uid_) ((*uid_).*theirs).fetch_sub(n, std::memory_order_relaxed);
  }

  const ConnectionLimits* limits_;
  RefusalMetrics* refused_;
  std::shared_ptr<UidUsage> uid_;
  uid_t uid_value_;
  pid_t pid_;
  int64_t leases_ = 0, txns_ = 0, blocks_ = 0, namespaces_ = 0, memory_ = 0;
};

}  // namespace kvtier
