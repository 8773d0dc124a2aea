#include "bench/trace_reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "bench/trace_json.h"

namespace kvtier::bench {

namespace {

// Open-addressing map from a trace's hash id to a dense id; cleared per
// session. Linear probing over a power-of-two table.
class FlatIdMap {
 public:
  FlatIdMap() { Reset(1024); }

  // The dense id of `key`, assigning `next` (and incrementing it) if new.
  uint32_t Get(uint64_t key, uint32_t* next) {
    if (key == kEmpty) {  // the sentinel value itself, kept aside
      if (!has_empty_key_) {
        has_empty_key_ = true;
        empty_key_value_ = (*next)++;
      }
      return empty_key_value_;
    }
    size_t i = Mix(key) & mask_;
    for (;; i = (i + 1) & mask_) {
      if (keys_[i] == key) return vals_[i];
      if (keys_[i] == kEmpty) break;
    }
    const uint32_t v = (*next)++;
    keys_[i] = key;
    vals_[i] = v;
    if (++size_ * 4 > keys_.size() * 3) Grow();  // invalidates i
    return v;
  }

  void Clear() {
    if (size_ == 0 && !has_empty_key_) return;
    std::fill(keys_.begin(), keys_.end(), kEmpty);
    size_ = 0;
    has_empty_key_ = false;
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t Mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
  }
  void Reset(size_t n) {
    keys_.assign(n, kEmpty);
    vals_.assign(n, 0);
    mask_ = n - 1;
    size_ = 0;
  }
  void Grow() {
    std::vector<uint64_t> keys = std::move(keys_);
    std::vector<uint32_t> vals = std::move(vals_);
    Reset(keys.size() * 2);
    for (size_t j = 0; j < keys.size(); ++j) {
      if (keys[j] == kEmpty) continue;
      size_t i = Mix(keys[j]) & mask_;
      while (keys_[i] != kEmpty) i = (i + 1) & mask_;
      keys_[i] = keys[j];
      vals_[i] = vals[j];
      ++size_;
    }
  }

