// SocketMessageStream: the Cap'n Proto message transport of kvtierd and its
// clients, over a connected Unix stream socket.
//
// Cap'n Proto's stock transport (an AsyncCapabilityStream) costs several
// system calls and, worse, spurious thread wake-ups per message: it reads
// each message in two or three reads, writes each in its own sendmsg, and
// keeps the socket registered in epoll for writability, so every time the
// peer drains a message the sender's thread is woken for nothing. An acquire
// is four messages (call, return, finish, release), so on a small host these
// costs, not the cache, bounded the daemon's request rate.
//
// This transport:
//  - reads buffered: one recvmsg takes every message that has arrived;
//  - writes coalesced: the messages an event-loop pass produces leave in one
//    sendmsg when the loop is about to sleep (kj::evalLast);
//  - watches the socket in epoll for input only; writability is watched (on a
//    duplicate descriptor) only while the socket's send buffer is full;
//  - passes file descriptors (SCM_RIGHTS) with the message they were written
//    with: a message with fds leaves in its own sendmsg, and on the receiving
//    side the fds belong to the message holding the last byte of the recvmsg
//    that carried them (Linux ends a stream read after a segment with fds);
//  - bounds a message's size (reader options and max_message_bytes) before it
//    allocates, and then allocates its body as it arrives (the buffer at most
//    doubles per read, so a header alone costs nothing), reports every change
//    of the input buffer's size to an observer that may refuse it, and gives
//    the memory of a large message back once it is read;
//  - bounds unsent output (writers wait above max_buffered_output bytes or
//    max_buffered_fd_messages messages carrying fds), and with
//    pause_reading_above stops handing incoming messages to the reader while
//    that much output is unsent: a peer that does not read its answers stops
//    being read (backpressure) instead of making the process buffer them;
//  - keeps at most max_pending_fds received fds waiting for their message;
//    more are closed on arrival (and reported), so fds sent behind a frame
//    that never completes cannot pile up;
//  - can be aborted from outside (timeouts, limits): reads and writes fail
//    and the socket is shut down.
//
// The wire format is Cap'n Proto's standard stream framing, so either side
// interoperates with the stock transport.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/async-unix.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace kvtier {

// What a stream reports to its owner, on the stream's thread. Every method
// may be left as is.
class StreamObserver {
 public:
  virtual ~StreamObserver() = default;
  // The input buffer's capacity changes from `old_bytes` to `new_bytes`;
  // false refuses a growth (the read fails with a "memory" error).
  virtual bool OnInputBuffer(size_t /*old_bytes*/, size_t /*new_bytes*/) { return true; }
  // A whole incoming message, before the reader gets it. Throwing fails the read.
  virtual void OnMessageIn(kj::ArrayPtr<const capnp::word> /*message*/) {}
  // An outgoing message, as it is queued.
  virtual void OnMessageOut(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> /*segments*/) {}
  // `count` received fds were closed on arrival (over max_pending_fds).
  virtual void OnFdsDropped(size_t /*count*/) {}
  // A frame header announced more than max_message_bytes, or a bad segment table.
  virtual void OnBadFrame(bool /*too_large*/) {}
};

class SocketMessageStream final : public capnp::MessageStream {
 public:
  struct Options {
    uint64_t max_message_bytes = 64ull << 20;   // larger incoming frames are refused
    uint64_t max_buffered_output = 4ull << 20;  // writers wait above this much unsent
    uint32_t max_buffered_fd_messages = 16;     // ... or above this many unsent messages with fds
    uint32_t max_pending_fds = 16;              // received fds waiting for their message
    // Incoming messages wait while more than this much output is unsent (or
    // the fd messages are over their bound); 0 never pauses.
    uint64_t pause_reading_above = 0;
    StreamObserver* observer = nullptr;  // not owned; outlives the stream
  };

  // Takes ownership of `fd`, a connected Unix stream socket (made
  // non-blocking here). Lives on the thread whose event loop owns `port`.
  SocketMessageStream(kj::UnixEventPort& port, int fd, Options options);
  SocketMessageStream(kj::UnixEventPort& port, int fd) : SocketMessageStream(port, fd, Options()) {}
  ~SocketMessageStream() noexcept(false);
  KJ_DISALLOW_COPY(SocketMessageStream);

