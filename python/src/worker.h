// Worker: the one thread on which a Python Client's RPCs and GPU calls run.
//
// kvtier::Client and everything it returns belong to the thread that
// connected (Cap'n Proto runs one event loop per thread), while Python calls
// a Client from any thread and destroys its objects wherever the last
// reference drops (the garbage collector included). The binding therefore
// gives every Python Client a Worker: Call() runs a function on the worker's
// thread and blocks the caller until it returns (the caller releases the GIL
// first), Post() queues one without waiting (destructors). The C++ client's
// objects are created, used and destroyed on that thread only, so a Python
// Client may be used from several threads; its calls run one at a time, in
// the order they arrive.
//
// Latency: both sides spin briefly before they sleep (the caller for the
// answer, the worker for the next call), so that a call costs a few
// microseconds of hand-off, not two thread wake-ups (tens of microseconds on
// a virtual machine).
//
// Thread safety: Call() and Post() are safe from any thread. Call() from the
// worker thread itself runs the function at once (no deadlock). The worker
// runs every queued function before its thread exits.
//
// fork(): a child process has no worker thread (nor the parent's event
// loop): Call() there raises Unavailable instead of waiting for ever, and
// Post() drops the function (the objects it would destroy belong to the
// parent's connection).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include <sched.h>
#include <unistd.h>

#include "python/src/errors.h"

namespace kvtier::py {

class Worker {
 public:
  Worker() : thread_([this] { Loop(); }) {}
  ~Worker() {
    if (getpid() != pid_) {  // a forked child: the thread is the parent's
      new std::thread(std::move(thread_));  // leaked: joining or destroying it would abort
      return;
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (std::this_thread::get_id() == thread_.get_id()) {
      thread_.detach();  // the last reference dropped on the worker itself
    } else {
      thread_.join();
    }
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  bool OnWorker() const { return std::this_thread::get_id() == thread_.get_id(); }

  // Runs fn() on the worker thread and returns its result.
  // REQUIRES: the caller does not hold the GIL (fn must not need it either).
  template <typename Fn>
  auto Call(Fn&& fn) -> std::invoke_result_t<Fn&> {
    using R = std::invoke_result_t<Fn&>;
    if (OnWorker()) return fn();
    if (getpid() != pid_)
      Raise(Status::Unavailable("this kvtier Client was created in another process (before a fork): "
                                "create a new Client in this process"));
    struct Slot {
      std::atomic<bool> done{false};
      std::mutex mu;
      std::condition_variable cv;
      std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> value;
      std::exception_ptr error;
    } slot;
    Enqueue([&slot, &fn] {
      try {
        if constexpr (std::is_void_v<R>) {
          fn();
          slot.value.emplace(true);
        } else {
          slot.value.emplace(fn());
        }
      } catch (...) {
        slot.error = std::current_exception();
      }
      std::lock_guard<std::mutex> g(slot.mu);
      slot.done.store(true, std::memory_order_release);
      slot.cv.notify_one();
    });
    const auto until = std::chrono::steady_clock::now() + kSpin;
    while (!slot.done.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < until)
      sched_yield();
    {
      std::unique_lock<std::mutex> l(slot.mu);
      slot.cv.wait(l, [&] { return slot.done.load(std::memory_order_acquire); });
    }
    if (slot.error) std::rethrow_exception(slot.error);
    if constexpr (!std::is_void_v<R>) return std::move(*slot.value);
  }

  // Queues fn() and returns at once. fn must not throw.
  void Post(std::function<void()> fn) {
    if (getpid() != pid_) {
      new std::function<void()>(std::move(fn));  // leaked: not ours to run or destroy
      return;
    }
    if (OnWorker()) {
      fn();
      return;
    }
    Enqueue(std::move(fn));
  }

 private:
  static constexpr std::chrono::microseconds kSpin{200};

  void Enqueue(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> g(mu_);
      q_.push_back(std::move(fn));
      pending_.store(true, std::memory_order_release);
    }
    cv_.notify_one();
  }

  void Loop() {
    for (;;) {
      // Spin a little for the next call before sleeping.
      const auto until = std::chrono::steady_clock::now() + kSpin;
      while (!pending_.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < until)
        sched_yield();
      std::deque<std::function<void()>> batch;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || !q_.empty(); });
        if (q_.empty() && stop_) return;
        batch.swap(q_);
        pending_.store(false, std::memory_order_release);
      }
      for (auto& fn : batch) fn();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  std::atomic<bool> pending_{false};
  bool stop_ = false;
  const pid_t pid_ = getpid();
  std::thread thread_;  // last: starts after the members above exist
};

}  // namespace kvtier::py
