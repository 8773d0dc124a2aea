#include "server/socket_message_stream.h"

#include <capnp/serialize.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

namespace kvtier {

namespace {

constexpr size_t kReadChunk = 64 * 1024;  // free space offered to each recvmsg
constexpr size_t kShrinkAbove = 1 << 20;  // an emptied input buffer larger than this shrinks
constexpr size_t kMaxFdsPerRead = 16;     // more in one read are closed by the kernel
constexpr uint32_t kMaxSegments = 512;    // Cap'n Proto's own limit

kj::Exception SocketError(const char* what, int err) {
  auto type = (err == EPIPE || err == ECONNRESET || err == ENOTCONN) ? kj::Exception::Type::DISCONNECTED
                                                                      : kj::Exception::Type::FAILED;
  return kj::Exception(type, __FILE__, __LINE__, kj::str(what, ": ", strerror(err)));
}

int NonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
    kj::throwFatalException(SocketError("making the socket non-blocking", errno));
  return fd;
}

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;  // Cap'n Proto framing is little-endian, as are the hosts kvtier runs on
}

constexpr size_t kMapAbove = 1 << 20;  // buffers larger than this are mappings of their own

// The steady clock at the resolution of a scheduler tick (a few ms), for
// the timestamps kept per read and send: a fraction of the cost of a
// precise reading, and as good for timeouts counted in seconds. Same epoch
// as std::chrono::steady_clock (CLOCK_MONOTONIC).
SocketMessageStream::Clock::time_point CoarseNow() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return SocketMessageStream::Clock::time_point(
      std::chrono::duration_cast<SocketMessageStream::Clock::duration>(
          std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

}  // namespace

SocketMessageStream::Buffer::~Buffer() {
  if (mapped_) {
    munmap(p_, n_);
  } else {
    std::free(p_);
  }
}

void SocketMessageStream::Buffer::resize(size_t n) {
  if (n == n_) return;
  void* p;
  if (n > kMapAbove) {
    n = (n + 4095) & ~size_t{4095};
    if (mapped_) {
      p = mremap(p_, n_, n, MREMAP_MAYMOVE);
    } else {
      p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p != MAP_FAILED) {
        std::memcpy(p, p_, std::min(n, n_));
        std::free(p_);
      }
    }
    if (p == MAP_FAILED) throw std::bad_alloc();
    mapped_ = true;
  } else if (mapped_) {
    p = std::malloc(n);
    if (p == nullptr) throw std::bad_alloc();
    std::memcpy(p, p_, std::min(n, n_));
    munmap(p_, n_);
    mapped_ = false;
  } else {
    p = std::realloc(p_, n);
    if (p == nullptr) throw std::bad_alloc();
  }
  p_ = static_cast<uint8_t*>(p);
  n_ = n;
}

SocketMessageStream::SocketMessageStream(kj::UnixEventPort& port, int fd, Options options)
    : port_(port),
      fd_(fd),
      options_(options),
      observer_(port, NonBlocking(fd), kj::UnixEventPort::FdObserver::OBSERVE_READ) {
  in_.resize(kReadChunk);
  if (options_.observer != nullptr) options_.observer->OnInputBuffer(0, in_.size());
  last_recv_ = send_progress_ = partial_since_ = CoarseNow();
  watch_ = Watch().eagerlyEvaluate(nullptr);
}

SocketMessageStream::~SocketMessageStream() noexcept(false) {
  flush_task_ = nullptr;
  watch_ = nullptr;
  if (options_.observer != nullptr) options_.observer->OnInputBuffer(in_.size(), 0);
}

void SocketMessageStream::Abort(kj::Exception reason) {
  if (aborted_ != nullptr) return;
  aborted_ = kj::cp(reason);
  if (write_error_ == nullptr) write_error_ = kj::cp(reason);
  KJ_IF_MAYBE(w, read_waiter_) {
    (*w)->reject(kj::cp(reason));
    read_waiter_ = nullptr;
  }
  FailWriters(reason);
  shutdown(fd_, SHUT_RDWR);
}

kj::Promise<void> SocketMessageStream::Watch() {
  // Kept armed for the stream's life, so that no readiness edge is lost
  // between a read that drained the socket and the next tryReadMessage.
  return observer_.whenBecomesReadable().then([this]() {
    maybe_readable_ = true;
    KJ_IF_MAYBE(w, read_waiter_) {
      (*w)->fulfill();
      read_waiter_ = nullptr;
    }
    return Watch();
  });
}

// ---- input ------------------------------------------------------------------

