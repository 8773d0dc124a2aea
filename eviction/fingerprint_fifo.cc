#include "eviction/fingerprint_fifo.h"

#include <algorithm>
#include <bit>

namespace kvtier {
namespace {

// splitmix64's finalizer: fingerprints may be hash bits already, but callers
// may also pass small counters; mixing keeps probe runs short for both.
inline uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

inline uint32_t SlotTag(uint64_t slot) { return static_cast<uint32_t>(slot >> 32); }
inline uint32_t SlotPos(uint64_t slot) { return static_cast<uint32_t>(slot); }
inline uint64_t MakeSlot(uint32_t tag, uint32_t pos) { return (uint64_t{tag} << 32) | pos; }

}  // namespace

FingerprintFifo::FingerprintFifo(size_t capacity) { Resize(capacity); }

uint32_t FingerprintFifo::Tag(uint64_t fp) { return static_cast<uint32_t>(Mix(fp) >> 32); }

size_t FingerprintFifo::FindSlot(uint64_t fp) const {
  const uint32_t tag = Tag(fp);
  for (size_t i = Home(tag);; i = (i + 1) & mask_) {
    const uint64_t slot = table_[i];
    if (slot == kEmpty) return kNotFound;
    if (SlotTag(slot) == tag && ring_[SlotPos(slot)] == fp) return i;
  }
}

size_t FingerprintFifo::FindPos(uint32_t tag, uint32_t pos) const {
  for (size_t i = Home(tag);; i = (i + 1) & mask_) {
    const uint64_t slot = table_[i];
    if (slot == kEmpty) return kNotFound;
    if (SlotPos(slot) == pos) return i;
  }
}

void FingerprintFifo::TableInsert(uint32_t tag, uint32_t pos) {
  size_t i = Home(tag);
  while (table_[i] != kEmpty) i = (i + 1) & mask_;
  table_[i] = MakeSlot(tag, pos);
}

void FingerprintFifo::TableErase(size_t slot) {
  // Backward-shift deletion: pull later entries of the probe run into the
  // hole when their home does not lie cyclically in (hole, j].
  size_t i = slot;
  for (size_t j = (i + 1) & mask_; table_[j] != kEmpty; j = (j + 1) & mask_) {
    const size_t k = Home(SlotTag(table_[j]));
    const bool movable = (i <= j) ? (k <= i || k > j) : (k <= i && k > j);
    if (movable) {
      table_[i] = table_[j];
      i = j;
    }
  }
  table_[i] = kEmpty;
}

bool FingerprintFifo::Contains(uint64_t fp) const {
  return fp != 0 && FindSlot(fp) != kNotFound;
}

void FingerprintFifo::Insert(uint64_t fp) {
  if (fp == 0) return;
  Erase(fp);  // re-insertion makes it the newest
  const uint32_t pos = static_cast<uint32_t>(next_);
  const uint64_t oldest = ring_[pos];
  if (oldest != 0) {
    TableErase(FindPos(Tag(oldest), pos));
    --count_;
  }
  ring_[pos] = fp;
  TableInsert(Tag(fp), pos);
  ++count_;
  if (++next_ == ring_.size()) next_ = 0;
}

size_t FingerprintFifo::Age(uint64_t fp) const {
  if (fp == 0) return kAbsent;
  const size_t slot = FindSlot(fp);
  if (slot == kNotFound) return kAbsent;
  const size_t cap = ring_.size();
  return (next_ + cap - 1 - SlotPos(table_[slot])) % cap;
}

bool FingerprintFifo::Erase(uint64_t fp) {
  if (fp == 0) return false;
  const size_t slot = FindSlot(fp);
  if (slot == kNotFound) return false;
  ring_[SlotPos(table_[slot])] = 0;
  TableErase(slot);
  --count_;
  return true;
}

void FingerprintFifo::Resize(size_t capacity) {
  capacity = std::max<size_t>(capacity, 1);
  // Oldest to newest: positions next_, next_+1, ... wrapping.
  std::vector<uint64_t> live;
  live.reserve(count_);
  for (size_t n = 0; n < ring_.size(); ++n) {
    const uint64_t fp = ring_[(next_ + n) % ring_.size()];
    if (fp != 0) live.push_back(fp);
  }
  const size_t keep = std::min(live.size(), capacity);
  ring_.assign(capacity, 0);
  // Load between 1/3 and 2/3: always a free slot, short probe runs.
  table_.assign(std::bit_ceil(std::max<size_t>(capacity + capacity / 2, 16)), kEmpty);
  mask_ = table_.size() - 1;
  next_ = 0;
  count_ = 0;
  for (size_t n = live.size() - keep; n < live.size(); ++n) {
    ring_[next_] = live[n];
    TableInsert(Tag(live[n]), static_cast<uint32_t>(next_));
    ++count_;
    if (++next_ == ring_.size()) next_ = 0;
  }
}

size_t FingerprintFifo::MemoryUsage() const {
  return sizeof(*this) + ring_.capacity() * sizeof(uint64_t) +
         table_.capacity() * sizeof(uint64_t);
}

}  // namespace kvtier
