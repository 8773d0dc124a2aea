// Fuzzes kvtierd's configuration: the command line (the input split at NUL
// bytes into argv), the config file (the input as a file's text, read
// through a memfd), and the value parsers behind them (sizes, host:port,
// GPU lists). Every input must parse or answer InvalidArgument; a config
// that parses must validate.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "server/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvtier;
  const std::string in(reinterpret_cast<const char*>(data), size);
  SystemInfo sys;
  sys.mem_available_bytes = 8ull << 30;
  sys.hardware_threads = 4;

  // Command line.
  std::vector<std::string> args = {"kvtierd"};
  size_t start = 0;
  for (size_t i = 0; i <= in.size(); ++i) {
    if (i == in.size() || in[i] == '\0') {
      args.push_back(in.substr(start, i - start));
      start = i + 1;
    }
  }
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  auto c = ParseDaemonConfig(static_cast<int>(argv.size()), argv.data(), sys);
  if (c.ok() && !c->show_help && !c->show_version && !c->Validate().ok()) __builtin_trap();

  // Config file.
  int fd = memfd_create("kvtierd.conf", MFD_CLOEXEC);
  if (fd >= 0) {
    (void)!write(fd, in.data(), in.size());
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const char* fargv[] = {"kvtierd", "--config", path.c_str()};
    auto f = ParseDaemonConfig(3, fargv, sys);
    if (f.ok() && !f->Validate().ok()) __builtin_trap();
    close(fd);
  }

  // Value parsers.
  (void)ParseSize(in);
  (void)ParseHostPort(in);
  (void)ParseGpuList(in);
  auto s = ParseSize(in);
  if (s.ok()) {
    auto back = ParseSize(FormatSize(*s));
    (void)back;  // FormatSize rounds to 2 decimals: not always exact
  }
  return 0;
}