uint64_t SocketMessageStream::Frame(const capnp::ReaderOptions& options, uint64_t* total) const {
  const uint64_t avail = in_end_ - in_begin_;
  const uint8_t* p = in_.data() + in_begin_;
  if (avail < 8) return 8;
  uint32_t segments = LoadU32(p) + 1;
  if (segments == 0 || segments > kMaxSegments) {
    if (options_.observer != nullptr) options_.observer->OnBadFrame(false);
    kj::throwFatalException(KJ_EXCEPTION(FAILED, "malformed message: bad segment count",
                                         LoadU32(p)));
  }
  uint64_t table = (4ull * (1 + segments) + 7) & ~7ull;
  if (avail < table) return table;
  uint64_t words = 0;
  for (uint32_t i = 0; i < segments; ++i) words += LoadU32(p + 4 + 4ull * i);
  if (words > options.traversalLimitInWords || table + words * 8 > options_.max_message_bytes) {
    if (options_.observer != nullptr) options_.observer->OnBadFrame(true);
    kj::throwFatalException(KJ_EXCEPTION(
        FAILED, "incoming message is larger than this connection accepts", words * 8,
        options_.max_message_bytes));
  }
  *total = table + words * 8;
  return avail >= *total ? 0 : *total;
}

void SocketMessageStream::Fill(uint64_t need) {
  // Make room: move what is buffered to the front, grow for a large message
  // as its bytes arrive: at most doubling per read, never past the message,
  // so a frame header alone allocates nothing and memory follows the bytes
  // the peer really sent.
  const size_t held = in_end_ - in_begin_;
  if (in_begin_ > 0 && (in_.size() - in_end_ < kReadChunk || held + kReadChunk > in_.size() - in_begin_)) {
    std::memmove(in_.data(), in_.data() + in_begin_, held);
    in_begin_ = 0;
    in_end_ = held;
  }
  size_t want = held + kReadChunk;
  if (need > want) want = std::min<uint64_t>(need, std::max<uint64_t>(want, 2 * in_.size()));
  if (want > kMapAbove) want = (want + 4095) & ~size_t{4095};  // as Buffer::resize rounds
  if (in_.size() < want) {
    if (options_.observer != nullptr && !options_.observer->OnInputBuffer(in_.size(), want))
      kj::throwFatalException(KJ_EXCEPTION(
          OVERLOADED, "ResourceExhausted: a message would take this connection past its memory "
                      "limit (--max-connection-memory / --max-uid-memory)",
          want));
    in_.resize(want);
  }

  const size_t room = in_.size() - in_end_;
  iovec iov{in_.data() + in_end_, room};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerRead)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    ++recv_calls_;
    n = recvmsg(fd_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      maybe_readable_ = false;
      return;
    }
    if (errno == ECONNRESET) {  // the peer is gone: end of stream
      eof_ = true;
      return;
    }
    kj::throwFatalException(SocketError("recvmsg", errno));
  }
  if (n == 0) {
    eof_ = true;
    return;
  }
  last_recv_ = CoarseNow();
  if (in_end_ == in_begin_) partial_since_ = last_recv_;
  in_end_ += static_cast<size_t>(n);
  bool got_fds = false;
  size_t dropped = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    PendingFds p;
    p.end = consumed_ + (in_end_ - in_begin_);
    for (size_t i = 0; i < count; ++i) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (pending_fd_count_ + p.fds.size() < options_.max_pending_fds) {
        p.fds.emplace_back(f);
      } else {
        close(f);  // over the bound: never held
        ++dropped;
      }
    }
    pending_fd_count_ += p.fds.size();
    if (!p.fds.empty()) pending_fds_.push_back(std::move(p));
    got_fds = true;
  }
  if (dropped > 0 && options_.observer != nullptr) options_.observer->OnFdsDropped(dropped);
  // A read that filled the room, or stopped at a segment with fds, may have
  // left data behind; a shorter one drained the socket, unless the peer has
  // hung up: the readiness event that told so is spent, and only another
  // recvmsg (returning 0) reports the end.
  bool at_end = true;
  KJ_IF_MAYBE(e, observer_.atEndHint()) { at_end = *e; }
  if (static_cast<size_t>(n) < room && !got_fds && !at_end) maybe_readable_ = false;
}

