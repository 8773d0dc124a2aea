#include "eviction/fingerprint_fifo.h"

#include <algorithm>
#include <bit>

namespace kvtier {
namespace {

// splitmix64's finalizer: fingerprints may be hash bits already, but callers
// may also pass small counters; mixing keeps probe sequences short for both.
inline uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

FingerprintFifo::FingerprintFifo(size_t capacity) { Resize(capacity); }

size_t FingerprintFifo::Home(uint64_t fp) const { return Mix(fp) & mask_; }

size_t FingerprintFifo::FindSlot(uint64_t fp) const {
  for (size_t i = Home(fp);; i = (i + 1) & mask_) {
    const uint32_t pos = table_[i];
    if (pos == kEmpty) return kNotFound;
    if (ring_[pos] == fp) return i;
  }
}

void FingerprintFifo::TableInsert(uint64_t fp, uint32_t pos) {
  size_t i = Home(fp);
  while (table_[i] != kEmpty) i = (i + 1) & mask_;
  table_[i] = pos;
}

void FingerprintFifo::TableErase(size_t slot) {
  // Backward-shift deletion: pull later entries of the probe run into the
  // hole when their home does not lie cyclically in (hole, j].
  size_t i = slot;
  for (size_t j = (i + 1) & mask_; table_[j] != kEmpty; j = (j + 1) & mask_) {
    const size_t k = Home(ring_[table_[j]]);
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
  const uint64_t oldest = ring_[next_];
  if (oldest != 0) {
    TableErase(FindSlot(oldest));
    --count_;
  }
  ring_[next_] = fp;
  TableInsert(fp, static_cast<uint32_t>(next_));
  ++count_;
  if (++next_ == ring_.size()) next_ = 0;
}

bool FingerprintFifo::Erase(uint64_t fp) {
  if (fp == 0) return false;
  const size_t slot = FindSlot(fp);
  if (slot == kNotFound) return false;
  const uint32_t pos = table_[slot];
  TableErase(slot);  // reads ring_ of other entries only
  ring_[pos] = 0;
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
  table_.assign(std::bit_ceil(std::max<size_t>(2 * capacity, 16)), kEmpty);
  mask_ = table_.size() - 1;
  next_ = 0;
  count_ = 0;
  for (size_t n = live.size() - keep; n < live.size(); ++n) {
    ring_[next_] = live[n];
    TableInsert(live[n], static_cast<uint32_t>(next_));
    ++count_;
    if (++next_ == ring_.size()) next_ = 0;
  }
}

size_t FingerprintFifo::MemoryUsage() const {
  return sizeof(*this) + ring_.capacity() * sizeof(uint64_t) +
         table_.capacity() * sizeof(uint32_t);
}

}  // namespace kvtier
