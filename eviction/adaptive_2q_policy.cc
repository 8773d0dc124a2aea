// "adaptive-2q": prefix-aware two-queue eviction whose shape is tuned online
// by miniature simulation, under priority-lru's priority levels.
//
// Priorities first. Blocks of a non-default priority sit on per-level LRU
// lists exactly as in "priority-lru" (retention deadlines included: an
// expired block joins the default level at its cold end). The victim is
// taken from levels below the default first, then from the default level,
// then from the levels above it.
//
// The default level is a two-queue cache (2Q / segmented LRU):
//  - probation: new blocks, LRU; chain leaves are evicted first, as in
//    "prefix-lru" (a leaf list where a parent takes its last child's place);
//  - protected: blocks hit at least once, or stored again while their
//    fingerprint is in the history (they were evicted recently), LRU; it
//    holds at most (1 - probation fraction) of the level, its overflow moves
//    to the hot end of probation. Victims come from probation (protected
//    only when probation has nothing eligible).
//  - history: fingerprints of the last (history x tier blocks) removals.
// Probation fraction 1 with no history is prefix-lru (so, LRU with chain
// tails first).
//
// Which shape is best depends on the workload: recency-driven chat wants a
// large probation, shared documents want a large protected part and a long
// history, agent loops want a small probation and a short history. The
// policy runs miniature simulations (Waldspurger et al., USENIX ATC 2017;
// eviction/two_queue_model.h) of seven candidate shapes, LRU among them, on
// the accesses (Track = a miss, Touch = a hit) of a spatially sampled subset
// of fingerprints: 1 in 2^s, s chosen so that a model holds 4096-8191
// entries (all fingerprints below 8192 tier blocks). Every epoch (half a
// model's capacity in sampled accesses) each model's hits are added to a
// score that decays by 3/4 per epoch, and the policy switches to the best
// shape if it beats the current one by 2% and by one standard deviation of
// the hit counts. It starts as LRU (prefix-lru), so it only leaves LRU's
// behaviour on evidence. A switch moves no block at once: protected overflow
// drains by at most 16 blocks per call.
//
// The history is one FIFO ring of removed fingerprints sized for the
// longest history (4 x tier blocks); a shape with history h accepts only
// fingerprints removed fewer than h x tier-blocks removals ago.
//
// Costs: Track/Touch/Remove O(1) (plus O(log d) for d pending retention
// deadlines, plus seven model accesses for a sampled fingerprint: 7/2^s on
// average); PickVictim O(max_scan). Memory: 48 bytes per id slot, the
// history ring (about 5 slots of 20-32 bytes per tier block) and the models
// (about 1-8 MB in all).
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "eviction/builtin_policies.h"
#include "eviction/deadline_heap.h"
#include "eviction/fingerprint_fifo.h"
#include "eviction/intrusive_list.h"
#include "eviction/two_queue_model.h"

namespace kvtier::internal {
namespace {

constexpr int kLevels = kMaxPriority + 1;
constexpr uint8_t kOff = 0;
constexpr uint8_t kLevel = 1;      // on levels_[level] (non-default priority)
constexpr uint8_t kProbation = 2;  // default level
constexpr uint8_t kProtected = 3;  // default level
constexpr uint8_t kPending = 1;    // flags: has a live retention deadline

struct Shape {
  double probation;
  double history;
};
// Candidate shapes; index 0 (LRU) is where the policy starts.
constexpr std::array<Shape, 7> kShapes = {{
    {1.0, 0.0}, {0.5, 1.0}, {0.25, 1.0}, {0.1, 1.0}, {0.5, 4.0}, {0.25, 4.0}, {0.1, 4.0}}};
// Sampled models hold 4096..8191 entries; an epoch is half a model's
// capacity in sampled accesses; scores decay by 3/4 per epoch; a switch
// needs 2% more decayed hits than the current shape and a margin of one
// standard deviation of the (Poisson) hit counts.
constexpr size_t kModelEntries = 4096;
constexpr double kEpochPerEntry = 0.5;
constexpr double kDecay = 0.75;
constexpr double kHysteresis = 1.02;
constexpr double kMarginSigmas = 1.0;
constexpr double kMaxHistory = 4.0;  // the longest history of any shape
constexpr size_t kMaxDemotionsPerCall = 16;
constexpr size_t kMinHistory = 1024;

struct Node {
  ListLinks lru;   // level list, probation or protected
  ListLinks leaf;  // probation leaves (children == 0)
  uint64_t fingerprint = 0;
  BlockId parent = kNoBlock;
  uint32_t parent_gen = 0;
  uint32_t gen = 0;       // bumped on every Track
  uint32_t children = 0;  // tracked children linked to this generation
  uint8_t where = kOff;
  uint8_t level = kDefaultPriority;
  uint8_t flags = 0;
};

inline uint64_t SampleHash(uint64_t fp) {  // independent of the index's and the ghost's
  fp ^= fp >> 31;
  fp *= 0x7fb5d329728ea185ULL;
  fp ^= fp >> 27;
  fp *= 0x81dadef4bc2dd44dULL;
  fp ^= fp >> 33;
  return fp;
}

class Adaptive2qPolicy final : public EvictionPolicy {
 public:
  Adaptive2qPolicy(ClockFn clock, int fixed_shape)
      : clock_(std::move(clock)), fixed_(fixed_shape) {
    shape_ = fixed_ >= 0 ? static_cast<size_t>(fixed_) : 0;
    if (fixed_ < 0)
      for (const Shape& s : kShapes) models_.emplace_back(s.probation, s.history);
    scores_.assign(kShapes.size(), 0.0);
    hits_.assign(kShapes.size(), 0);
  }

