// WriteRandomCheckpoint: see engine_adapter/engine/safetensors.h.
//
// Every value is a pure function of (seed, tensor name, element index): a
// splitmix64 finalizer over a counter, so chunks are generated independently
// on worker threads and the bytes do not depend on the thread count. The
// calling thread writes the chunks in order; a chunk per worker and two more
// are in memory. Each file is written under a temporary name and renamed when
// complete, config.json last: a write killed midway leaves no config.json, so
// Checkpoint::Open does not take the directory for a checkpoint.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <new>
#include <nlohmann/json.hpp>
#include <optional>
#include <system_error>
#include <thread>

#include "engine_adapter/engine/safetensors.h"

namespace kvtier::engine {
namespace {

using ordered_json = nlohmann::ordered_json;

constexpr uint64_t kChunkElements = uint64_t{4} << 20;  // 8 MiB of bf16

uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// How one tensor's values are drawn: scale * u + center, u uniform in (-1, 1).
struct Distribution {
  float scale;
  float center;
};

Distribution DistributionFor(const std::string& name) {
  if (name.ends_with("norm.weight")) return {0.1f, 1.0f};  // 1 + U(-0.1, 0.1)
  // U(-a, a) has standard deviation a / sqrt(3).
  return {static_cast<float>(0.02 * std::sqrt(3.0)), 0.0f};
}

// Elements [begin, begin + n) of a tensor, as bf16.
void Generate(uint64_t key, Distribution dist, uint64_t begin, uint64_t n, uint16_t* out) {
  constexpr float kUnit = 1.0f / 8388608.0f;  // 2^-23
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t x = Mix64(key + (begin + i + 1) * 0x9e3779b97f4a7c15ull);
    // 23 random bits k give u = (2k + 1 - 2^23) / 2^23, exact in float,
    // symmetric around 0.
    int32_t m = static_cast<int32_t>(((x >> 41) << 1) | 1) - (1 << 23);
    float u = static_cast<float>(m) * kUnit;
    // One rounding either way, so the bytes do not depend on whether the
    // compiler would have fused the multiply and add.
    float v = dist.center == 0.0f ? u * dist.scale : std::fma(u, dist.scale, dist.center);
    out[i] = FloatToBf16(v);
  }
}

Status WriteAll(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(path + ": write: " + std::strerror(errno));
    }
    if (w == 0) return Status::IOError(path + ": write wrote nothing");
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

// A file written under path + ".partial", renamed to path by Commit(), and
// removed if never committed.
class PartialFile {
 public:
  ~PartialFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
  }
  Status Create(const std::string& path) {
    path_ = path;
    tmp_ = path + ".partial";
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      tmp_.clear();
      return Status::IOError(path_ + ".partial: open: " + std::strerror(errno));
    }
    return Status::OK();
  }
  Status Write(const void* data, size_t n) { return WriteAll(fd_, data, n, tmp_); }
  Status Commit() {
    if (::fdatasync(fd_) != 0) return Status::IOError(tmp_ + ": fdatasync: " + std::strerror(errno));
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return Status::IOError(tmp_ + ": close: " + std::strerror(errno));
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      return Status::IOError(tmp_ + ": rename to " + path_ + ": " + std::strerror(errno));
    }
    tmp_.clear();
    return Status::OK();
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

Status WriteTextFile(const std::string& path, const std::string& text) {
  PartialFile f;
  KVTIER_RETURN_IF_ERROR(f.Create(path));
  KVTIER_RETURN_IF_ERROR(f.Write(text.data(), text.size()));
  return f.Commit();
}

struct PlannedTensor {
  TensorSpec spec;
  uint64_t elements = 0;
  uint64_t offset = 0;  // within its file's data
};

struct PlannedFile {
  std::string name;
  std::vector<PlannedTensor> tensors;
  uint64_t data_bytes = 0;
};

// Tensors in spec order, a new shard when the next would pass shard_bytes; a
// tensor larger than shard_bytes gets a shard to itself.
std::vector<PlannedFile> PlanShards(const std::vector<TensorSpec>& specs, uint64_t shard_bytes) {
  std::vector<PlannedFile> files;
  for (const TensorSpec& spec : specs) {
    PlannedTensor t{spec, 1, 0};
    for (int64_t d : spec.shape) t.elements *= static_cast<uint64_t>(d);
    const uint64_t bytes = t.elements * 2;
    if (files.empty() ||
        (!files.back().tensors.empty() && files.back().data_bytes + bytes > shard_bytes)) {
      files.emplace_back();
    }
    t.offset = files.back().data_bytes;
    files.back().data_bytes += bytes;
    files.back().tensors.push_back(std::move(t));
  }
  if (files.size() == 1) {
    files[0].name = "model.safetensors";
  } else {
    for (size_t i = 0; i < files.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, files.size());
      files[i].name = name;
    }
  }
  return files;
}

// The 8-byte length and the JSON header, padded with spaces so that the
// data starts at a multiple of 8 bytes (as the safetensors library writes).
std::string SafetensorsHeader(const PlannedFile& file) {
  ordered_json j;
  j["__metadata__"] = {{"format", "pt"}};
  for (const PlannedTensor& t : file.tensors) {
    j[t.spec.name] = {{"dtype", "BF16"},
                      {"shape", t.spec.shape},
                      {"data_offsets", {t.offset, t.offset + t.elements * 2}}};
  }
  std::string text = j.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + text;
}

struct Job {
  size_t file, tensor;
  uint64_t begin, count;
};

