// "lru": classic least-recently-used eviction.
//
// One intrusive list over a dense node array indexed by BlockId: Track pushes
// to the hot front, Touch moves to the front, PickVictim walks from the cold
// back past ineligible blocks. 12 bytes per id slot, no allocation once the
// array has grown to the largest id.
#include <vector>

#include "eviction/builtin_policies.h"
#include "eviction/intrusive_list.h"

namespace kvtier::internal {
namespace {

struct LruNode {
  ListLinks links;
  uint32_t tracked = 0;  // 1 while tracked
};

class LruPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "lru"; }

  void Track(BlockId id, const BlockMeta& /*meta*/) override {
    if (id >= nodes_.size()) nodes_.resize(static_cast<size_t>(id) + 1);
    LruNode& n = nodes_[id];
    if (n.tracked) return;  // REQUIRES violated; keep the structure sound
    n.tracked = 1;
    list_.PushFront(nodes_.data(), id);
  }

  void Touch(BlockId id) override {
    if (id >= nodes_.size() || !nodes_[id].tracked) return;
    list_.MoveToFront(nodes_.data(), id);
  }

  void Remove(BlockId id) override {
    if (id >= nodes_.size() || !nodes_[id].tracked) return;
    list_.Unlink(nodes_.data(), id);
    nodes_[id].tracked = 0;
  }

  BlockId PickVictim(const std::function<bool(BlockId)>& eligible, size_t max_scan) override {
    const LruNode* nodes = nodes_.data();
    for (BlockId id = list_.back(); id != kNoBlock && max_scan > 0;
         id = List::Prev(nodes, id), --max_scan) {
      if (eligible(id)) return id;
    }
    return kNoBlock;
  }

  size_t size() const override { return list_.size(); }

  size_t MemoryUsage() const override {
    return sizeof(*this) + nodes_.capacity() * sizeof(LruNode);
  }

 private:
  using List = IntrusiveList<&LruNode::links>;
  std::vector<LruNode> nodes_;
  List list_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewLruPolicy() { return std::make_unique<LruPolicy>(); }

}  // namespace kvtier::internal