  std::vector<uint64_t> keys_;
  std::vector<uint32_t> vals_;
  size_t mask_ = 0;
  size_t size_ = 0;
  bool has_empty_key_ = false;
  uint32_t empty_key_value_ = 0;
};

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

Status Malformed(std::string_view what, size_t where) {
  return Status::InvalidArgument("malformed trace: " + std::string(what) + " at byte " +
                                 std::to_string(where));
}

Status ReadFile(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return Status::IOError("cannot read " + path);
  *out = std::move(ss).str();
  return Status::OK();
}

// Reads hash ids of an array into *ids (cleared first).
bool ReadIdArray(JsonCursor& c, std::vector<uint64_t>* ids) {
  ids->clear();
  if (!c.BeginArray()) return false;
  bool first = true;
  for (;;) {
    JsonCursor::Step st = c.ArrayNext(&first);
    if (st == JsonCursor::Step::kEnd) return true;
    uint64_t v;
    if (st == JsonCursor::Step::kError || !c.Uint(&v)) return false;
    ids->push_back(v);
  }
}

// A `requests` array of an agentic session; times relative to 0 (the
// caller shifts them). Recurses into sub-agent entries.
Status ParseAgenticRequests(JsonCursor& c, TraceBuilder* b, std::vector<uint64_t>* ids) {
  if (!c.BeginArray()) return Malformed("`requests` is not an array", c.offset());
  bool first_req = true;
  for (;;) {
    JsonCursor::Step st = c.ArrayNext(&first_req);
    if (st == JsonCursor::Step::kEnd) return Status::OK();
    if (st == JsonCursor::Step::kError || !c.BeginObject())
      return Malformed("request is not an object", c.offset());
    double t = 0;
    uint64_t in = 0;
    bool subagent = false, has_nested = false;
    const size_t nested_from = b->num_requests();
    ids->clear();
    bool first = true;
    std::string_view key;
    for (;;) {
      st = c.ObjectNext(&first, &key);
      if (st == JsonCursor::Step::kEnd) break;
      if (st == JsonCursor::Step::kError) return Malformed("bad request object", c.offset());
      bool ok;
      if (key == "t") {
        ok = c.Number(&t);
      } else if (key == "in") {
        ok = c.Uint(&in);
      } else if (key == "type") {
        std::string_view v;
        ok = c.String(&v);
        subagent = v == "subagent";
      } else if (key == "hash_ids") {
        ok = ReadIdArray(c, ids);
      } else if (key == "requests") {
        // Nested requests reuse `ids`; the parent entry has none of its own.
        KVTIER_RETURN_IF_ERROR(ParseAgenticRequests(c, b, ids));
        ids->clear();
        has_nested = true;
        ok = true;
      } else {
        ok = c.SkipValue();
      }
      if (!ok) return Malformed("bad value of \"" + std::string(key) + "\"", c.offset());
    }
    if (subagent || has_nested) {
      b->ShiftTimes(nested_from, t);
    } else {
      b->AddRequest(t, in, *ids);
    }
  }
}

// Calls `fn(object_text)` for each top-level JSON object of a stream read
// with `read(buf, n)` (returns bytes read, 0 at the end). Stops early when
// fn sets *stop. Objects are found by brace depth outside strings.
template <typename Read, typename Fn>
Status ForEachTopLevelObject(Read read, Fn fn) {
  std::string buf;
  size_t scan = 0, obj_start = 0;
  int depth = 0;
  bool in_string = false, escape = false;
  std::vector<char> chunk(size_t{1} << 20);
  uint64_t consumed = 0;  // bytes dropped from the front of buf
  for (;;) {
    const size_t n = read(chunk.data(), chunk.size());
    if (n == 0) break;
    buf.append(chunk.data(), n);
    for (; scan < buf.size(); ++scan) {
      const char ch = buf[scan];
      if (in_string) {
        if (escape) {
          escape = false;
        } else if (ch == '\\') {
          escape = true;
        } else if (ch == '"') {
          in_string = false;
        }
        continue;
      }
      if (ch == '"') {
        if (depth == 0) return Malformed("string outside an object", consumed + scan);
        in_string = true;
      } else if (ch == '{' || ch == '[') {
        if (depth == 0) {
          if (ch == '[') return Malformed("array outside an object", consumed + scan);
          obj_start = scan;
        }
        ++depth;
      } else if (ch == '}' || ch == ']') {
        if (--depth < 0) return Malformed("unbalanced bracket", consumed + scan);
        if (depth == 0) {
          bool stop = false;
          KVTIER_RETURN_IF_ERROR(
              fn(std::string_view(buf).substr(obj_start, scan + 1 - obj_start), &stop));
          if (stop) return Status::OK();
          obj_start = scan + 1;
        }
      } else if (depth == 0 && ch != ' ' && ch != '\n' && ch != '\r' && ch != '\t' &&
                 ch != '\0') {
        // tar -O pads nothing, but tolerate NULs; anything else is garbage.
        return Malformed("text outside an object", consumed + scan);
      }
    }
    // Drop what is fully consumed: everything before the open object.
    const size_t keep_from = depth == 0 ? buf.size() : obj_start;
    if (keep_from > 0) {
      buf.erase(0, keep_from);
      consumed += keep_from;
      scan -= keep_from;
      obj_start -= std::min(obj_start, keep_from);
    }
  }
  if (depth != 0 || in_string) return Malformed("truncated object", consumed + buf.size());
  return Status::OK();
}

// Reads the .json members of a tar archive (compressed or not: libarchive
// detects xz, gzip, bzip2, zstd, ...) in archive order, passing each top-level
// object to `session`. Other members are skipped, like the other files of a
// trace directory.
template <typename Fn>
Status ReadArchiveSessions(const std::string& path, Fn session) {
  std::unique_ptr<archive, int (*)(archive*)> a(archive_read_new(), archive_read_free);
  if (a == nullptr) return Status::IOError("libarchive: out of memory");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), size_t{1} << 20) != ARCHIVE_OK)
    return Status::IOError(path + ": " + archive_error_string(a.get()));
  for (;;) {
    archive_entry* e = nullptr;
    const int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) return Status::OK();
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
      return Status::IOError(path + ": " + archive_error_string(a.get()));
    const char* name = archive_entry_pathname(e);
    const std::string member = name != nullptr ? name : "";
    if (archive_entry_filetype(e) != AE_IFREG || !EndsWith(member, ".json")) continue;
    bool stopped = false, read_error = false;
    Status s = ForEachTopLevelObject(
        [&](char* dst, size_t n) -> size_t {
          const la_ssize_t got = archive_read_data(a.get(), dst, n);
          if (got < 0) {
            read_error = true;
            return 0;
          }
          return static_cast<size_t>(got);
        },
        [&](std::string_view obj, bool* stop) {
          Status st = session(obj, stop);
          stopped = *stop;
          return st;
        });
    if (read_error)
      return Status::IOError(path + ": " + member + ": " + archive_error_string(a.get()));
    if (!s.ok()) return Status::InvalidArgument(path + ": " + member + ": " + s.message());
    if (stopped) return Status::OK();
  }
}

std::string BaseName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  std::string base = std::filesystem::path(p).filename().string();
  for (std::string_view ext : {".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.zst", ".tar", ".jsonl", ".json"}) {
    if (EndsWith(base, ext)) {
      base.resize(base.size() - ext.size());
      break;
    }
  }
  return base;
}

}  // namespace

