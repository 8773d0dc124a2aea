// FaultIoQueue: an IoQueue that wraps another and injects faults by rule.
//
// Reliability is tested through the interface the code really uses (as
// RocksDB's FaultInjectionTestFS wraps the real file system): the store under
// test gets a FaultIoQueue around a real UringIoQueue or SyncIoQueue, and
// rules decide which operations fail and how:
//
//   kWriteError  the write never reaches the file; it completes with -error
//                (ENOSPC for a full disk, EIO for a device error).
//   kReadError   the read never reaches the file; it completes with -error.
//   kShortRead   the read runs; its completion reports `short_by` bytes fewer
//                than were transferred (0 when fewer were transferred).
//   kBitFlip     the read runs; one bit of the returned data is flipped
//                (at `flip_byte` within the operation's buffer, or a random
//                byte), the result is unchanged.
//
// A rule's candidates are the operations of its direction whose byte range
// overlaps [offset_begin, offset_end). Among candidates it fires on every
// `every_nth`-th one, then with `probability` (from a generator seeded at
// construction, so runs repeat), at most `max_fires` times. The first rule
// that fires wins; others do not count the operation as fired.
//
// Ownership: owns the wrapped queue. Thread safety: as IoQueue (one driving
// thread); AddRule/ClearRules/fired() also belong to the driving thread.
#pragma once

#include <cerrno>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string_view>
#include <vector>

#include "tiers/io_queue.h"
#include "tiers/status.h"

namespace kvtier {

enum class FaultKind : uint8_t { kWriteError, kReadError, kShortRead, kBitFlip };

struct FaultRule {
  static constexpr uint64_t kRandomByte = std::numeric_limits<uint64_t>::max();

  FaultKind kind = FaultKind::kReadError;
  int error = EIO;  // kWriteError / kReadError: the errno reported
  uint64_t offset_begin = 0;
  uint64_t offset_end = std::numeric_limits<uint64_t>::max();
  uint64_t every_nth = 1;    // 1: every candidate
  double probability = 1.0;  // 0..1
  uint64_t max_fires = std::numeric_limits<uint64_t>::max();
  uint32_t short_by = 4096;          // kShortRead
  uint64_t flip_byte = kRandomByte;  // kBitFlip: byte index within the op
};

// Rules from a comma-separated spec of KIND=PROBABILITY items, for a daemon
// run under fault injection (kvtierd --nvme-fault-inject, kvtier-crash-test):
//   read-eio       a read fails with EIO          (kReadError)
//   write-eio      a write fails with EIO         (kWriteError)
//   write-enospc   a write fails with ENOSPC      (kWriteError)
//   read-short     a read completes short         (kShortRead)
//   read-flip      a read returns one flipped bit (kBitFlip)
// PROBABILITY is in [0, 1]. InvalidArgument naming the bad item otherwise.
Result<std::vector<FaultRule>> ParseFaultSpec(std::string_view spec);

class FaultIoQueue final : public IoQueue {
 public:
  FaultIoQueue(std::unique_ptr<IoQueue> inner, uint64_t seed = 1);

  // Returns the rule's index (for fired()).
  size_t AddRule(const FaultRule& rule);
  void ClearRules();
  uint64_t fired(size_t rule) const { return rules_.at(rule).fired; }
  uint64_t total_fired() const { return total_fired_; }
  IoQueue& inner() { return *inner_; }

  std::string_view name() const override { return name_; }
  uint32_t depth() const override { return inner_->depth(); }
  uint32_t outstanding() const override { return inner_->outstanding() + synth_count_; }
  Status RegisterBuffers(std::span<const iovec> regions) override;
  Status RegisterFiles(std::span<const int> fds) override;
  Status Prepare(const IoRequest& request) override;
  Result<uint32_t> Submit() override { return inner_->Submit(); }
  size_t Poll(std::span<IoCompletion> out) override;
  Result<size_t> Wait(std::span<IoCompletion> out, size_t min_complete) override;
  // The wrapped queue's counters (injected errors are not in them).
  IoQueueStats stats() const override { return inner_->stats(); }

 private:
  struct RuleState {
    FaultRule rule;
    uint64_t candidates = 0;
    uint64_t fired = 0;
  };
  // An operation forwarded to the inner queue, by slot index.
  struct Slot {
    uint64_t user_data = 0;
    int rule = -1;  // kShortRead / kBitFlip rule to apply, or -1
    uint8_t* buf = nullptr;
  };

  int MatchRule(const IoRequest& r);
  size_t DrainSynthetic(std::span<IoCompletion> out);
  void Translate(std::span<IoCompletion> done);

  std::unique_ptr<IoQueue> inner_;
  std::string name_;
  std::mt19937_64 rng_;
  std::vector<RuleState> rules_;
  uint64_t total_fired_ = 0;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  std::vector<IoCompletion> synth_;  // ring of injected completions
  uint32_t synth_head_ = 0;
  uint32_t synth_count_ = 0;
};

}  // namespace kvtier
