// SmallTmpfs: a real, small file system for tests of a full disk — a tmpfs
// of a given size mounted on a fresh directory, unmounted and removed on
// destruction. Mounting needs CAP_SYS_ADMIN (root); without it ok() is false
// and why() says so, and the test skips. Test-only; not thread-safe.
#pragma once

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace kvtier::testing {

class SmallTmpfs {
 public:
  explicit SmallTmpfs(uint64_t bytes) {
    char tmpl[] = "/tmp/kvtier-small-fs-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      why_ = std::string("mkdtemp: ") + std::strerror(errno);
      return;
    }
    path_ = tmpl;
    const std::string opts = "size=" + std::to_string(bytes) + ",mode=0700";
    if (::mount("tmpfs", path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
      why_ = std::string("cannot mount a tmpfs (needs root): ") + std::strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;

  bool ok() const { return mounted_; }
  const std::string& why() const { return why_; }
  const std::string& path() const { return path_; }

  // Fills the file system with `name` until a write fails with ENOSPC;
  // returns the bytes written (0 when the file could not be created).
  uint64_t Fill(const std::string& name = "filler") const {
    FILE* f = std::fopen((path_ + "/" + name).c_str(), "w");
    if (f == nullptr) return 0;
    std::vector<char> chunk(4096, 'x');
    uint64_t written = 0;
    for (;;) {
      size_t n = std::fwrite(chunk.data(), 1, chunk.size(), f);
      written += n;
      if (n < chunk.size() || std::fflush(f) != 0) break;
    }
    std::fclose(f);
    return written;
  }
  void Unfill(const std::string& name = "filler") const { std::remove((path_ + "/" + name).c_str()); }

 private:
  std::string path_;
  std::string why_;
  bool mounted_ = false;
};

}  // namespace kvtier::testing