// ---- TraceBuilder ----------------------------------------------------------

struct TraceBuilder::Impl {
  std::vector<TraceRequest> requests;
  std::vector<uint32_t> refs;
  FlatIdMap ids;
  uint32_t next_dense = 0;
  uint32_t sessions = 0;
  uint32_t block_tokens = 0;
};

TraceBuilder::TraceBuilder() : impl_(new Impl) {}
TraceBuilder::~TraceBuilder() { delete impl_; }

uint32_t TraceBuilder::BeginSession() {
  impl_->ids.Clear();
  return impl_->sessions++;
}

uint32_t TraceBuilder::sessions() const { return impl_->sessions; }
size_t TraceBuilder::num_requests() const { return impl_->requests.size(); }

void TraceBuilder::ShiftTimes(size_t first, double delta_s) {
  for (size_t i = first; i < impl_->requests.size(); ++i) impl_->requests[i].time_s += delta_s;
}

Status TraceBuilder::SetBlockTokens(uint32_t tokens) {
  if (tokens == 0) return Status::InvalidArgument("block size 0 in trace");
  if (impl_->block_tokens != 0 && impl_->block_tokens != tokens)
    return Status::InvalidArgument("trace files disagree on the block size (" +
                                   std::to_string(impl_->block_tokens) + " vs " +
                                   std::to_string(tokens) + " tokens)");
  impl_->block_tokens = tokens;
  return Status::OK();
}

void TraceBuilder::AddRequest(double time_s, uint64_t input_tokens,
                              std::span<const uint64_t> hash_ids) {
  Impl& m = *impl_;
  TraceRequest r;
  r.time_s = time_s;
  r.input_tokens = input_tokens;
  r.first_ref = m.refs.size();
  r.num_blocks = static_cast<uint32_t>(hash_ids.size());
  r.session = m.sessions == 0 ? 0 : m.sessions - 1;
  for (uint64_t h : hash_ids) m.refs.push_back(m.ids.Get(h, &m.next_dense));
  m.requests.push_back(r);
}

Trace TraceBuilder::Finish(const TraceReadOptions& o) {
  Impl& m = *impl_;
  Trace t;
  t.name = o.name;
  t.block_tokens = o.block_tokens != 0 ? o.block_tokens : m.block_tokens;
  t.num_sessions = m.sessions;
  std::stable_sort(m.requests.begin(), m.requests.end(),
                   [](const TraceRequest& a, const TraceRequest& b) { return a.time_s < b.time_s; });
  if (o.max_requests != 0 && m.requests.size() > o.max_requests) m.requests.resize(o.max_requests);
  // Lay refs out in replay order and renumber blocks by first appearance,
  // so that dropped requests leave no ids behind and replay reads refs
  // sequentially.
  std::vector<uint32_t> remap(m.next_dense, ~uint32_t{0});
  size_t total = 0;
  for (const TraceRequest& r : m.requests) total += r.num_blocks;
  t.refs.reserve(total);
  uint32_t next = 0;
  for (TraceRequest r : m.requests) {
    const uint64_t from = r.first_ref;
    r.first_ref = t.refs.size();
    for (uint32_t i = 0; i < r.num_blocks; ++i) {
      uint32_t& d = remap[m.refs[from + i]];
      if (d == ~uint32_t{0}) d = next++;
      t.refs.push_back(d);
    }
    t.total_input_tokens += r.input_tokens;
    t.max_request_blocks = std::max(t.max_request_blocks, r.num_blocks);
    t.requests.push_back(r);
  }
  t.num_unique_blocks = next;
  m.requests.clear();
  m.requests.shrink_to_fit();
  m.refs.clear();
  m.refs.shrink_to_fit();
  return t;
}

// ---- Parsers -------------------------------------------------------------

Status ParseMooncakeJsonl(std::string_view text, TraceBuilder* b) {
  if (b->sessions() == 0) b->BeginSession();
  std::vector<uint64_t> ids;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    JsonCursor c(line);
    if (c.AtEnd()) continue;
    const std::string where = "line " + std::to_string(line_no);
    if (!c.BeginObject()) return Status::InvalidArgument(where + ": not a JSON object");
    double ts_ms = 0;
    uint64_t input = 0;
    bool has_ids = false;
    ids.clear();
    bool first = true;
    std::string_view key;
    for (;;) {
      JsonCursor::Step st = c.ObjectNext(&first, &key);
      if (st == JsonCursor::Step::kEnd) break;
      if (st == JsonCursor::Step::kError)
        return Status::InvalidArgument(where + ": malformed object at column " +
                                       std::to_string(c.offset() + 1));
      bool ok;
      if (key == "timestamp") {
        ok = c.Number(&ts_ms);
      } else if (key == "input_length") {
        ok = c.Uint(&input);
      } else if (key == "hash_ids") {
        ok = ReadIdArray(c, &ids);
        has_ids = true;
      } else {
        ok = c.SkipValue();
      }
      if (!ok)
        return Status::InvalidArgument(where + ": bad value of \"" + std::string(key) + "\"");
    }
    if (!c.AtEnd()) return Status::InvalidArgument(where + ": text after the object");
    if (!has_ids) return Status::InvalidArgument(where + ": no hash_ids");
    b->AddRequest(ts_ms / 1000.0, input, ids);
  }
  return Status::OK();
}