  std::string_view name() const override { return "adaptive-2q"; }
  void Track(BlockId id, const BlockMeta& meta) override {
    if (id >= nodes_.size()) nodes_.resize(static_cast<size_t>(id) + 1);
    Node* nodes = nodes_.data();
    Node& n = nodes[id];
    if (n.where != kOff) return;  // REQUIRES violated; keep the structure sound
    ++n.gen;
    n.children = 0;
    n.parent = kNoBlock;
    n.flags = 0;
    n.fingerprint = meta.fingerprint;
    const BlockId p = meta.parent;
    if (p != id && p < nodes_.size() && nodes[p].where != kOff) {
      n.parent = p;
      n.parent_gen = nodes[p].gen;
      if (nodes[p].children++ == 0 && nodes[p].where == kProbation) leaves_.Unlink(nodes, p);
    }
    int level = std::min<int>(meta.priority, kMaxPriority);
    if (meta.retention_deadline_ns != 0 && level != kDefaultPriority) {
      if (meta.retention_deadline_ns <= clock_()) {
        level = kDefaultPriority;
      } else {
        deadlines_.Push(meta.retention_deadline_ns, id, n.gen);
        n.flags |= kPending;
      }
    }
    n.level = static_cast<uint8_t>(level);
    ++size_;
    if (level != kDefaultPriority) {
      n.where = kLevel;
      levels_[level].PushFront(nodes, id);
      nonempty_[level >> 6] |= uint64_t{1} << (level & 63);
    } else if (Remembered(meta.fingerprint)) {
      ghost_.Erase(meta.fingerprint);
      Protect(id);
    } else {
      ToProbation(id, /*hot=*/true);
    }
    if (size_ > high_water_) GrowTo(size_);
    Observe(meta.fingerprint);
  }

  void Touch(BlockId id) override {
    ExpireDue();
    if (id >= nodes_.size() || nodes_[id].where == kOff) return;
    Node* nodes = nodes_.data();
    Node& n = nodes[id];
    switch (n.where) {
      case kLevel: levels_[n.level].MoveToFront(nodes, id); break;
      case kProtected: protected_.MoveToFront(nodes, id); break;
      case kProbation:
        UnlinkProbation(id);
        Protect(id);
        break;
    }
    Observe(n.fingerprint);
  }

