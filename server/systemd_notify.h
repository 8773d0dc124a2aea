// SystemdNotifier: kvtierd's side of systemd's Type=notify protocol
// (sd_notify(3), libsystemd): READY=1 once the daemon serves, STATUS= lines,
// STOPPING=1 when it drains, and the watchdog: with WatchdogSec= set in the
// unit, a thread of its own sends WATCHDOG=1 every half interval, but only
// while `alive` answers OK, so a daemon whose cache is wedged (a tier mutex
// held for ever, so Stats() never returns) stops petting and systemd
// restarts it.
//
// Outside systemd (no NOTIFY_SOCKET) every call is a no-op, as it is in a
// build without libsystemd. Thread safety: Ready/SetStatus/Stopping may be
// called from any thread; the destructor joins the watchdog thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "tiers/status.h"

namespace kvtier {

class SystemdNotifier {
 public:
  explicit SystemdNotifier(std::function<Status()> alive);
  ~SystemdNotifier();
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;

  // READY=1 and STATUS=`status`; starts the watchdog thread if the unit
  // asked for one (WATCHDOG_USEC for this process).
  void Ready(const std::string& status);
  void SetStatus(const std::string& status);
  // STOPPING=1 and STATUS=`status`. The watchdog goes on until destruction:
  // a drain that hangs past WatchdogSec is killed, as it should be.
  void Stopping(const std::string& status);

  // Whether this build talks to systemd at all (linked with libsystemd).
  static bool Supported();

 private:
  void WatchdogMain(uint64_t interval_us);

  std::function<Status()> alive_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread watchdog_;
};

}  // namespace kvtier
