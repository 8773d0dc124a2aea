// DaemonProcess: a kvtierd child process on a temporary socket and data dir,
// for benchmarks that measure a live daemon. Stopped with SIGTERM on destruction.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "tiers/status.h"

namespace kvtier::bench {

class DaemonProcess {
 public:
  // Starts `binary` with --socket/--data-dir in a fresh temporary directory
  // plus `flags`, and waits (30 s at most) until it answers a ping.
  static Result<std::unique_ptr<DaemonProcess>> Start(const std::string& binary,
                                                      const std::vector<std::string>& flags);
  ~DaemonProcess();
  // SIGTERM, wait, and start again with the same flags over the same
  // directory (a daemon restart: the host tier is lost, NVMe is recovered).
  Status Restart();
  const std::string& socket() const { return socket_; }
  const std::string& dir() const { return dir_; }

  // The kvtierd next to (or in ../server of) the running executable.
  static std::string FindBinary(const char* argv0);

 private:
  DaemonProcess() = default;
  Status Launch();
  pid_t pid_ = -1;
  std::string dir_, socket_;
  std::vector<std::string> args_;
};

}  // namespace kvtier::bench