  void Remove(BlockId id) override {
    if (id >= nodes_.size() || nodes_[id].where == kOff) return;
    Node* nodes = nodes_.data();
    Node& n = nodes[id];
    const bool probation_leaf = n.where == kProbation && n.children == 0;
    switch (n.where) {
      case kLevel: UnlinkLevel(id); break;
      case kProtected: protected_.Unlink(nodes, id); break;
      case kProbation: probation_.Unlink(nodes, id); break;
    }
    const BlockId p = n.parent;
    if (p != kNoBlock && nodes[p].where != kOff && nodes[p].gen == n.parent_gen &&
        --nodes[p].children == 0 && nodes[p].where == kProbation) {
      if (probation_leaf) {
        leaves_.InsertAfter(nodes, id, p);  // takes id's place once id leaves
      } else {
        leaves_.PushBack(nodes, p);
      }
    }
    if (probation_leaf) leaves_.Unlink(nodes, id);
    ghost_.Insert(n.fingerprint);
    if (n.flags & kPending)
      deadlines_.Forget([this](const DeadlineHeap::Entry& e) { return Live(e); });
    n.where = kOff;
    n.flags = 0;
    n.children = 0;
    n.parent = kNoBlock;
    --size_;
  }

  BlockId PickVictim(const std::function<bool(BlockId)>& eligible, size_t max_scan) override {
    ExpireDue();
    Rebalance();
    const Node* nodes = nodes_.data();
    size_t budget = max_scan;
    auto scan_levels = [&](int from, int to) -> BlockId {  // levels [from, to)
      for (int w = 0; w < 2; ++w) {
        for (uint64_t bits = nonempty_[w]; bits != 0; bits &= bits - 1) {
          const int level = w * 64 + std::countr_zero(bits);
          if (level < from || level >= to) continue;
          for (BlockId id = levels_[level].back(); id != kNoBlock; id = Lru::Prev(nodes, id)) {
            if (budget == 0) return kNoBlock;
            --budget;
            if (eligible(id)) return id;
          }
        }
      }
      return kNoBlock;
    };
    BlockId v = scan_levels(0, kDefaultPriority);
    if (v != kNoBlock || budget == 0) return v;
    // Default level: probation leaves, then any probation block, then protected.
    size_t leaf_budget = budget - budget / 4;
    for (BlockId id = leaves_.back(); id != kNoBlock && leaf_budget > 0;
         id = Leaves::Prev(nodes, id), --leaf_budget, --budget)
      if (eligible(id)) return id;
    for (const Lru* list : {&probation_, &protected_}) {
      for (BlockId id = list->back(); id != kNoBlock && budget > 0;
           id = Lru::Prev(nodes, id), --budget)
        if (eligible(id)) return id;
    }
    return scan_levels(kDefaultPriority + 1, kLevels);
  }

  size_t size() const override { return size_; }

  size_t MemoryUsage() const override {
    size_t m = sizeof(*this) + nodes_.capacity() * sizeof(Node) +
               deadlines_.MemoryUsage() + ghost_.MemoryUsage();
    for (const auto& model : models_) m += model.MemoryUsage();
    return m;
  }

 private:
  using Lru = IntrusiveList<&Node::lru>;
  using Leaves = IntrusiveList<&Node::leaf>;

  const Shape& shapes() const { return kShapes[shape_]; }

  // Whether `fp` left within the current shape's history (history x tier
  // blocks removals ago). The ring holds the longest history of any shape.
  bool Remembered(uint64_t fp) const {
    const double h = shapes().history;
    if (h <= 0 || fp == 0) return false;
    const size_t age = ghost_.Age(fp);
    return age != FingerprintFifo::kAbsent &&
           static_cast<double>(age) < h * static_cast<double>(high_water_);
  }

  void ToProbation(BlockId id, bool hot) {
    Node* nodes = nodes_.data();
    nodes[id].where = kProbation;
    if (hot) {
      probation_.PushFront(nodes, id);
      if (nodes[id].children == 0) leaves_.PushFront(nodes, id);
    } else {
      probation_.PushBack(nodes, id);
      if (nodes[id].children == 0) leaves_.PushBack(nodes, id);
    }
  }

  void UnlinkProbation(BlockId id) {
    Node* nodes = nodes_.data();
    probation_.Unlink(nodes, id);
    if (nodes[id].children == 0) leaves_.Unlink(nodes, id);
  }

  void UnlinkLevel(BlockId id) {
    const int level = nodes_[id].level;
    levels_[level].Unlink(nodes_.data(), id);
    if (levels_[level].empty()) nonempty_[level >> 6] &= ~(uint64_t{1} << (level & 63));
  }

  void Protect(BlockId id) {
    nodes_[id].where = kProtected;
    protected_.PushFront(nodes_.data(), id);
    Rebalance();
  }

