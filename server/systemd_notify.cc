#include "server/systemd_notify.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>

#if KVTIER_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace kvtier {

namespace {

void Notify(const std::string& text) {
#if KVTIER_HAVE_SYSTEMD
  const int r = sd_notify(0, text.c_str());
  if (r < 0) spdlog::warn("sd_notify failed: {}", std::strerror(-r));
#else
  (void)text;
#endif
}

}  // namespace

SystemdNotifier::SystemdNotifier(std::function<Status()> alive) : alive_(std::move(alive)) {}

SystemdNotifier::~SystemdNotifier() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

bool SystemdNotifier::Supported() { return KVTIER_HAVE_SYSTEMD != 0; }

void SystemdNotifier::Ready(const std::string& status) {
  Notify("READY=1\nSTATUS=" + status);
#if KVTIER_HAVE_SYSTEMD
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0 && !watchdog_.joinable()) {
    spdlog::info("systemd watchdog: every {} ms", usec / 2000);
    watchdog_ = std::thread([this, usec] { WatchdogMain(usec / 2); });
  }
#endif
}

void SystemdNotifier::SetStatus(const std::string& status) { Notify("STATUS=" + status); }

void SystemdNotifier::Stopping(const std::string& status) { Notify("STOPPING=1\nSTATUS=" + status); }

void SystemdNotifier::WatchdogMain(uint64_t interval_us) {
  bool warned = false;
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    l.unlock();
    const Status st = alive_ ? alive_() : Status::OK();
    if (st.ok()) {
      Notify("WATCHDOG=1");
      warned = false;
    } else if (!warned) {
      spdlog::error("not petting the systemd watchdog: {}", st.ToString());
      warned = true;
    }
    l.lock();
    cv_.wait_for(l, std::chrono::microseconds(interval_us), [this] { return stop_; });
  }
}

}  // namespace kvtier
