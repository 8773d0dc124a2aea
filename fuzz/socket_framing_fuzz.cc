// Fuzzes SocketMessageStream's reading side (server/socket_message_stream.h)
// as kvtierd runs it: the input's bytes arrive over a real Unix socket pair
// in pieces whose sizes the input also chooses, with fds attached to some
// pieces; every whole message is read back and parsed as an RPC message.
// Nothing may crash, leak or read out of bounds; malformed or oversized
// frames must fail the read cleanly. The RPC server's fast look at each
// message (server/rpc_peek.h) must agree with a real reader whenever it
// answers.
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <kj/async-unix.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "server/rpc_peek.h"
#include "server/socket_message_stream.h"

namespace {

struct Counting : kvtier::StreamObserver {
  int64_t held = 0;
  bool OnInputBuffer(size_t old_bytes, size_t new_bytes) override {
    held += static_cast<int64_t>(new_bytes) - static_cast<int64_t>(old_bytes);
    return held <= (4 << 20);  // a budget, as the daemon's
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kj::AsyncIoContext* io = new kj::AsyncIoContext(kj::setupAsyncIo());
  if (size < 1) return 0;
  {
    // The input itself as segment 0 of a message: the fast look and a real
    // reader agree on every message the reader accepts.
    auto words = kj::heapArray<capnp::word>((size + 7) / 8);
    std::memset(words.begin(), 0, words.size() * sizeof(capnp::word));
    std::memcpy(words.begin(), data, size);
    uint16_t tag, real_tag;
    uint32_t id, real_id;
    if (kvtier::PeekRpc(kj::ArrayPtr<const capnp::word>(words.begin(), words.size()), &tag, &id)) {
      kj::ArrayPtr<const capnp::word> segments[1] = {kj::ArrayPtr<const capnp::word>(words.begin(), words.size())};
      capnp::SegmentArrayMessageReader reader(segments);
      bool read = false;
      kj::runCatchingExceptions([&] {
        kvtier::ReadRpc(reader, &real_tag, &real_id);
        read = true;
      });
      if (read && (tag != real_tag || id != real_id)) __builtin_trap();
    }
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  // The first byte chooses the piece size (1..256) and whether pieces carry an fd.
  const size_t piece = 1 + (data[0] & 0x7f) * 2;
  const bool with_fds = (data[0] & 0x80) != 0;
  ++data;
  --size;
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  for (size_t at = 0; at < size; at += piece) {
    const size_t n = std::min(piece, size - at);
    iovec iov{const_cast<uint8_t*>(data + at), n};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (with_fds && (at / piece) % 3 == 0) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      cmsghdr* h = CMSG_FIRSTHDR(&msg);
      h->cmsg_level = SOL_SOCKET;
      h->cmsg_type = SCM_RIGHTS;
      h->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(h), &devnull, sizeof(int));
    }
    // Non-blocking: small pieces each take a whole buffer slot, and nothing
    // reads until every piece is sent; what does not fit is left out.
    if (sendmsg(sv[1], &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) break;
  }
  close(devnull);
  shutdown(sv[1], SHUT_WR);
  // What the stream leaves unread is drained below, its fds received and
  // closed: fds left in a closed socket wait for the kernel's garbage
  // collector, which throttles every later sender of fds.
  const int keep = fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
  {
    Counting observer;
    kvtier::SocketMessageStream::Options o;
    o.max_message_bytes = 1 << 20;
    o.max_pending_fds = 1;
    o.observer = &observer;
    kvtier::SocketMessageStream stream(io->unixEventPort, sv[0], o);
    capnp::ReaderOptions ro;
    ro.traversalLimitInWords = (1 << 20) / 8;
    ro.nestingLimit = 64;
    kj::AutoCloseFd fds[1];
    for (int i = 0; i < 4096; ++i) {
      bool more = false;
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
        auto m = stream.tryReadMessage(kj::arrayPtr(fds, 1), ro).wait(io->waitScope);
        KJ_IF_MAYBE(r, m) {
          more = true;
          // Walk the message as the RPC system would start to.
          auto root = r->reader->getRoot<capnp::rpc::Message>();
          if (root.isCall()) (void)root.getCall().getParams().getContent().targetSize();
          // The fast look agrees with the reader.
          uint16_t tag, real_tag;
          uint32_t id, real_id;
          auto segment0 = r->reader->getSegment(0);
          if (kvtier::PeekRpc(segment0, &tag, &id)) {
            kvtier::ReadRpc(*r->reader, &real_tag, &real_id);
            if (tag != real_tag || id != real_id) __builtin_trap();
          }
        }
      })) {
        (void)e;
        break;
      }
      if (!more) break;
    }
  }  // the stream closes sv[0]; `keep` still holds the socket
  if (keep >= 0) {
    for (;;) {
      char buf[4096];
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
      iovec iov{buf, sizeof(buf)};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      const ssize_t n = recvmsg(keep, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); n > 0 && c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
          int f;
          std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          close(f);
        }
      }
      if (n <= 0) break;
    }
    close(keep);
  }
  close(sv[1]);
  return 0;
}
