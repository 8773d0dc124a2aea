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
//    allocates, gives the memory of a large message back once it is read, and
//    bounds unsent output (writers wait above max_buffered_output).
//
// The wire format is Cap'n Proto's standard stream framing, so either side
// interoperates with the stock transport.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/async-unix.h>

#include <cstdint>
#include <deque>
#include <vector>

namespace kvtier {

class SocketMessageStream final : public capnp::MessageStream {
 public:
  struct Options {
    uint64_t max_message_bytes = 64ull << 20;   // larger incoming frames are refused
    uint64_t max_buffered_output = 4ull << 20;  // writers wait above this much unsent
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

 private:
  struct OutChunk {
    std::vector<uint8_t> bytes;
    size_t sent = 0;
    std::vector<kj::AutoCloseFd> fds;  // duplicates, sent with the first byte
    bool sealed = false;               // holds one message with fds: nothing is appended
  };
  struct PendingFds {
    uint64_t end;  // stream offset just past the recvmsg that carried them
    std::vector<kj::AutoCloseFd> fds;
  };
  struct Waiter {
    uint64_t threshold;  // resolves once unsent bytes are at most this
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };

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
  std::vector<uint8_t> in_;
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

  // Last: destroyed first, before the state they use.
  kj::Promise<void> flush_task_ = nullptr;
  kj::Promise<void> watch_ = nullptr;
};

}  // namespace kvtier
