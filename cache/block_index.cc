#include "cache/block_index.h"

#include <string>

namespace kvtier {

BlockIndex::BlockIndex(uint32_t max_entries, uint32_t num_shards)
    : max_entries_(max_entries),
      num_shards_(num_shards == 0 ? 1 : num_shards),
      shards_(new Shard[num_shards_]),
      chunks_(new std::unique_ptr<BlockEntry[]>[(max_entries + kChunkSize - 1) / kChunkSize]) {
  for (uint32_t i = 0; i < num_shards_; ++i) {
    shards_[i].slots.assign(16, 0);
    table_bytes_ += 16 * sizeof(uint32_t);
  }
}

BlockIndex::~BlockIndex() = default;

BlockId BlockIndex::FindLocked(const BlockKey& key) const {
  const Shard& s = shards_[ShardOf(key)];
  size_t mask = s.slots.size() - 1;
  for (size_t i = Home(s, key);; i = (i + 1) & mask) {
    uint32_t v = s.slots[i];
    if (v == 0) return kNoBlock;
    if (entry(v - 1).key == key) return v - 1;
  }
}

void BlockIndex::Grow(Shard& s) {
  std::vector<uint32_t> old = std::move(s.slots);
  s.slots.assign(old.size() * 2, 0);
  table_bytes_ += old.size() * sizeof(uint32_t);
  size_t mask = s.slots.size() - 1;
  for (uint32_t v : old) {
    if (v == 0) continue;
    size_t i = Home(s, entry(v - 1).key);
    while (s.slots[i] != 0) i = (i + 1) & mask;
    s.slots[i] = v;
  }
}

Result<BlockId> BlockIndex::InsertLocked(const BlockKey& key) {
  BlockId id;
  {
    std::lock_guard<std::mutex> l(id_mu_);
    if (!free_ids_.empty()) {
      id = free_ids_.back();
      free_ids_.pop_back();
    } else if (next_id_ < max_entries_) {
      id = next_id_++;
      uint32_t c = id >> kChunkShift;
      if (c >= num_chunks_) {
        chunks_[c].reset(new BlockEntry[kChunkSize]);
        num_chunks_ = c + 1;
      }
    } else {
      return Status::ResourceExhausted("block index is full (" + std::to_string(max_entries_) +
                                       " entries)");
    }
  }
  BlockEntry& e = entry(id);
  e.key = key;
  e.parent = BlockKey{};
  e.offset = e.checksum = 0;
  e.size = e.ns = e.hits = e.last_access_s = e.retention_deadline_s = 0;
  e.size_class = 0;
  e.tier = 0;
  e.tenant = 0;
  e.priority = static_cast<uint8_t>(kDefaultPriority);
  e.flags.store(0, std::memory_order_relaxed);
  e.pins.store(0, std::memory_order_relaxed);
  e.state.store(static_cast<uint8_t>(BlockState::kFree), std::memory_order_relaxed);

  Shard& s = shards_[ShardOf(key)];
  if ((s.count + 1) * 4 > s.slots.size() * 3) Grow(s);
  size_t mask = s.slots.size() - 1;
  size_t i = Home(s, key);
  while (s.slots[i] != 0) i = (i + 1) & mask;
  s.slots[i] = id + 1;
  ++s.count;
  live_.fetch_add(1, std::memory_order_relaxed);
  return id;
}

void BlockIndex::EraseLocked(BlockId id) {
  const BlockKey key = entry(id).key;
  Shard& s = shards_[ShardOf(key)];
  size_t mask = s.slots.size() - 1;
  size_t i = Home(s, key);
  while (s.slots[i] != id + 1) {
    if (s.slots[i] == 0) return;  // not present
    i = (i + 1) & mask;
  }
  // Backward-shift deletion: pull later members of the probe run into the hole.
  size_t hole = i;
  for (size_t j = (i + 1) & mask; s.slots[j] != 0; j = (j + 1) & mask) {
    size_t home = Home(s, entry(s.slots[j] - 1).key);
    // Move j into the hole if its home is not cyclically in (hole, j].
    bool in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!in_range) {
      s.slots[hole] = s.slots[j];
      hole = j;
    }
  }
  s.slots[hole] = 0;
  --s.count;
  live_.fetch_sub(1, std::memory_order_relaxed);
}

void BlockIndex::ForEachLocked(const std::function<void(BlockId)>& fn) const {
  for (uint32_t i = 0; i < num_shards_; ++i) {
    std::lock_guard<std::mutex> l(shards_[i].mu);
    for (uint32_t slot : shards_[i].slots)
      if (slot != 0) fn(slot - 1);
  }
}

void BlockIndex::FreeId(BlockId id) {
  entry(id).state.store(static_cast<uint8_t>(BlockState::kFree), std::memory_order_relaxed);
  std::lock_guard<std::mutex> l(id_mu_);
  free_ids_.push_back(id);
}

size_t BlockIndex::MemoryUsage() const {
  size_t chunks;
  size_t free_cap;
  {
    std::lock_guard<std::mutex> l(const_cast<std::mutex&>(id_mu_));
    chunks = num_chunks_;
    free_cap = free_ids_.capacity();
  }
  return chunks * kChunkSize * sizeof(BlockEntry) + table_bytes_.load() +
         free_cap * sizeof(BlockId) + num_shards_ * sizeof(Shard);
}

}  // namespace kvtier
