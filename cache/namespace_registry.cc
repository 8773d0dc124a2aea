#include "cache/namespace_registry.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

namespace kvtier {

namespace {

std::string Hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string h = "x";  // never empty, so fields always split
  for (unsigned char c : s) {
    h.push_back(d[c >> 4]);
    h.push_back(d[c & 15]);
  }
  return h;
}

bool Unhex(const std::string& h, std::string* out) {
  if (h.empty() || h[0] != 'x' || h.size() % 2 != 1) return false;
  out->clear();
  for (size_t i = 1; i < h.size(); i += 2) {
    auto v = [](char c) { return c >= 'a' ? c - 'a' + 10 : c - '0'; };
    out->push_back(static_cast<char>(v(h[i]) * 16 + v(h[i + 1])));
  }
  return true;
}

// The spec's fields as the file writes them (everything after the id).
std::string SpecFields(const NamespaceSpec& s) {
  std::ostringstream line;
  line << int(s.hash_mode) << ' ' << s.layout.num_layers << ' ' << s.layout.num_kv_heads << ' '
       << s.layout.head_dim << ' ' << s.layout.tokens_per_block << ' ' << int(s.layout.dtype) << ' '
       << s.layout.planes << ' ' << s.tp_rank << ' ' << s.tp_size << ' ' << Hex(s.model_id) << ' '
       << Hex(s.model_revision) << ' ' << Hex(s.tenant_salt);
  // The owning tenant, only when there is one: the default tenant's lines
  // are those of earlier versions.
  if (!s.tenant.empty()) line << " t" << Hex(s.tenant).substr(1);
  return line.str();
}

}  // namespace

// One line per registration:
//   v1 <id> <mode> <layers> <heads> <dim> <tokens/block> <dtype> <planes>
//      <tp_rank> <tp_size> x<hex model> x<hex revision> x<hex salt> [t<hex tenant>]
// and one per reclamation:
//   rm <id>
std::string NamespaceLine(NamespaceId id, const NamespaceSpec& spec) {
  return "v1 " + std::to_string(id) + ' ' + SpecFields(spec);
}

std::string NamespaceRegistry::KeyOf(const NamespaceSpec& spec) { return SpecFields(spec); }

NamespaceRegistry::NamespaceRegistry(NamespaceRegistryOptions options)
    : options_(std::move(options)),
      chunks_(new std::atomic<Entry*>[kMaxIds / kChunkSize]) {
  if (!options_.clock) options_.clock = SteadyNowNs;
  for (uint32_t i = 0; i < kMaxIds / kChunkSize; ++i) chunks_[i].store(nullptr);
}

NamespaceRegistry::~NamespaceRegistry() {
  for (uint32_t i = 0; i < kMaxIds / kChunkSize; ++i) delete[] chunks_[i].load();
}

Result<std::unique_ptr<NamespaceRegistry>> NamespaceRegistry::Open(NamespaceRegistryOptions options) {
  std::unique_ptr<NamespaceRegistry> r(new NamespaceRegistry(std::move(options)));
  KVTIER_RETURN_IF_ERROR(r->Load());
  return r;
}

NamespaceRegistry::Entry* NamespaceRegistry::Find(NamespaceId id) const {
  if (id >= kMaxIds) return nullptr;
  Entry* chunk = chunks_[id >> kChunkShift].load(std::memory_order_acquire);
  return chunk == nullptr ? nullptr : &chunk[id & (kChunkSize - 1)];
}

NamespaceRegistry::Entry& NamespaceRegistry::At(NamespaceId id) {
  std::atomic<Entry*>& slot = chunks_[id >> kChunkShift];
  if (slot.load(std::memory_order_acquire) == nullptr) slot.store(new Entry[kChunkSize]);
  return slot.load()[id & (kChunkSize - 1)];
}

bool NamespaceRegistry::Live(NamespaceId id) const {
  Entry* e = Find(id);
  return e != nullptr && e->state.load() == kLive;
}

uint8_t NamespaceRegistry::Tenant(NamespaceId id) const {
  Entry* e = Find(id);
  return e != nullptr && e->state.load() == kLive ? e->tenant.load(std::memory_order_relaxed)
                                                  : kNoTenant;
}