  using capnp::MessageStream::tryReadMessage;
  using capnp::MessageStream::writeMessage;
  using capnp::MessageStream::writeMessages;

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options = capnp::ReaderOptions(),
      kj::ArrayPtr<capnp::word> scratchSpace = nullptr) override;
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override;
  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override;
  kj::Maybe<int> getSendBufferSize() override;
  kj::Promise<void> end() override;

  // System calls made and input buffer size, for tests and diagnostics.
  uint64_t recv_calls() const { return recv_calls_; }
  uint64_t send_calls() const { return send_calls_; }
  size_t input_buffer_bytes() const { return in_.size(); }

  using Clock = std::chrono::steady_clock;
  // Whole messages handed to the reader so far.
  uint64_t messages_in() const { return messages_in_; }
  // When the first byte of a message not yet whole arrived (nullopt: none is partial).
  std::optional<Clock::time_point> partial_since() const {
    if (in_end_ == in_begin_) return std::nullopt;
    return partial_since_;
  }
  // Unsent output, and since when it has made no progress (nullopt: none unsent).
  uint64_t unsent_bytes() const { return out_bytes_; }
  std::optional<Clock::time_point> unsent_since() const {
    if (out_.empty()) return std::nullopt;
    return send_progress_;
  }
  // The last time bytes came in or went out.
  Clock::time_point last_activity() const { return std::max(last_recv_, send_progress_); }
  // Whether incoming messages wait for output to drain now.
  bool reading_paused() const { return Backlogged(); }

  // Fails every read and write from now on with `reason` (waiting ones too)
  // and shuts the socket down, so the peer sees the end. Idempotent.
  void Abort(kj::Exception reason);

 private:
  struct OutChunk {
    std::vector<uint8_t> bytes;
    size_t sent = 0;
    std::vector<kj::AutoCloseFd> fds;  // duplicates, sent with the first byte
    bool sealed = false;               // holds one message with fds: nothing is appended
  };
  // The input buffer: malloc'd while small, its own mapping above 1 MiB, so
  // that a large message's memory is given back to the system when it is
  // freed (not kept by the allocator) and grows without copying (mremap).
  class Buffer {
   public:
    Buffer() = default;
    ~Buffer();
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    uint8_t* data() { return p_; }
    const uint8_t* data() const { return p_; }
    size_t size() const { return n_; }
    // Keeps the first min(n, size()) bytes; the rest are unspecified.
    void resize(size_t n);

   private:
    uint8_t* p_ = nullptr;
    size_t n_ = 0;
    bool mapped_ = false;
  };
  struct PendingFds {
    uint64_t end;  // stream offset just past the recvmsg that carried them
    std::vector<kj::AutoCloseFd> fds;
  };
  struct Waiter {
    uint64_t threshold;      // resolves once unsent bytes are at most this
    uint32_t fd_threshold;   // ... and unsent messages with fds at most this
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };
  bool Backlogged() const {
    return options_.pause_reading_above > 0 &&
           (out_bytes_ > options_.pause_reading_above ||
            out_fd_messages_ > options_.max_buffered_fd_messages);
  }

  kj::Promise<void> Watch();
  // Reads what the socket holds into the input buffer, with room for at
  // least `need` buffered bytes.
  void Fill(uint64_t need);
  // 0 when a whole message is buffered (its length in *total); otherwise the
  // number of buffered bytes known to be needed.
  uint64_t Frame(const capnp::ReaderOptions& options, uint64_t* total) const;
  capnp::MessageReaderAndFds TakeMessage(uint64_t total, kj::ArrayPtr<kj::AutoCloseFd> fdSpace,
                                         const capnp::ReaderOptions& options);

  void Append(kj::ArrayPtr<const int> fds, kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments);
  kj::Promise<void> AfterAppend();
  kj::Promise<void> FlushLoop();
  bool SendSome();  // false when the socket's buffer is full
  void WakeWaiters();
  void FailWriters(const kj::Exception& e);

  kj::UnixEventPort& port_;
  kj::AutoCloseFd fd_;  // declared before the observers: closed after they leave epoll
  Options options_;
  kj::UnixEventPort::FdObserver observer_;  // input only

  // Input.
  Buffer in_;
  size_t in_begin_ = 0, in_end_ = 0;
  uint64_t consumed_ = 0;  // stream offset of in_[in_begin_]
  std::deque<PendingFds> pending_fds_;
  bool maybe_readable_ = true;
  bool eof_ = false;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> read_waiter_;

  // Output.
  std::deque<OutChunk> out_;
  uint64_t out_bytes_ = 0;
  bool flush_active_ = false;
  kj::Maybe<kj::Exception> write_error_;
  std::vector<Waiter> waiters_;
  kj::AutoCloseFd write_fd_;  // duplicate watched for writability while the buffer is full
  kj::Own<kj::UnixEventPort::FdObserver> write_observer_;

  uint64_t recv_calls_ = 0, send_calls_ = 0;
  uint64_t messages_in_ = 0;
  uint32_t out_fd_messages_ = 0;   // unsent chunks holding fds
  size_t pending_fd_count_ = 0;    // fds in pending_fds_
  Clock::time_point partial_since_{}, last_recv_{}, send_progress_{};
  kj::Maybe<kj::Exception> aborted_;

  // Last: destroyed first, before the state they use.
  kj::Promise<void> flush_task_ = nullptr;
  kj::Promise<void> watch_ = nullptr;
};

}  // namespace kvtier
