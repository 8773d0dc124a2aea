#include "server/data_dir.h"

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace kvtier {

namespace {
Status Errno(const std::string& what) { return Status::IOError(what + ": " + std::strerror(errno)); }
}  // namespace

Result<gid_t> ResolveGroup(std::string_view group) {
  if (group.empty()) return Status::InvalidArgument("empty group");
  bool numeric = true;
  for (char c : group) numeric = numeric && c >= '0' && c <= '9';
  if (numeric && group.size() <= 9) return static_cast<gid_t>(std::stoul(std::string(group)));
  const std::string name(group);
  std::vector<char> buf(16384);
  struct group g {};
  struct group* found = nullptr;
  int rc;
  while ((rc = getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1u << 20))
    buf.resize(buf.size() * 4);
  if (rc != 0 || found == nullptr)
    return Status::InvalidArgument("unknown group '" + name + "'");
  return found->gr_gid;
}

mode_t DataUmask(bool with_group) { return with_group ? 027 : 077; }

Result<uint64_t> SecureDataDir(const std::string& dir, std::string_view group) {
  const bool with_group = !group.empty();
  gid_t gid = static_cast<gid_t>(-1);
  if (with_group) {
    auto g = ResolveGroup(group);
    if (!g.ok()) return g.status();
    gid = *g;
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create data dir '" + dir + "': " + ec.message());
  const mode_t dir_mode = with_group ? 02750 : 0700;
  const mode_t file_mode_max = with_group ? 0640 : 0600;
  if (with_group && chown(dir.c_str(), static_cast<uid_t>(-1), gid) != 0)
    return Errno("chgrp of data dir '" + dir + "'");
  if (chmod(dir.c_str(), dir_mode) != 0) return Errno("chmod of data dir '" + dir + "'");
  // What an earlier version (or another umask) left: tighten, never widen.
  uint64_t tightened = 0;
  const uid_t me = geteuid();
  for (auto it = std::filesystem::recursive_directory_iterator(
           dir, std::filesystem::directory_options::none, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    const std::string p = it->path().string();
    if (lstat(p.c_str(), &st) != 0 || st.st_uid != me) continue;  // not ours: leave it
    mode_t want;
    if (S_ISDIR(st.st_mode)) {
      want = dir_mode;
    } else if (S_ISREG(st.st_mode)) {
      want = st.st_mode & 07777 & (file_mode_max | 0100);  // keep the owner's bits
    } else {
      continue;  // sockets, links: their own rules
    }
    if (with_group && st.st_gid != gid && lchown(p.c_str(), static_cast<uid_t>(-1), gid) == 0)
      ++tightened;
    if ((st.st_mode & 07777) != want) {
      if (chmod(p.c_str(), want) == 0) ++tightened;
    }
  }
  return tightened;
}

Status SecureSocket(const std::string& path, bool multi_tenant, std::string_view group) {
  mode_t mode = multi_tenant ? 0666 : 0600;
  if (!group.empty()) {
    auto g = ResolveGroup(group);
    if (!g.ok()) return g.status();
    if (chown(path.c_str(), static_cast<uid_t>(-1), *g) != 0) return Errno("chgrp of socket '" + path + "'");
    if (!multi_tenant) mode = 0660;
  }
  if (chmod(path.c_str(), mode) != 0) return Errno("chmod of socket '" + path + "'");
  return Status::OK();
}

}  // namespace kvtier