bool NamespaceRegistry::Enter(NamespaceId id) {
  Entry* e = Find(id);
  if (e == nullptr) return false;
  // Against ReclaimLocked: it marks kDying, then reads holds; we add a hold,
  // then read the state (both sequentially consistent): one sees the other.
  e->holds.fetch_add(1);
  if (e->state.load() != kLive) {
    e->holds.fetch_sub(1);
    return false;
  }
  return true;
}

void NamespaceRegistry::Exit(NamespaceId id) { Find(id)->holds.fetch_sub(1); }

void NamespaceRegistry::Release(NamespaceId id) {
  Entry* e = Find(id);
  if (e == nullptr) return;
  e->active_ns.store(options_.clock(), std::memory_order_relaxed);
  // Never below zero (a Release without its hold would pin it for ever).
  uint32_t h = e->holds.load();
  while (h > 0 && !e->holds.compare_exchange_weak(h, h - 1)) {
  }
}

void NamespaceRegistry::AddBlocks(NamespaceId id, uint64_t blocks, uint64_t bytes) {
  Entry* e = Find(id);
  if (e == nullptr) return;
  e->blocks.fetch_add(static_cast<int64_t>(blocks));
  e->bytes.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
}

void NamespaceRegistry::RemoveBlock(NamespaceId id, uint64_t bytes) {
  Entry* e = Find(id);
  if (e == nullptr) return;
  e->bytes.fetch_sub(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  if (e->blocks.fetch_sub(1) == 1) e->active_ns.store(options_.clock(), std::memory_order_relaxed);
}

void NamespaceRegistry::AddHits(NamespaceId id, uint64_t n) {
  if (Entry* e = Find(id)) e->hits.fetch_add(n, std::memory_order_relaxed);
}

void NamespaceRegistry::AddEviction(NamespaceId id) {
  if (Entry* e = Find(id)) e->evictions.fetch_add(1, std::memory_order_relaxed);
}

Result<NamespaceSpec> NamespaceRegistry::Get(NamespaceId id) const {
  std::lock_guard<std::mutex> l(mu_);
  Entry* e = Find(id);
  if (e == nullptr || e->state.load() != kLive)
    return Status::NotFound("unknown namespace " + std::to_string(id));
  return e->spec;
}

Result<NamespaceId> NamespaceRegistry::Register(const NamespaceSpec& spec, bool hold,
                                                uint8_t tenant) {
  const uint64_t now = options_.clock();
  std::lock_guard<std::mutex> l(mu_);
  const std::string key = KeyOf(spec);
  if (auto it = by_spec_.find(key); it != by_spec_.end()) {
    Entry& e = *Find(it->second);
    if (hold) e.holds.fetch_add(1);
    e.active_ns.store(now, std::memory_order_relaxed);
    return it->second;
  }
  if (options_.idle_reclaim_ns > 0 &&
      now - last_reclaim_ns_.load(std::memory_order_relaxed) >= options_.idle_reclaim_ns / 4) {
    last_reclaim_ns_.store(now, std::memory_order_relaxed);
    ReclaimLocked(now);
  }
  NamespaceId id;
  if (!free_ids_.empty()) {
    id = free_ids_.front();
  } else {
    id = next_id_.load(std::memory_order_relaxed);
    if (id >= kMaxIds)
      return Status::ResourceExhausted(std::to_string(kMaxIds) + " namespaces are alive at once");
  }
  KVTIER_RETURN_IF_ERROR(AppendLine(NamespaceLine(id, spec)));
  if (!free_ids_.empty()) {
    free_ids_.pop_front();
  } else {
    next_id_.store(id + 1, std::memory_order_relaxed);
  }
  Entry& e = At(id);
  e.spec = spec;
  e.blocks.store(0);
  e.bytes.store(0);
  e.hits.store(0);
  e.evictions.store(0);
  e.active_ns.store(now);
  e.tenant.store(tenant);
  if (hold) e.holds.fetch_add(1);
  e.state.store(kLive);
  by_spec_.emplace(key, id);
  live_.fetch_add(1, std::memory_order_relaxed);
  return id;
}

void NamespaceRegistry::MaybeReclaim() {
  if (options_.idle_reclaim_ns == 0) return;
  const uint64_t now = options_.clock();
  if (now - last_reclaim_ns_.load(std::memory_order_relaxed) < options_.idle_reclaim_ns / 4) return;
  std::lock_guard<std::mutex> l(mu_);
  last_reclaim_ns_.store(now, std::memory_order_relaxed);
  ReclaimLocked(now);
}

size_t NamespaceRegistry::Reclaim() {
  std::lock_guard<std::mutex> l(mu_);
  return ReclaimLocked(options_.clock());
}

size_t NamespaceRegistry::ReclaimLocked(uint64_t now) {
  if (options_.idle_reclaim_ns == 0) return 0;
  // Candidates are marked kDying (Enter now fails on them) and recorded in
  // the file with one append; only then are their ids free.
  std::vector<NamespaceId> dying;
  std::string lines;
  const uint32_t bound = next_id_.load(std::memory_order_relaxed);
  for (NamespaceId id = 0; id < bound; ++id) {
    Entry* e = Find(id);
    if (e == nullptr || e->state.load() != kLive || e->holds.load() != 0 || e->blocks.load() != 0)
      continue;
    if (now - e->active_ns.load(std::memory_order_relaxed) < options_.idle_reclaim_ns) continue;
    e->state.store(kDying);
    if (e->holds.load() != 0 || e->blocks.load() != 0) {  // entered meanwhile
      e->state.store(kLive);
      continue;
    }
    dying.push_back(id);
    if (!lines.empty()) lines += '\n';
    lines += "rm " + std::to_string(id);
  }
  if (dying.empty()) return 0;
  if (!AppendLine(lines).ok()) {
    // Keep them: the file must not resurrect an id that is reused.
    for (NamespaceId id : dying) Find(id)->state.store(kLive);
    return 0;
  }
  file_lines_ += dying.size() - 1;
  for (NamespaceId id : dying) {
    Entry* e = Find(id);
    by_spec_.erase(KeyOf(e->spec));
    e->spec = NamespaceSpec{};
    e->state.store(kFree);
    free_ids_.push_back(id);
  }
  live_.fetch_sub(dying.size(), std::memory_order_relaxed);
  reclaimed_.fetch_add(dying.size(), std::memory_order_relaxed);
  if (file_lines_ > 2 * live() + 1024) {
    Status st = RewriteLocked();
    if (!st.ok() && options_.log_warning) options_.log_warning(st.ToString());
  }
  return dying.size();
}

std::vector<NamespaceInfo> NamespaceRegistry::List() const {
  std::vector<NamespaceInfo> out;
  std::lock_guard<std::mutex> l(mu_);
  const uint32_t bound = next_id_.load(std::memory_order_relaxed);
  for (NamespaceId id = 0; id < bound; ++id) {
    Entry* e = Find(id);
    if (e == nullptr || e->state.load() != kLive) continue;
    NamespaceInfo i;
    i.id = id;
    i.spec = e->spec;
    i.blocks = static_cast<uint64_t>(std::max<int64_t>(0, e->blocks.load()));
    i.bytes = static_cast<uint64_t>(std::max<int64_t>(0, e->bytes.load()));
    i.hits = e->hits.load(std::memory_order_relaxed);
    i.evictions = e->evictions.load(std::memory_order_relaxed);
    i.holders = e->holds.load();
    out.push_back(std::move(i));
  }
  return out;
}

Status NamespaceRegistry::AppendLine(const std::string& line) {
  if (options_.file.empty()) return Status::OK();
  FILE* f = std::fopen(options_.file.c_str(), "a");
  if (f == nullptr) return Status::IOError("cannot append to namespace file '" + options_.file + "'");
  const std::string text = line + '\n';
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fflush(f) == 0 && ok;
  ok = fsync(fileno(f)) == 0 && ok;
  std::fclose(f);
  if (!ok) return Status::IOError("writing namespace file '" + options_.file + "' failed");
  ++file_lines_;
  return Status::OK();
}

// The live registrations only, written to a temporary file that replaces
// the old one (rename is atomic: a crash leaves one or the other, whole).
Status NamespaceRegistry::RewriteLocked() {
  if (options_.file.empty()) return Status::OK();
  const std::string tmp = options_.file + ".tmp";
  std::string text;
  size_t lines = 0;
  const uint32_t bound = next_id_.load(std::memory_order_relaxed);
  for (NamespaceId id = 0; id < bound; ++id) {
    Entry* e = Find(id);
    if (e == nullptr || e->state.load() == kFree) continue;
    text += NamespaceLine(id, e->spec) + '\n';
    ++lines;
  }
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return Status::IOError("cannot write '" + tmp + "'");
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fflush(f) == 0 && ok;
  ok = fsync(fileno(f)) == 0 && ok;
  std::fclose(f);
  if (!ok || std::rename(tmp.c_str(), options_.file.c_str()) != 0)
    return Status::IOError("rewriting namespace file '" + options_.file + "' failed");
  const std::string dir = options_.file.find('/') == std::string::npos
                              ? "."
                              : options_.file.substr(0, options_.file.rfind('/') + 1);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    (void)fsync(dfd);
    ::close(dfd);
  }
  file_lines_ = lines;
  return Status::OK();
}

