// DaemonFixture: starts a real kvtierd on a temporary socket and data dir,
// waits until it serves, and stops it (SIGTERM) at the end of the test.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "engine_adapter/client.h"

namespace kvtier::testing {

inline int FreeTcpPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

class Daemon {
 public:
  // Extra flags are appended to the defaults below. With `reuse_dir`, the
  // daemon starts over an existing directory (a restart); the directory is
  // then left for its first owner to remove.
  explicit Daemon(std::vector<std::string> extra = {}, const std::string& reuse_dir = "") {
    if (reuse_dir.empty()) {
      char tmpl[] = "/tmp/kvtierd-test-XXXXXX";
      dir_ = mkdtemp(tmpl);
      owns_dir_ = true;
    } else {
      dir_ = reuse_dir;
    }
    socket_ = dir_ + "/kvtier.sock";
    admin_port_ = FreeTcpPort();
    std::vector<std::string> args = {KVTIERD_PATH,
                                     "--socket", socket_,
                                     "--data-dir", dir_ + "/data",
                                     "--host-capacity", "64M",
                                     "--host-region", "4M",
                                     "--admin", "127.0.0.1:" + std::to_string(admin_port_),
                                     "--log-level", "warn",
                                     "--rpc-threads", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    // Wait until it accepts RPCs.
    for (int i = 0; i < 200; ++i) {
      auto c = Client::Connect(socket_);
      if (c.ok()) return;
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "kvtierd exited during start-up";
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "kvtierd did not start serving within 10 s";
  }

  ~Daemon() {
    Stop();
    std::error_code ec;
    if (owns_dir_) std::filesystem::remove_all(dir_, ec);
  }

  // SIGKILL: no shutdown at all.
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    exit_status_ = 128 + SIGKILL;
  }

  // SIGTERM and wait; returns the exit status.
  int Stop() {
    if (pid_ <= 0) return exit_status_;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_status_;
  }

  bool running() const { return pid_ > 0; }
  // Sends `sig`; Exited() then says whether the process has ended since.
  void Signal(int sig) const {
    if (pid_ > 0) kill(pid_, sig);
  }
  bool Exited() {
    int status = 0;
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    return pid_ <= 0;
  }
  const std::string& socket() const { return socket_; }
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }
  int admin_port() const { return admin_port_; }

 private:
  std::string dir_, socket_;
  int admin_port_ = 0;
  pid_t pid_ = -1;
  int exit_status_ = -1;
  bool owns_dir_ = false;
};

inline NamespaceSpec DemoSpec() {
  NamespaceSpec s;
  s.model_id = "test/llama-mini";
  s.layout = KvLayout{4, 2, 64, 16, DType::kBF16, 2};  // 32 KiB blocks
  return s;
}

inline void FillFromKey(const BlockKey& k, uint8_t* p, size_t n) {
  uint64_t x = k.lo ^ (k.hi * 0x9E3779B97F4A7C15ull) ^ 1;
  for (size_t i = 0; i < n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(p + i, &x, std::min<size_t>(8, n - i));
  }
}

}  // namespace kvtier::testing
