// "prefix-lru": LRU that evicts chain leaves (request tails) before their
// ancestors.
//
// A block whose parent is gone can never hit (lookups stop at the first
// miss), so evicting a parent before its children wastes the children. Every
// block sits on an LRU list of all tracked blocks; blocks without tracked
// children (leaves) also sit on a leaf list in LRU order, and a per-id child
// count says which blocks are leaves. PickVictim scans the leaf list from its
// cold end; only if no eligible leaf turns up (e.g. every cold leaf is pinned)
// does it fall back to the LRU list of all blocks, so pinned tails cannot
// wedge the tier.
//
// A block whose last child leaves becomes a leaf in the child's place on the
// leaf list: every hit on the child was a prefix hit on the parent too, so
// the parent was used at least as recently, and a cold chain unwinds
// tail-first in one piece (as vLLM's free-block queue frees a request's
// blocks in reverse order). If the last child was itself not a leaf (it was
// evicted by the fallback) the parent goes to the cold end of the leaf list.
//
// Parent links carry the parent's generation (bumped on every Track), so a
// removed parent orphans its children cleanly: a later reuse of the parent's
// id never counts the orphans as its children.
//
// Budget: the leaf scan uses at most max_scan - max_scan/4 candidates; the
// fallback uses the rest, so one call never calls `eligible` more than
// max_scan times. Costs: all operations O(1) apart from the bounded scan.
// Memory: 36 bytes per id slot.
#include <vector>

#include "eviction/builtin_policies.h"
#include "eviction/intrusive_list.h"

namespace kvtier::internal {
namespace {

struct PrefixNode {
  ListLinks lru;   // every tracked block
  ListLinks leaf;  // tracked blocks with children == 0
  BlockId parent = kNoBlock;
  uint32_t parent_gen = 0;  // parent's gen when the link was made
  uint32_t gen = 0;         // bumped on every Track
  uint32_t children = 0;    // tracked children linked to this generation
  uint32_t tracked = 0;
};

class PrefixLruPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "prefix-lru"; }

  void Track(BlockId id, const BlockMeta& meta) override {
    if (id >= nodes_.size()) nodes_.resize(static_cast<size_t>(id) + 1);
    PrefixNode* nodes = nodes_.data();
    PrefixNode& n = nodes[id];
    if (n.tracked) return;  // REQUIRES violated; keep the structure sound
    n.tracked = 1;
    ++n.gen;
    n.children = 0;
    n.parent = kNoBlock;
    const BlockId p = meta.parent;
    if (p != id && p < nodes_.size() && nodes[p].tracked) {
      n.parent = p;
      n.parent_gen = nodes[p].gen;
      if (nodes[p].children++ == 0) leaves_.Unlink(nodes, p);
    }
    lru_.PushFront(nodes, id);
    leaves_.PushFront(nodes, id);
  }

  void Touch(BlockId id) override {
    if (id >= nodes_.size() || !nodes_[id].tracked) return;
    PrefixNode* nodes = nodes_.data();
    lru_.MoveToFront(nodes, id);
    if (nodes[id].children == 0) leaves_.MoveToFront(nodes, id);
  }

  void Remove(BlockId id) override {
    if (id >= nodes_.size() || !nodes_[id].tracked) return;
    PrefixNode* nodes = nodes_.data();
    PrefixNode& n = nodes[id];
    lru_.Unlink(nodes, id);
    const bool was_leaf = n.children == 0;
    const BlockId p = n.parent;
    if (p != kNoBlock && nodes[p].tracked && nodes[p].gen == n.parent_gen &&
        --nodes[p].children == 0) {
      if (was_leaf) {
        leaves_.InsertAfter(nodes, id, p);  // takes id's place once id leaves
      } else {
        leaves_.PushBack(nodes, p);
      }
    }
    if (was_leaf) leaves_.Unlink(nodes, id);
    n.tracked = 0;
    n.children = 0;
    n.parent = kNoBlock;
  }

  BlockId PickVictim(const std::function<bool(BlockId)>& eligible, size_t max_scan) override {
    const PrefixNode* nodes = nodes_.data();
    size_t budget = max_scan - max_scan / 4;
    size_t used = 0;
    for (BlockId id = leaves_.back(); id != kNoBlock && used < budget;
         id = LeafList::Prev(nodes, id), ++used) {
      if (eligible(id)) return id;
    }
    budget = max_scan - used;  // fallback: any block, LRU order
    for (BlockId id = lru_.back(); id != kNoBlock && budget > 0;
         id = LruList::Prev(nodes, id), --budget) {
      if (eligible(id)) return id;
    }
    return kNoBlock;
  }

  size_t size() const override { return lru_.size(); }

  size_t MemoryUsage() const override {
    return sizeof(*this) + nodes_.capacity() * sizeof(PrefixNode);
  }

 private:
  using LruList = IntrusiveList<&PrefixNode::lru>;
  using LeafList = IntrusiveList<&PrefixNode::leaf>;

  std::vector<PrefixNode> nodes_;
  LruList lru_;
  LeafList leaves_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewPrefixLruPolicy() {
  return std::make_unique<PrefixLruPolicy>();
}

}  // namespace kvtier::internal
