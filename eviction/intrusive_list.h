// IntrusiveList: a doubly linked list of BlockIds threaded through a dense
// array of per-id nodes that the owning policy keeps (one node per id, the
// array indexed by BlockId). The list itself holds only head, tail and size;
// linking and unlinking are O(1) and never allocate.
//
// `kLinks` is a pointer to the ListLinks member of the node type, so one node
// can sit on several lists at once (prefix-lru keeps every block on an LRU
// list and leaves also on a leaf list). Front is the hot (most recently used)
// end, back the cold end.
//
// Ownership: the caller owns the node array and passes it to every call (the
// array may move when it grows). Thread safety: none; used under the owning
// policy's external lock. REQUIRES: an id is on at most one list per member.
#pragma once

#include <cstdint>

#include "eviction/policy.h"

namespace kvtier {

struct ListLinks {
  BlockId prev = kNoBlock;  // toward the front (hotter)
  BlockId next = kNoBlock;  // toward the back (colder)
};

namespace internal {
template <typename T>
struct MemberClass;
template <typename C, typename M>
struct MemberClass<M C::*> {
  using type = C;
};
}  // namespace internal

template <auto kLinks>
class IntrusiveList {
 public:
  using Node = typename internal::MemberClass<decltype(kLinks)>::type;

  BlockId front() const { return head_; }
  BlockId back() const { return tail_; }
  uint32_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The neighbour of `id` toward the front / back, or kNoBlock.
  static BlockId Prev(const Node* nodes, BlockId id) { return (nodes[id].*kLinks).prev; }
  static BlockId Next(const Node* nodes, BlockId id) { return (nodes[id].*kLinks).next; }

  void PushFront(Node* nodes, BlockId id) {
    ListLinks& l = nodes[id].*kLinks;
    l.prev = kNoBlock;
    l.next = head_;
    if (head_ != kNoBlock) {
      (nodes[head_].*kLinks).prev = id;
    } else {
      tail_ = id;
    }
    head_ = id;
    ++size_;
  }

  void PushBack(Node* nodes, BlockId id) {
    ListLinks& l = nodes[id].*kLinks;
    l.next = kNoBlock;
    l.prev = tail_;
    if (tail_ != kNoBlock) {
      (nodes[tail_].*kLinks).next = id;
    } else {
      head_ = id;
    }
    tail_ = id;
    ++size_;
  }

  // Links `id` directly behind (colder than) `pos`. REQUIRES: pos on this list.
  void InsertAfter(Node* nodes, BlockId pos, BlockId id) {
    ListLinks& p = nodes[pos].*kLinks;
    ListLinks& l = nodes[id].*kLinks;
    l.prev = pos;
    l.next = p.next;
    if (p.next != kNoBlock) {
      (nodes[p.next].*kLinks).prev = id;
    } else {
      tail_ = id;
    }
    p.next = id;
    ++size_;
  }

  // REQUIRES: id on this list.
  void Unlink(Node* nodes, BlockId id) {
    ListLinks& l = nodes[id].*kLinks;
    if (l.prev != kNoBlock) {
      (nodes[l.prev].*kLinks).next = l.next;
    } else {
      head_ = l.next;
    }
    if (l.next != kNoBlock) {
      (nodes[l.next].*kLinks).prev = l.prev;
    } else {
      tail_ = l.prev;
    }
    l.prev = l.next = kNoBlock;
    --size_;
  }

  // REQUIRES: id on this list.
  void MoveToFront(Node* nodes, BlockId id) {
    if (head_ == id) return;
    Unlink(nodes, id);
    PushFront(nodes, id);
  }

 private:
  BlockId head_ = kNoBlock;
  BlockId tail_ = kNoBlock;
  uint32_t size_ = 0;
};

}  // namespace kvtier
