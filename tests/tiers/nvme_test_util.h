// Test helpers for the NVMe tier tests: a scratch directory on a real file
// system, deterministic payloads. Test-only; not thread-safe.
#pragma once

#include <sys/vfs.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "tiers/aligned_buffer.h"

namespace kvtier::testing {

inline constexpr long kTmpfsMagic = 0x01021994;

inline bool IsTmpfs(const std::string& dir) {
  struct statfs fs;
  return statfs(dir.c_str(), &fs) == 0 && fs.f_type == kTmpfsMagic;
}

// A fresh directory, removed with its contents on destruction. Prefers a
// real file system (O_DIRECT works there): $KVTIER_TEST_DIR, $TMPDIR, /tmp,
// then the working directory (ctest runs tests in the build directory).
// Shared by the NVMe and the engine's checkpoint tests.
class ScratchDir {
 public:
  ScratchDir() {
    std::vector<std::string> candidates;
    for (const char* env : {"KVTIER_TEST_DIR", "TMPDIR"}) {
      if (const char* v = std::getenv(env); v && *v) candidates.emplace_back(v);
    }
    candidates.emplace_back("/tmp");
    candidates.push_back(std::filesystem::current_path().string());
    std::string chosen;
    for (const auto& c : candidates) {
      if (!std::filesystem::is_directory(c)) continue;
      if (chosen.empty()) chosen = c;
      if (!IsTmpfs(c)) {
        chosen = c;
        break;
      }
    }
    std::string tmpl = chosen + "/kvtier-test-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr) path_ = buf.data();
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // path/name made a directory.
  std::string Dir(const std::string& name) const {
    std::filesystem::create_directories(File(name));
    return File(name);
  }

 private:
  std::string path_;
};

// A 4 KiB-aligned buffer of `n` bytes (rounded up) filled from `seed`.
inline AlignedBuffer RandomBuffer(size_t n, uint64_t seed) {
  AlignedBuffer b = std::move(AlignedBuffer::Allocate(n).value());
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= b.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(b.data() + i, &v, 8);
  }
  return b;
}

inline AlignedBuffer ZeroBuffer(size_t n) { return std::move(AlignedBuffer::Allocate(n).value()); }

}  // namespace kvtier::testing