capnp::MessageReaderAndFds SocketMessageStream::TakeMessage(uint64_t total,
                                                            kj::ArrayPtr<kj::AutoCloseFd> fdSpace,
                                                            const capnp::ReaderOptions& options) {
  auto words = kj::heapArray<capnp::word>(total / sizeof(capnp::word));
  std::memcpy(words.begin(), in_.data() + in_begin_, total);
  const uint64_t start = consumed_, end = consumed_ + total;
  in_begin_ += total;
  consumed_ = end;
  ++messages_in_;
  if (in_begin_ == in_end_) {
    in_begin_ = in_end_ = 0;
    // A large message grew the buffer: give the memory back once it is read.
    if (in_.size() > kShrinkAbove) {
      if (options_.observer != nullptr) options_.observer->OnInputBuffer(in_.size(), kReadChunk);
      in_.resize(kReadChunk);
    }
  } else {
    partial_since_ = CoarseNow();  // the next message has begun
  }

  size_t nfds = 0;
  while (!pending_fds_.empty() && pending_fds_.front().end <= end) {
    PendingFds& p = pending_fds_.front();
    if (p.end > start) {  // this message holds the last byte of the read that carried them
      for (auto& f : p.fds) {
        if (nfds < fdSpace.size()) fdSpace[nfds++] = kj::mv(f);  // the rest close here
      }
    }
    pending_fd_count_ -= p.fds.size();
    pending_fds_.pop_front();
  }
  if (options_.observer != nullptr) options_.observer->OnMessageIn(words.asPtr());
  auto reader = kj::heap<capnp::FlatArrayMessageReader>(words.asPtr(), options).attach(kj::mv(words));
  return capnp::MessageReaderAndFds{kj::mv(reader), fdSpace.slice(0, nfds)};
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> SocketMessageStream::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
    kj::ArrayPtr<capnp::word> /*scratchSpace*/) {
  KJ_IF_MAYBE(e, aborted_) { return kj::cp(*e); }
  if (Backlogged()) {
    // Backpressure: the peer has not read its answers; read no more
    // questions until they drain (or the stream is aborted).
    auto paf = kj::newPromiseAndFulfiller<void>();
    waiters_.push_back({options_.pause_reading_above, options_.max_buffered_fd_messages,
                        kj::mv(paf.fulfiller)});
    return paf.promise.then([this, fdSpace, options]() { return tryReadMessage(fdSpace, options); });
  }
  for (;;) {
    uint64_t total = 0;
    uint64_t need = Frame(options, &total);
    if (need == 0) return kj::Maybe<capnp::MessageReaderAndFds>(TakeMessage(total, fdSpace, options));
    if (eof_) {
      if (in_end_ == in_begin_) return kj::Maybe<capnp::MessageReaderAndFds>(nullptr);
      return KJ_EXCEPTION(DISCONNECTED, "the peer closed the connection in the middle of a message");
    }
    if (!maybe_readable_) break;
    Fill(need);
  }
  auto paf = kj::newPromiseAndFulfiller<void>();
  read_waiter_ = kj::mv(paf.fulfiller);
  return paf.promise.then([this, fdSpace, options]() { return tryReadMessage(fdSpace, options); });
}

// ---- output -----------------------------------------------------------------

void SocketMessageStream::Append(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  KJ_REQUIRE(segments.size() > 0 && segments.size() <= kMaxSegments, "bad segment count",
             segments.size());
  if (options_.observer != nullptr) options_.observer->OnMessageOut(segments);
  if (out_.empty()) send_progress_ = CoarseNow();  // the unsent clock starts
  if (fds.size() > 0 || out_.empty() || out_.back().sealed) out_.emplace_back();
  OutChunk& c = out_.back();
  if (fds.size() > 0) ++out_fd_messages_;
  for (int f : fds) {
    int d = fcntl(f, F_DUPFD_CLOEXEC, 0);
    if (d < 0) kj::throwFatalException(SocketError("duplicating an fd to send", errno));
    c.fds.emplace_back(d);
  }
  c.sealed = fds.size() > 0;
  const size_t table = (4 * (1 + segments.size()) + 7) & ~size_t{7};
  size_t at = c.bytes.size();
  size_t body = 0;
  for (auto s : segments) body += s.size() * sizeof(capnp::word);
  c.bytes.resize(at + table + body);
  uint8_t* p = c.bytes.data() + at;
  std::memset(p, 0, table);
  uint32_t v = static_cast<uint32_t>(segments.size() - 1);
  std::memcpy(p, &v, 4);
  for (size_t i = 0; i < segments.size(); ++i) {
    v = static_cast<uint32_t>(segments[i].size());
    std::memcpy(p + 4 + 4 * i, &v, 4);
  }
  p += table;
  for (auto s : segments) {
    std::memcpy(p, s.begin(), s.size() * sizeof(capnp::word));
    p += s.size() * sizeof(capnp::word);
  }
  out_bytes_ += table + body;
}

