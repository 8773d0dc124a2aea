#include "bench/daemon_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "engine_adapter/client.h"

namespace kvtier::bench {

Result<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(const std::string& binary,
                                                            const std::vector<std::string>& flags) {
  if (access(binary.c_str(), X_OK) != 0)
    return Status::NotFound("kvtierd binary '" + binary + "' not found (use --kvtierd PATH)");
  std::unique_ptr<DaemonProcess> d(new DaemonProcess());
  std::string tmpl = (std::filesystem::temp_directory_path() / "kvtier-bench-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) return Status::IOError("mkdtemp failed");
  d->dir_ = tmpl;
  d->socket_ = d->dir_ + "/kvtier.sock";
  d->args_ = {binary, "--socket", d->socket_, "--data-dir", d->dir_ + "/data"};
  d->args_.insert(d->args_.end(), flags.begin(), flags.end());
  KVTIER_RETURN_IF_ERROR(d->Launch());
  return d;
}

Status DaemonProcess::Launch() {
  pid_ = fork();
  if (pid_ == 0) {
    std::vector<char*> argv;
    for (auto& a : args_) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  // Poll from a separate thread so that this thread keeps no event loop.
  for (int i = 0; i < 600; ++i) {
    bool up = false;
    std::thread([&] {
      auto c = Client::Connect(socket_);
      up = c.ok() && (*c)->Ping().ok();
    }).join();
    if (up) return Status::OK();
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Status::Unavailable("kvtierd exited during start-up");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::Unavailable("kvtierd did not start within 30 s");
}

Status DaemonProcess::Restart() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  return Launch();
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string DaemonProcess::FindBinary(const char* argv0) {
  std::error_code ec;
  auto self = std::filesystem::canonical("/proc/self/exe", ec);
  std::filesystem::path dir = ec ? std::filesystem::path(argv0).parent_path() : self.parent_path();
  for (auto cand : {dir / "kvtierd", dir / ".." / "server" / "kvtierd"})
    if (access(cand.c_str(), X_OK) == 0) return cand.lexically_normal().string();
  return "kvtierd";
}

}  // namespace kvtier::bench
