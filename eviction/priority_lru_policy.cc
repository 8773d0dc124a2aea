// "priority-lru": 101 priority levels (0..100), each an LRU list; the victim
// is the coldest eligible block of the lowest non-empty level.
//
// Retention: a block tracked with a non-zero retention_deadline_ns keeps its
// priority until that time, then falls back to kDefaultPriority. Deadlines sit
// in a min-heap and are applied lazily at the start of PickVictim and Touch
// (the only moments the order matters). An expired block is moved to the COLD
// end of the default level: it was not touched during its whole retention
// (a touch would have kept it hot within its level but never renewed the
// deadline), so among default-priority blocks it is the least recently
// proven useful one. Placing it at the hot end would let a stale
// high-priority block outlive fresh default ones by another full LRU cycle.
//
// Removal does not search the heap: each Track bumps the id's generation and
// heap entries carry the generation they were made for, so an entry left by
// a removed block is recognised as stale and ignored, even after the id is
// reused. Stale entries are compacted away once they outnumber live ones, so
// the heap stays O(pending deadlines).
//
// Costs: Track/Touch/Remove O(1) (O(log d) with d pending deadlines),
// PickVictim O(levels skipped via a 128-bit occupancy mask + max_scan).
// Memory: 16 bytes per id slot, plus 16 bytes per pending deadline.
#include <algorithm>
#include <array>
#include <bit>
#include <utility>
#include <vector>

#include "eviction/builtin_policies.h"
#include "eviction/deadline_heap.h"
#include "eviction/intrusive_list.h"

namespace kvtier::internal {
namespace {

constexpr int kLevels = kMaxPriority + 1;
constexpr uint8_t kTracked = 1;
constexpr uint8_t kPending = 2;  // has a live entry in the deadline heap

struct PrioNode {
  ListLinks links;
  uint32_t gen = 0;  // bumped on every Track
  uint8_t level = 0;
  uint8_t flags = 0;
};
static_assert(sizeof(PrioNode) == 16);


class PriorityLruPolicy final : public EvictionPolicy {
 public:
  explicit PriorityLruPolicy(ClockFn clock) : clock_(std::move(clock)) {}

  std::string_view name() const override { return "priority-lru"; }

  void Track(BlockId id, const BlockMeta& meta) override {
    if (id >= nodes_.size()) nodes_.resize(static_cast<size_t>(id) + 1);
    PrioNode& n = nodes_[id];
    if (n.flags & kTracked) return;  // REQUIRES violated; keep the structure sound
    ++n.gen;
    n.flags = kTracked;
    int level = std::min<int>(meta.priority, kMaxPriority);
    if (meta.retention_deadline_ns != 0 && level != kDefaultPriority) {
      if (meta.retention_deadline_ns <= clock_()) {
        level = kDefaultPriority;  // already expired: stored as a default block
      } else {
        deadlines_.Push(meta.retention_deadline_ns, id, n.gen);
        n.flags |= kPending;
      }
    }
    n.level = static_cast<uint8_t>(level);
    LinkFront(level, id);
    ++size_;
  }

  void Touch(BlockId id) override {
    ExpireDue();
    if (id >= nodes_.size() || !(nodes_[id].flags & kTracked)) return;
    levels_[nodes_[id].level].MoveToFront(nodes_.data(), id);
  }

  void Remove(BlockId id) override {
    if (id >= nodes_.size() || !(nodes_[id].flags & kTracked)) return;
    PrioNode& n = nodes_[id];
    Unlink(n.level, id);
    const bool pending = n.flags & kPending;
    n.flags = 0;
    --size_;
    if (pending) deadlines_.Forget([this](const DeadlineHeap::Entry& e) { return Live(e); });
  }

  BlockId PickVictim(const std::function<bool(BlockId)>& eligible, size_t max_scan) override {
    ExpireDue();
    const PrioNode* nodes = nodes_.data();
    for (int w = 0; w < 2; ++w) {
      for (uint64_t bits = nonempty_[w]; bits != 0; bits &= bits - 1) {
        const int level = w * 64 + std::countr_zero(bits);
        for (BlockId id = levels_[level].back(); id != kNoBlock; id = List::Prev(nodes, id)) {
          if (max_scan == 0) return kNoBlock;
          --max_scan;
          if (eligible(id)) return id;
        }
      }
    }
    return kNoBlock;
  }

  size_t size() const override { return size_; }

  size_t MemoryUsage() const override {
    return sizeof(*this) + nodes_.capacity() * sizeof(PrioNode) +
           deadlines_.MemoryUsage();
  }

 private:
  using List = IntrusiveList<&PrioNode::links>;

  void LinkFront(int level, BlockId id) {
    levels_[level].PushFront(nodes_.data(), id);
    nonempty_[level >> 6] |= uint64_t{1} << (level & 63);
  }
  void LinkBack(int level, BlockId id) {
    levels_[level].PushBack(nodes_.data(), id);
    nonempty_[level >> 6] |= uint64_t{1} << (level & 63);
  }
  void Unlink(int level, BlockId id) {
    levels_[level].Unlink(nodes_.data(), id);
    if (levels_[level].empty()) nonempty_[level >> 6] &= ~(uint64_t{1} << (level & 63));
  }

  bool Live(const DeadlineHeap::Entry& e) const {
    const PrioNode& n = nodes_[e.id];
    return (n.flags & kPending) && n.gen == e.gen;
  }

  // Applies every retention deadline that has passed.
  void ExpireDue() {
    if (deadlines_.empty()) return;
    deadlines_.ExpireDue(
        clock_(), [this](const DeadlineHeap::Entry& e) { return Live(e); },
        [this](const DeadlineHeap::Entry& e) {
          PrioNode& n = nodes_[e.id];
          n.flags &= static_cast<uint8_t>(~kPending);
          if (n.level != kDefaultPriority) {
            Unlink(n.level, e.id);
            n.level = kDefaultPriority;
            LinkBack(kDefaultPriority, e.id);  // cold end: see the file comment
          }
        });
  }

  ClockFn clock_;
  std::vector<PrioNode> nodes_;
  std::array<List, kLevels> levels_{};
  uint64_t nonempty_[2] = {0, 0};  // bit L set <=> levels_[L] non-empty
  DeadlineHeap deadlines_;
  size_t size_ = 0;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewPriorityLruPolicy(ClockFn clock) {
  return std::make_unique<PriorityLruPolicy>(std::move(clock));
}

}  // namespace kvtier::internal