Status ParseAgenticSession(std::string_view text, double stagger_s, TraceBuilder* b) {
  JsonCursor c(text);
  if (!c.BeginObject()) return Malformed("session is not a JSON object", c.offset());
  b->BeginSession();
  const size_t from = b->num_requests();
  std::vector<uint64_t> ids;
  bool first = true;
  std::string_view key;
  for (;;) {
    JsonCursor::Step st = c.ObjectNext(&first, &key);
    if (st == JsonCursor::Step::kEnd) break;
    if (st == JsonCursor::Step::kError) return Malformed("bad session object", c.offset());
    if (key == "block_size") {
      uint64_t bs;
      if (!c.Uint(&bs) || bs == 0 || bs > (1u << 20)) return Malformed("bad block_size", c.offset());
      KVTIER_RETURN_IF_ERROR(b->SetBlockTokens(static_cast<uint32_t>(bs)));
    } else if (key == "requests") {
      KVTIER_RETURN_IF_ERROR(ParseAgenticRequests(c, b, &ids));
    } else if (!c.SkipValue()) {
      return Malformed("bad value of \"" + std::string(key) + "\"", c.offset());
    }
  }
  if (!c.AtEnd()) return Malformed("text after the session object", c.offset());
  if (stagger_s != 0) b->ShiftTimes(from, stagger_s);
  return Status::OK();
}

Result<Trace> ReadTrace(const std::string& path, const TraceReadOptions& options) {
  TraceReadOptions o = options;
  if (o.name.empty()) o.name = BaseName(path);
  std::error_code ec;
  const bool is_dir = std::filesystem::is_directory(path, ec);
  if (!is_dir && !std::filesystem::exists(path, ec)) return Status::NotFound("no trace at " + path);
  TraceFormat fmt = o.format;
  if (fmt == TraceFormat::kAuto) fmt = EndsWith(path, ".jsonl") ? TraceFormat::kMooncake : TraceFormat::kAgentic;

  TraceBuilder b;
  if (fmt == TraceFormat::kMooncake) {
    if (is_dir) return Status::InvalidArgument("a Mooncake trace is one .jsonl file, not a directory");
    std::string text;
    KVTIER_RETURN_IF_ERROR(ReadFile(path, &text));
    KVTIER_RETURN_IF_ERROR(ParseMooncakeJsonl(text, &b));
    if (o.block_tokens == 0) o.block_tokens = 512;
  } else {
    auto session = [&](std::string_view obj, bool* stop) -> Status {
      KVTIER_RETURN_IF_ERROR(ParseAgenticSession(obj, b.sessions() * o.session_stagger_s, &b));
      *stop = o.max_sessions != 0 && b.sessions() >= o.max_sessions;
      return Status::OK();
    };
    if (is_dir) {
      std::vector<std::string> files;
      for (const auto& e : std::filesystem::directory_iterator(path, ec))
        if (e.is_regular_file() && EndsWith(e.path().string(), ".json"))
          files.push_back(e.path().string());
      if (ec) return Status::IOError("cannot list " + path + ": " + ec.message());
      std::sort(files.begin(), files.end());
      for (const std::string& f : files) {
        std::string text;
        KVTIER_RETURN_IF_ERROR(ReadFile(f, &text));
        bool stop = false;
        Status s = session(text, &stop);
        if (!s.ok()) return Status::InvalidArgument(f + ": " + s.message());
        if (stop) break;
      }
    } else if (EndsWith(path, ".json")) {
      std::string text;
      KVTIER_RETURN_IF_ERROR(ReadFile(path, &text));
      std::string_view rest = text;
      KVTIER_RETURN_IF_ERROR(ForEachTopLevelObject(
          [&](char* dst, size_t n) {
            n = std::min(n, rest.size());
            std::copy_n(rest.data(), n, dst);
            rest.remove_prefix(n);
            return n;
          },
          session));
    } else {
      KVTIER_RETURN_IF_ERROR(ReadArchiveSessions(path, session));
    }
  }
  if (b.num_requests() == 0) return Status::InvalidArgument("no requests in " + path);
  return b.Finish(o);
}

}  // namespace kvtier::bench
