// The daemon's files and who may read them (docs/security.md, "Files").
//
// The data dir holds the namespace file (tenant salts, model ids), the NVMe
// tier's index (every block key) and maybe the NVMe file and the socket:
// nothing any other local user should read. kvtierd sets its umask first
// (077; 027 with a data group), then makes the data dir 0700 (02750 with a
// data group: the group may read, and new files inherit the group), and
// takes the group and other bits the policy does not allow off every file
// and directory already under it (files 0600/0640, directories 0700/02750),
// so a data dir written by an older version is tightened at start.
//
// Thread safety: call before any other thread starts (umask is per process).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "tiers/status.h"

namespace kvtier {

// A group name or number → its gid. InvalidArgument for an unknown group.
Result<gid_t> ResolveGroup(std::string_view group);

// The umask of the policy: 077, or 027 with a data group.
mode_t DataUmask(bool with_group);

// Creates `dir` if needed and applies the policy above (`group` empty: no
// data group). Returns how many existing paths were tightened. IOError
// when the dir cannot be created, or chmod/chown fails on it.
Result<uint64_t> SecureDataDir(const std::string& dir, std::string_view group);

// The socket's mode: 0666 with tenants (the daemon tells them apart by
// their credentials and refuses the others), else 0600, or 0660 with a
// data group (chgrp'ed to it). IOError when chmod/chown fails.
Status SecureSocket(const std::string& path, bool multi_tenant, std::string_view group);

}  // namespace kvtier