// Worker threads fill chunk slots; the caller's thread writes them in order.
// Job j uses slot j % slots and may start once job j - slots is written.
class ChunkPipeline {
 public:
  ChunkPipeline(const std::vector<Job>& jobs, size_t slots) : jobs_(jobs), ready_(jobs.size()) {
    uint64_t largest = 0;
    for (const Job& job : jobs) largest = std::max(largest, job.count);
    buffers_.resize(slots);
    for (auto& b : buffers_) b.resize(largest);
  }

  void Work(const std::vector<PlannedFile>& files, uint64_t seed) {
    for (;;) {
      size_t j;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] {
          return abort_ || next_ == jobs_.size() || next_ < written_ + buffers_.size();
        });
        if (abort_ || next_ == jobs_.size()) return;
        j = next_++;
      }
      const Job& job = jobs_[j];
      const std::string& name = files[job.file].tensors[job.tensor].spec.name;
      const uint64_t key = Mix64(seed ^ Mix64(Fnv1a64(name)));
      Generate(key, DistributionFor(name), job.begin, job.count,
               buffers_[j % buffers_.size()].data());
      {
        std::lock_guard lock(mu_);
        ready_[j] = true;
      }
      cv_.notify_all();
    }
  }

  // Waits for job j's chunk.
  const uint16_t* Wait(size_t j) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return bool(ready_[j]); });
    return buffers_[j % buffers_.size()].data();
  }
  void Written(size_t j) {
    {
      std::lock_guard lock(mu_);
      written_ = j + 1;
    }
    cv_.notify_all();
  }
  void Abort() {
    {
      std::lock_guard lock(mu_);
      abort_ = true;
    }
    cv_.notify_all();
  }

 private:
  const std::vector<Job>& jobs_;
  std::vector<std::vector<uint16_t>> buffers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<char> ready_;
  size_t next_ = 0;
  size_t written_ = 0;
  bool abort_ = false;
};

// Writes the files' tensors through a pipeline of `threads` workers.
Status WriteShards(const std::string& dir, const std::vector<PlannedFile>& files,
                   const RandomCheckpointOptions& options, unsigned threads) {
  std::vector<Job> jobs;
  uint64_t total = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    total += files[f].data_bytes;
    for (size_t t = 0; t < files[f].tensors.size(); ++t) {
      const uint64_t n = files[f].tensors[t].elements;
      for (uint64_t b = 0; b < n; b += kChunkElements) {
        jobs.push_back({f, t, b, std::min(kChunkElements, n - b)});
      }
    }
  }
  threads = static_cast<unsigned>(std::min<size_t>(threads, std::max<size_t>(jobs.size(), 1)));
  // A chunk per worker, and two for the writer to take while they work.
  std::optional<ChunkPipeline> pipeline_slot;
  try {
    pipeline_slot.emplace(jobs, std::min<size_t>(threads + 2, std::max<size_t>(jobs.size(), 1)));
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("random checkpoint: no memory for the chunk buffers");
  }
  ChunkPipeline& pipeline = *pipeline_slot;
  std::vector<std::thread> workers;
  Status st;
  try {
    for (unsigned i = 0; i < threads; ++i) {
      workers.emplace_back([&] { pipeline.Work(files, options.seed); });
    }
  } catch (const std::system_error& e) {
    st = Status::ResourceExhausted(std::string("random checkpoint: starting threads: ") + e.what());
  }
  if (workers.empty() && st.ok()) st = Status::Internal("random checkpoint: no worker thread");

  uint64_t done = 0;
  size_t j = 0;
  for (size_t f = 0; f < files.size() && st.ok(); ++f) {
    PartialFile out;
    st = out.Create(dir + "/" + files[f].name);
    const std::string header = SafetensorsHeader(files[f]);
    if (st.ok()) st = out.Write(header.data(), header.size());
    for (; st.ok() && j < jobs.size() && jobs[j].file == f; ++j) {
      const uint16_t* chunk = pipeline.Wait(j);
      st = out.Write(chunk, jobs[j].count * 2);
      pipeline.Written(j);
      done += jobs[j].count * 2;
      if (st.ok() && options.progress) options.progress(done, total);
    }
    if (st.ok()) st = out.Commit();
  }
  pipeline.Abort();
  for (std::thread& w : workers) w.join();
  return st;
}

}  // namespace

Status WriteRandomCheckpoint(const ModelConfig& config, const std::string& dir,
                             const RandomCheckpointOptions& options) {
  if (Status st = config.Validate(); !st.ok()) {
    return Status::InvalidArgument("random checkpoint: " + st.message());
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError(dir + ": create directories: " + ec.message());

  // A directory that held a checkpoint stops looking like one until the new
  // config.json lands; a stale index would be taken over model.safetensors.
  const std::string config_path = dir + "/config.json";
  const std::string index_path = dir + "/model.safetensors.index.json";
  for (const std::string& p : {config_path, index_path}) {
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
      return Status::IOError(p + ": unlink: " + std::strerror(errno));
    }
  }

  const std::vector<PlannedFile> files = PlanShards(LlamaTensorSpecs(config), options.shard_bytes);
  unsigned threads = options.threads ? options.threads : std::thread::hardware_concurrency();
  KVTIER_RETURN_IF_ERROR(WriteShards(dir, files, options, std::max(threads, 1u)));

  if (files.size() > 1) {
    nlohmann::json weight_map = nlohmann::json::object();  // sorted by name, as HF writes it
    uint64_t total = 0;
    for (const PlannedFile& f : files) {
      total += f.data_bytes;
      for (const PlannedTensor& t : f.tensors) weight_map[t.spec.name] = f.name;
    }
    ordered_json index;
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = weight_map;
    KVTIER_RETURN_IF_ERROR(WriteTextFile(index_path, index.dump(2) + "\n"));
  }
  return WriteTextFile(config_path, config.ToJson());
}

}  // namespace kvtier::engine