  // Moves protected overflow to the hot end of probation, a bounded number
  // per call so that a shape switch drains it gradually.
  void Rebalance() {
    const size_t level_blocks = probation_.size() + protected_.size();
    const size_t limit =
        static_cast<size_t>((1.0 - shapes().probation) * static_cast<double>(level_blocks));
    Node* nodes = nodes_.data();
    for (size_t moved = 0; protected_.size() > limit && moved < kMaxDemotionsPerCall; ++moved) {
      const BlockId x = protected_.back();
      protected_.Unlink(nodes, x);
      ToProbation(x, /*hot=*/true);
    }
  }

  // ---- Retention (as priority-lru) ----

  bool Live(const DeadlineHeap::Entry& e) const {
    const Node& n = nodes_[e.id];
    return (n.flags & kPending) && n.gen == e.gen && n.where != kOff;
  }

  void ExpireDue() {
    if (deadlines_.empty()) return;
    deadlines_.ExpireDue(
        clock_(), [this](const DeadlineHeap::Entry& e) { return Live(e); },
        [this](const DeadlineHeap::Entry& e) {
          Node& n = nodes_[e.id];
          n.flags &= static_cast<uint8_t>(~kPending);
          if (n.where == kLevel) {
            UnlinkLevel(e.id);
            n.level = kDefaultPriority;
            ToProbation(e.id, /*hot=*/false);  // cold end: unused for its whole retention
          }
        });
  }

  // ---- Shape selection by miniature simulation ----

  void GrowTo(size_t blocks) {
    high_water_ = blocks;
    const size_t want = static_cast<size_t>(kMaxHistory * static_cast<double>(high_water_));
    if (want > ghost_.capacity()) ghost_.Resize(std::max(kMinHistory, want + want / 4));
    if (models_.empty()) return;
    const int shift = high_water_ <= kModelEntries
                          ? 0
                          : std::bit_width(high_water_ / kModelEntries) - 1;
    if (shift != shift_) {  // new sampling rate: restart the models
      shift_ = shift;
      for (auto& m : models_) m.Reset(std::max<size_t>(1, high_water_ >> shift_));
      std::fill(hits_.begin(), hits_.end(), 0);
      std::fill(scores_.begin(), scores_.end(), 0.0);
      epoch_accesses_ = 0;
    } else {
      for (auto& m : models_) m.GrowTo(std::max<size_t>(1, high_water_ >> shift_));
    }
  }

  void Observe(uint64_t fp) {
    if (models_.empty() || fp == 0) return;
    if ((SampleHash(fp) >> (64 - 20)) >= (uint64_t{1} << 20 >> shift_)) return;
    for (size_t k = 0; k < models_.size(); ++k) hits_[k] += models_[k].Access(fp);
    if (++epoch_accesses_ < kEpochPerEntry * double(models_[0].capacity())) return;
    epoch_accesses_ = 0;
    size_t best = shape_;
    for (size_t k = 0; k < models_.size(); ++k) {
      scores_[k] = scores_[k] * kDecay + static_cast<double>(hits_[k]);
      hits_[k] = 0;
    }
    for (size_t k = 0; k < models_.size(); ++k)
      if (scores_[k] > scores_[best]) best = k;
    if (best != shape_ && scores_[best] > kHysteresis * scores_[shape_] &&
        scores_[best] - scores_[shape_] > kMarginSigmas * std::sqrt(scores_[best] + scores_[shape_])) {
      shape_ = best;
      ++switches_;
    }
  }

  ClockFn clock_;
  int fixed_;
  std::vector<Node> nodes_;
  std::array<Lru, kLevels> levels_{};
  uint64_t nonempty_[2] = {0, 0};  // non-default levels only
  Lru probation_, protected_;
  Leaves leaves_;
  FingerprintFifo ghost_{kMinHistory};
  DeadlineHeap deadlines_;
  size_t size_ = 0;
  size_t high_water_ = 0;

  size_t shape_ = 0;
  uint64_t switches_ = 0;
  std::vector<TwoQueueModel> models_;
  std::vector<uint64_t> hits_;
  std::vector<double> scores_;
  int shift_ = -1;
  size_t epoch_accesses_ = 0;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewAdaptive2qPolicy(ClockFn clock, int fixed_shape) {
  return std::make_unique<Adaptive2qPolicy>(std::move(clock), fixed_shape);
}

}  // namespace kvtier::internal