kj::Promise<void> SocketMessageStream::AfterAppend() {
  if (!flush_active_) {
    flush_active_ = true;
    write_observer_ = nullptr;  // no flush is waiting on it
    write_fd_ = nullptr;
    flush_task_ = kj::evalLast([this]() { return FlushLoop(); })
                      .eagerlyEvaluate([this](kj::Exception&& e) {
                        flush_active_ = false;
                        FailWriters(e);
                        write_error_ = kj::mv(e);
                      });
  }
  if (out_bytes_ <= options_.max_buffered_output &&
      out_fd_messages_ <= options_.max_buffered_fd_messages)
    return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  waiters_.push_back({options_.max_buffered_output, options_.max_buffered_fd_messages,
                      kj::mv(paf.fulfiller)});
  return kj::mv(paf.promise);
}

kj::Promise<void> SocketMessageStream::writeMessage(
    kj::ArrayPtr<const int> fds, kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  KJ_IF_MAYBE(e, write_error_) { return kj::cp(*e); }
  Append(fds, segments);
  return AfterAppend();
}

kj::Promise<void> SocketMessageStream::writeMessages(
    kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) {
  KJ_IF_MAYBE(e, write_error_) { return kj::cp(*e); }
  for (auto m : messages) Append(nullptr, m);
  return AfterAppend();
}

bool SocketMessageStream::SendSome() {
  while (!out_.empty()) {
    OutChunk& c = out_.front();
    iovec iov{c.bytes.data() + c.sent, c.bytes.size() - c.sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerRead)];
    if (!c.fds.empty()) {
      KJ_REQUIRE(c.fds.size() <= kMaxFdsPerRead, "too many fds in one message", c.fds.size());
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * c.fds.size());
      cmsghdr* h = CMSG_FIRSTHDR(&msg);
      h->cmsg_level = SOL_SOCKET;
      h->cmsg_type = SCM_RIGHTS;
      h->cmsg_len = CMSG_LEN(sizeof(int) * c.fds.size());
      for (size_t i = 0; i < c.fds.size(); ++i) {
        int f = c.fds[i];
        std::memcpy(CMSG_DATA(h) + i * sizeof(int), &f, sizeof(int));
      }
    }
    ssize_t n;
    do {
      ++send_calls_;
      n = sendmsg(fd_, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      kj::throwFatalException(SocketError("sendmsg", errno));
    }
    if (!c.fds.empty()) --out_fd_messages_;
    c.fds.clear();  // they went with the first byte
    c.sent += static_cast<size_t>(n);
    out_bytes_ -= static_cast<uint64_t>(n);
    if (n > 0) send_progress_ = CoarseNow();
    if (c.sent < c.bytes.size()) return false;  // the buffer filled part way
    out_.pop_front();
  }
  return true;
}

void SocketMessageStream::WakeWaiters() {
  auto it = std::remove_if(waiters_.begin(), waiters_.end(), [&](Waiter& w) {
    if (out_bytes_ > w.threshold || out_fd_messages_ > w.fd_threshold) return false;
    w.fulfiller->fulfill();
    return true;
  });
  waiters_.erase(it, waiters_.end());
}

void SocketMessageStream::FailWriters(const kj::Exception& e) {
  for (auto& w : waiters_) w.fulfiller->reject(kj::cp(e));
  waiters_.clear();
}

kj::Promise<void> SocketMessageStream::FlushLoop() {
  bool drained = SendSome();
  WakeWaiters();
  if (drained) {
    flush_active_ = false;
    return kj::READY_NOW;
  }
  if (write_observer_.get() == nullptr) {
    int d = fcntl(fd_, F_DUPFD_CLOEXEC, 0);
    if (d < 0) kj::throwFatalException(SocketError("duplicating the socket", errno));
    write_fd_ = kj::AutoCloseFd(d);
    write_observer_ = kj::heap<kj::UnixEventPort::FdObserver>(
        port_, d, kj::UnixEventPort::FdObserver::OBSERVE_WRITE);
  }
  return write_observer_->whenBecomesWritable().then([this]() { return FlushLoop(); });
}

kj::Maybe<int> SocketMessageStream::getSendBufferSize() {
  int size = 0;
  socklen_t len = sizeof(size);
  if (getsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &size, &len) != 0) return nullptr;
  return size;
}

kj::Promise<void> SocketMessageStream::end() {
  KJ_IF_MAYBE(e, write_error_) { return kj::cp(*e); }
  kj::Promise<void> drained = kj::READY_NOW;
  if (out_bytes_ > 0) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    waiters_.push_back({0, 0, kj::mv(paf.fulfiller)});
    drained = kj::mv(paf.promise);
  }
  return drained.then([this]() {
    if (shutdown(fd_, SHUT_WR) != 0 && errno != ENOTCONN)
      kj::throwFatalException(SocketError("shutdown", errno));
  });
}

}  // namespace kvtier
