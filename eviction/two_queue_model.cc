#include "eviction/two_queue_model.h"

#include <algorithm>
#include <bit>

namespace kvtier {
namespace {

constexpr uint8_t kProbation = 1;
constexpr uint8_t kProtected = 2;

inline uint64_t Mix(uint64_t x) {  // a finalizer unlike the ghost's and the index's
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ULL;
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ULL;
  x ^= x >> 32;
  return x;
}

}  // namespace

TwoQueueModel::TwoQueueModel(double probation, double history)
    : probation_(probation), history_(history) {
  Reset(1);
}

void TwoQueueModel::Reset(size_t capacity) {
  capacity_ = std::max<size_t>(capacity, 1);
  entries_.clear();
  free_.clear();
  probation_list_ = List();
  protected_list_ = List();
  const size_t slots = std::bit_ceil(2 * capacity_ + 2);
  table_.assign(slots, 0);
  mask_ = slots - 1;
  const size_t ghost = HistoryLength();
  ghost_ = ghost > 0 ? std::make_unique<FingerprintFifo>(ghost) : nullptr;
}

void TwoQueueModel::GrowTo(size_t capacity) {
  if (capacity <= capacity_) return;
  capacity_ = capacity;
  if (2 * capacity_ + 2 > table_.size()) {
    std::vector<uint32_t> old = std::move(table_);
    const size_t slots = std::bit_ceil(2 * capacity_ + 2);
    table_.assign(slots, 0);
    mask_ = slots - 1;
    for (uint32_t v : old)
      if (v != 0) TableInsert(entries_[v - 1].fp, v - 1);
  }
  const size_t ghost = HistoryLength();
  if (ghost > 0) {
    if (!ghost_) {
      ghost_ = std::make_unique<FingerprintFifo>(ghost + ghost / 4);
    } else if (ghost > ghost_->capacity()) {
      ghost_->Resize(ghost + ghost / 4);  // geometric: O(1) amortized growth
    }
  }
}

size_t TwoQueueModel::HistoryLength() const {
  return static_cast<size_t>(history_ * static_cast<double>(capacity_));
}

uint32_t TwoQueueModel::Find(uint64_t fp) const {
  for (size_t i = Mix(fp) & mask_;; i = (i + 1) & mask_) {
    const uint32_t v = table_[i];
    if (v == 0) return kNoBlock;
    if (entries_[v - 1].fp == fp) return v - 1;
  }
}

void TwoQueueModel::TableInsert(uint64_t fp, uint32_t idx) {
  size_t i = Mix(fp) & mask_;
  while (table_[i] != 0) i = (i + 1) & mask_;
  table_[i] = idx + 1;
}

void TwoQueueModel::TableErase(uint64_t fp) {
  size_t i = Mix(fp) & mask_;
  while (entries_[table_[i] - 1].fp != fp) i = (i + 1) & mask_;
  // Backward-shift deletion.
  for (size_t j = (i + 1) & mask_; table_[j] != 0; j = (j + 1) & mask_) {
    const size_t k = Mix(entries_[table_[j] - 1].fp) & mask_;
    const bool movable = (i <= j) ? (k <= i || k > j) : (k <= i && k > j);
    if (movable) {
      table_[i] = table_[j];
      i = j;
    }
  }
  table_[i] = 0;
}

size_t TwoQueueModel::ProtectedLimit() const {
  return static_cast<size_t>((1.0 - probation_) * static_cast<double>(capacity_));
}

void TwoQueueModel::Protect(uint32_t idx) {
  Entry* e = entries_.data();
  e[idx].queue = kProtected;
  protected_list_.PushFront(e, idx);
  const size_t limit = ProtectedLimit();
  while (protected_list_.size() > limit) {
    const uint32_t x = protected_list_.back();
    protected_list_.Unlink(e, x);
    e[x].queue = kProbation;
    probation_list_.PushFront(e, x);
  }
}

void TwoQueueModel::EvictOne() {
  Entry* e = entries_.data();
  uint32_t victim = probation_list_.back();
  if (victim != kNoBlock) {
    probation_list_.Unlink(e, victim);
  } else {
    victim = protected_list_.back();
    protected_list_.Unlink(e, victim);
  }
  TableErase(e[victim].fp);
  if (ghost_) ghost_->Insert(e[victim].fp);
  e[victim].queue = 0;
  free_.push_back(victim);
}

bool TwoQueueModel::Access(uint64_t fp) {
  if (fp == 0) return false;
  const uint32_t idx = Find(fp);
  if (idx != kNoBlock) {
    Entry* e = entries_.data();
    if (e[idx].queue == kProtected) {
      protected_list_.MoveToFront(e, idx);
    } else {
      probation_list_.Unlink(e, idx);
      Protect(idx);
    }
    return true;
  }
  while (size() >= capacity_) EvictOne();
  uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<uint32_t>(entries_.size());
    entries_.emplace_back();
  }
  Entry* e = entries_.data();
  e[slot].fp = fp;
  TableInsert(fp, slot);
  const size_t age = ghost_ ? ghost_->Age(fp) : FingerprintFifo::kAbsent;
  if (age != FingerprintFifo::kAbsent && age < HistoryLength()) {
    ghost_->Erase(fp);
    Protect(slot);
  } else {
    e[slot].queue = kProbation;
    probation_list_.PushFront(e, slot);
  }
  return false;
}

size_t TwoQueueModel::MemoryUsage() const {
  return sizeof(*this) + entries_.capacity() * sizeof(Entry) + free_.capacity() * 4 +
         table_.capacity() * 4 + (ghost_ ? ghost_->MemoryUsage() : 0);
}

}  // namespace kvtier
