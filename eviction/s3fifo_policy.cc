// "s3fifo": S3-FIFO (Yang et al., "FIFO queues are all you need for cache
// eviction", SOSP 2023).
//
// Three FIFO queues: a small queue S (about 10% of the tracked blocks) where
// new blocks land, a main queue M (the rest), and a ghost queue G of the
// fingerprints of blocks that left S without being hit. Each tracked block has
// a 2-bit hit counter (Touch saturates it at 3; no list moves on a hit).
//
//  - Track: a block whose fingerprint is in G (it came back soon after being
//    dropped) goes straight to M; any other block goes to S. Counter = 0.
//  - Victim, from S when |S| >= max(1, size/10) (else from M): walking S from
//    its old end, a block hit at least once moves to M keeping its counter;
//    the first eligible unhit block is the victim. Walking M from its old
//    end, a block with counter > 0 is reinserted at M's new end with the
//    counter decremented; the first eligible block with counter 0 is the
//    victim. If the first queue yields nothing the other one is tried.
//  - Remove of a block that is in S records its fingerprint in G.
//
// Ids are reused, so G is keyed by BlockMeta::fingerprint (0 = unknown: such
// blocks never enter G). The 10%/90% split is of the blocks tracked now (the
// tier calls PickVictim when full, so that is its capacity); G remembers the
// last N fingerprints where N follows the high-water mark of tracked blocks
// (grown by 25% steps, so G holds 100-125% of it, like M plus slack).
//
// Costs: Track/Touch/Remove O(1); PickVictim calls `eligible` at most max_scan
// times; its promotions and reinsertions are amortized O(1) against the
// Touch and Track calls that earned them. Memory: 24 bytes per id slot plus
// G (20-32 bytes per remembered fingerprint).
#include <algorithm>
#include <vector>

#include "eviction/builtin_policies.h"
#include "eviction/fingerprint_fifo.h"
#include "eviction/intrusive_list.h"

namespace kvtier::internal {
namespace {

constexpr uint8_t kNotQueued = 0;
constexpr uint8_t kSmall = 1;
constexpr uint8_t kMain = 2;
constexpr uint8_t kMaxFreq = 3;
constexpr size_t kMinGhost = 1024;

struct S3Node {
  ListLinks links;
  uint64_t fingerprint = 0;
  uint8_t freq = 0;
  uint8_t queue = kNotQueued;
};

class S3FifoPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "s3fifo"; }

  void Track(BlockId id, const BlockMeta& meta) override {
    if (id >= nodes_.size()) nodes_.resize(static_cast<size_t>(id) + 1);
    S3Node& n = nodes_[id];
    if (n.queue != kNotQueued) return;  // REQUIRES violated; keep the structure sound
    n.fingerprint = meta.fingerprint;
    n.freq = 0;
    if (meta.fingerprint != 0 && ghost_.Erase(meta.fingerprint)) {
      n.queue = kMain;
      main_.PushFront(nodes_.data(), id);
    } else {
      n.queue = kSmall;
      small_.PushFront(nodes_.data(), id);
    }
    const size_t tracked = size();
    if (tracked > high_water_) {
      high_water_ = tracked;
      if (high_water_ > ghost_.capacity()) ghost_.Resize(high_water_ + high_water_ / 4);
    }
  }

  void Touch(BlockId id) override {
    if (id >= nodes_.size()) return;
    S3Node& n = nodes_[id];
    if (n.queue != kNotQueued && n.freq < kMaxFreq) ++n.freq;
  }

  void Remove(BlockId id) override {
    if (id >= nodes_.size()) return;
    S3Node& n = nodes_[id];
    if (n.queue == kSmall) {
      small_.Unlink(nodes_.data(), id);
      ghost_.Insert(n.fingerprint);  // no-op for fingerprint 0
    } else if (n.queue == kMain) {
      main_.Unlink(nodes_.data(), id);
    } else {
      return;
    }
    n.queue = kNotQueued;
  }

  BlockId PickVictim(const std::function<bool(BlockId)>& eligible, size_t max_scan) override {
    const size_t small_target = std::max<size_t>(1, size() / 10);
    BlockId victim;
    if (small_.size() >= small_target || main_.empty()) {
      victim = FromSmall(eligible, max_scan);
      if (victim == kNoBlock) victim = FromMain(eligible, max_scan);
    } else {
      victim = FromMain(eligible, max_scan);
      if (victim == kNoBlock) victim = FromSmall(eligible, max_scan);
    }
    return victim;
  }

  size_t size() const override { return small_.size() + main_.size(); }

  size_t MemoryUsage() const override {
    return sizeof(*this) + nodes_.capacity() * sizeof(S3Node) + ghost_.MemoryUsage();
  }

 private:
  using List = IntrusiveList<&S3Node::links>;

  BlockId FromSmall(const std::function<bool(BlockId)>& eligible, size_t& budget) {
    S3Node* nodes = nodes_.data();
    for (BlockId id = small_.back(); id != kNoBlock;) {
      const BlockId prev = List::Prev(nodes, id);
      S3Node& n = nodes[id];
      if (n.freq > 0) {  // hit while in S: promote, keep the counter
        small_.Unlink(nodes, id);
        n.queue = kMain;
        main_.PushFront(nodes, id);
      } else {
        if (budget == 0) return kNoBlock;
        --budget;
        if (eligible(id)) return id;
      }
      id = prev;
    }
    return kNoBlock;
  }

  BlockId FromMain(const std::function<bool(BlockId)>& eligible, size_t& budget) {
    S3Node* nodes = nodes_.data();
    for (BlockId id = main_.back(); id != kNoBlock;) {
      const BlockId prev = List::Prev(nodes, id);
      S3Node& n = nodes[id];
      if (n.freq > 0) {  // reinsert with one hit spent
        --n.freq;
        if (prev != kNoBlock) {  // the newest block just loses a hit in place
          main_.MoveToFront(nodes, id);
          id = prev;
        }
        continue;
      }
      if (budget == 0) return kNoBlock;
      --budget;
      if (eligible(id)) return id;
      id = prev;
    }
    return kNoBlock;
  }

  std::vector<S3Node> nodes_;
  List small_;
  List main_;
  FingerprintFifo ghost_{kMinGhost};
  size_t high_water_ = 0;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewS3FifoPolicy() { return std::make_unique<S3FifoPolicy>(); }

}  // namespace kvtier::internal