// A crash while appending leaves a torn last line (no newline, or cut
// fields). It is dropped and cut off the file before anything new is
// appended, so that the next line starts on a line of its own; a malformed
// line anywhere else is damage and stops the start.
Status NamespaceRegistry::Load() {
  if (options_.file.empty()) return Status::OK();
  std::ifstream in(options_.file, std::ios::binary);
  if (!in) return Status::OK();  // first start
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const uint64_t now = options_.clock();
  size_t pos = 0, good_end = 0, n = 0, dead = 0;
  std::lock_guard<std::mutex> l(mu_);
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    const bool complete = nl != std::string::npos;
    const std::string line = text.substr(pos, complete ? nl - pos : std::string::npos);
    const size_t next = complete ? nl + 1 : text.size();
    ++n;
    std::istringstream ls(line);
    std::string v, model, rev, salt, tenant, extra;
    NamespaceId id = 0;
    ls >> v >> id;
    bool valid = complete && static_cast<bool>(ls) && id < kMaxIds;
    if (valid && v == "rm") {
      valid = !(ls >> extra) && Live(id);
      if (valid) {
        Entry& e = *Find(id);
        by_spec_.erase(KeyOf(e.spec));
        e.state.store(kFree);
        live_.fetch_sub(1, std::memory_order_relaxed);
        dead += 2;  // its registration and this line
      }
    } else if (valid && v == "v1") {
      int mode = 0, dtype = 0;
      NamespaceSpec spec;
      ls >> mode >> spec.layout.num_layers >> spec.layout.num_kv_heads >> spec.layout.head_dim >>
          spec.layout.tokens_per_block >> dtype >> spec.layout.planes >> spec.tp_rank >>
          spec.tp_size >> model >> rev >> salt;
      bool fields = static_cast<bool>(ls);
      if (fields && (ls >> tenant)) {  // an owning tenant (not the default one)
        fields = tenant.size() > 1 && tenant[0] == 't' && !(ls >> extra);
        tenant[0] = 'x';
        fields = fields && Unhex(tenant, &spec.tenant) && !spec.tenant.empty();
      }
      spec.hash_mode = static_cast<HashMode>(mode);
      spec.layout.dtype = static_cast<DType>(dtype);
      valid = fields && !Live(id) && Unhex(model, &spec.model_id) &&
              Unhex(rev, &spec.model_revision) && Unhex(salt, &spec.tenant_salt) &&
              spec.Validate().ok() && by_spec_.count(KeyOf(spec)) == 0;
      if (valid) {
        Entry& e = At(id);
        e.spec = std::move(spec);
        e.active_ns.store(now);
        e.tenant.store(options_.tenant_index ? options_.tenant_index(e.spec.tenant)
                                             : (e.spec.tenant.empty() ? 0 : kNoTenant));
        e.state.store(kLive);
        by_spec_.emplace(KeyOf(e.spec), id);
        live_.fetch_add(1, std::memory_order_relaxed);
        if (id >= next_id_.load()) next_id_.store(id + 1);
      }
    } else {
      valid = false;
    }
    if (!valid) {
      if (next < text.size())
        return Status::Corruption("namespace file '" + options_.file + "' line " +
                                  std::to_string(n) + " is malformed");
      break;  // the torn last line
    }
    good_end = next;
    pos = next;
  }
  file_lines_ = n - (good_end < text.size() ? 1 : 0);
  for (NamespaceId id = 0; id < next_id_.load(); ++id)
    if (!Live(id)) free_ids_.push_back(id);
  if (good_end < text.size()) {
    if (::truncate(options_.file.c_str(), static_cast<off_t>(good_end)) != 0)
      return Status::IOError("cannot cut the torn last line off namespace file '" + options_.file +
                             "'");
    if (options_.log_warning)
      options_.log_warning("namespace file '" + options_.file + "': dropped a torn last line (" +
                           std::to_string(text.size() - good_end) + " bytes) left by a crash");
  }
  if (dead > 0) return RewriteLocked();
  return Status::OK();
}

}  // namespace kvtier
