// kvtierd under systemd's notify protocol (server/systemd_notify.cc), with a
// test socket standing in for systemd: READY=1 once it serves, WATCHDOG=1
// at half the WATCHDOG_USEC interval, STOPPING=1 on SIGTERM.
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "server/systemd_notify.h"
#include "tests/server/daemon_fixture.h"

namespace kvtier {
namespace {

using testing::Daemon;

// A datagram socket as systemd's NOTIFY_SOCKET.
class NotifySocket {
 public:
  NotifySocket() {
    char tmpl[] = "/tmp/kvtier-notify-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/notify";
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path_.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    timeval tv{0, 200 * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~NotifySocket() {
    ::close(fd_);
    std::filesystem::remove_all(dir_);
  }
  const std::string& path() const { return path_; }
  // Messages received until `until` (each one datagram).
  std::vector<std::string> Receive(std::chrono::steady_clock::time_point until) {
    std::vector<std::string> out;
    char buf[4096];
    while (std::chrono::steady_clock::now() < until) {
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n > 0) out.emplace_back(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  std::string dir_, path_;
  int fd_ = -1;
};

size_t Count(const std::vector<std::string>& msgs, const std::string& what) {
  size_t n = 0;
  for (const auto& m : msgs) n += m.find(what) != std::string::npos;
  return n;
}

TEST(DaemonSystemdTest, ReadyWatchdogAndStopping) {
  if (!SystemdNotifier::Supported()) GTEST_SKIP() << "built without libsystemd";
  NotifySocket ns;
  ::setenv("NOTIFY_SOCKET", ns.path().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "200000", 1);  // 200 ms: petted every 100 ms
  Daemon d;
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ASSERT_TRUE(d.running());
  const auto msgs = ns.Receive(std::chrono::steady_clock::now() + std::chrono::milliseconds(800));
  ASSERT_FALSE(msgs.empty()) << "no message from kvtierd";
  EXPECT_NE(msgs.front().find("READY=1"), std::string::npos) << msgs.front();
  EXPECT_NE(msgs.front().find("STATUS=serving on " + d.socket()), std::string::npos) << msgs.front();
  EXPECT_GE(Count(msgs, "WATCHDOG=1"), 4u);  // ~7 in 800 ms at 100 ms
  d.Signal(SIGTERM);
  const auto after = ns.Receive(std::chrono::steady_clock::now() + std::chrono::milliseconds(500));
  EXPECT_GE(Count(after, "STOPPING=1"), 1u);
  EXPECT_EQ(d.Stop(), 0);
}

}  // namespace
}  // namespace kvtier
