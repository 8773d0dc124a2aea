// SocketMessageStream over a real socketpair: framing, coalescing, fd
// attachment, limits, end of stream, back-pressure, and wire compatibility
// with Cap'n Proto's stock stream transport in both directions.
#include "server/socket_message_stream.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <capnp/serialize-async.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

namespace kvtier {
namespace {

struct Pair {
  int a = -1, b = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    a = fds[0];
    b = fds[1];
  }
};

uint64_t Word(uint32_t seed, uint32_t i) { return (uint64_t{seed} << 32) ^ (i * 0x9E3779B97F4A7C15ull); }

// A message whose content depends on `seed`, `words` data words long, built
// with a small first segment so that larger ones span several segments.
kj::Own<capnp::MallocMessageBuilder> MakeMessage(uint32_t seed, uint32_t words) {
  auto m = kj::heap<capnp::MallocMessageBuilder>(16, capnp::AllocationStrategy::FIXED_SIZE);
  auto list = m->initRoot<capnp::AnyPointer>().initAs<capnp::List<uint64_t>>(words);
  for (uint32_t i = 0; i < words; ++i) list.set(i, Word(seed, i));
  return m;
}

std::vector<uint64_t> Payload(capnp::MessageReader& r) {
  auto list = r.getRoot<capnp::AnyPointer>().getAs<capnp::List<uint64_t>>();
  std::vector<uint64_t> v;
  for (uint64_t w : list) v.push_back(w);
  return v;
}

std::vector<uint64_t> Expected(uint32_t seed, uint32_t words) {
  std::vector<uint64_t> v(words);
  for (uint32_t i = 0; i < words; ++i) v[i] = Word(seed, i);
  return v;
}

TEST(SocketMessageStream, ManyMessagesArriveIntactAndCoalesced) {
  auto io = kj::setupAsyncIo();
  Pair p;
  SocketMessageStream tx(io.unixEventPort, p.a), rx(io.unixEventPort, p.b);
  std::vector<kj::Own<capnp::MallocMessageBuilder>> sent;
  std::vector<uint32_t> sizes;
  for (uint32_t i = 0; i < 100; ++i) {
    uint32_t words = 1 + (i * 37) % 700;  // several segments from 16 words up
    sizes.push_back(words);
    sent.push_back(MakeMessage(i, words));
    tx.writeMessage(nullptr, *sent.back()).wait(io.waitScope);
  }
  EXPECT_GT(sent[50]->getSegmentsForOutput().size(), 1u);
  for (uint32_t i = 0; i < 100; ++i) {
    auto r = rx.readMessage().wait(io.waitScope);
    ASSERT_EQ(Payload(*r), Expected(i, sizes[i])) << "message " << i;
  }
  // One pass of the event loop produced every message: they left together,
  // and the reader took them in a few large reads.
  EXPECT_LE(tx.send_calls(), 5u);
  EXPECT_LE(rx.recv_calls(), 10u);
}

TEST(SocketMessageStream, MessageLargerThanTheSocketBufferWaitsForRoom) {
  auto io = kj::setupAsyncIo();
  Pair p;
  SocketMessageStream tx(io.unixEventPort, p.a), rx(io.unixEventPort, p.b);
  const uint32_t words = 3u << 20;  // 24 MiB: many times the socket buffer
  auto m = MakeMessage(7, words);
  auto written = tx.writeMessage(nullptr, *m);
  auto r = rx.readMessage().wait(io.waitScope);
  written.wait(io.waitScope);
  EXPECT_EQ(Payload(*r), Expected(7, words));
  EXPECT_GT(tx.send_calls(), 2u);  // it went in pieces as room appeared
  // The reader grew its buffer for the message and gave it back after.
  EXPECT_LE(rx.input_buffer_bytes(), size_t{1} << 20);
  auto small = MakeMessage(8, 10);
  tx.writeMessage(nullptr, *small).wait(io.waitScope);
  EXPECT_EQ(Payload(*rx.readMessage().wait(io.waitScope)), Expected(8, 10));
}

TEST(SocketMessageStream, FdsArriveWithTheMessageTheyWereSentWith) {
  auto io = kj::setupAsyncIo();
  Pair p;
  SocketMessageStream tx(io.unixEventPort, p.a), rx(io.unixEventPort, p.b);
  int memfd = memfd_create("kvtier-test", MFD_CLOEXEC);
  ASSERT_GE(memfd, 0);
  ASSERT_EQ(write(memfd, "segment", 7), 7);
  std::vector<kj::Own<capnp::MallocMessageBuilder>> msgs;
  for (uint32_t i = 0; i < 7; ++i) msgs.push_back(MakeMessage(i, 3 + i));
  for (uint32_t i = 0; i < 7; ++i) {
    int fds[1] = {memfd};
    auto fd_list = i == 4 ? kj::arrayPtr(fds, 1) : kj::ArrayPtr<const int>(nullptr);
    tx.writeMessage(fd_list, *msgs[i]).wait(io.waitScope);  // all in one flush
  }
  close(memfd);  // the stream sends its own duplicate
  for (uint32_t i = 0; i < 7; ++i) {
    kj::AutoCloseFd space[2];
    auto r = rx.readMessage(kj::arrayPtr(space, 2)).wait(io.waitScope);
    EXPECT_EQ(Payload(*r.reader), Expected(i, 3 + i));
    if (i == 4) {
      ASSERT_EQ(r.fds.size(), 1u);
      char buf[8] = {};
      ASSERT_EQ(pread(r.fds[0], buf, 7, 0), 7);
      EXPECT_STREQ(buf, "segment");
    } else {
      EXPECT_EQ(r.fds.size(), 0u) << "message " << i;
    }
  }
}

TEST(SocketMessageStream, OversizedAndMalformedFramesAreRefused) {
  auto io = kj::setupAsyncIo();
  {
    Pair p;
    SocketMessageStream rx(io.unixEventPort, p.b, SocketMessageStream::Options{1 << 20, 1 << 20});
    uint32_t header[2] = {0, (64u << 20) / 8};  // one segment of 64 MiB
    ASSERT_EQ(write(p.a, header, sizeof(header)), 8);
    try {
      rx.readMessage().wait(io.waitScope);
      FAIL() << "a 64 MiB frame was accepted by a 1 MiB stream";
    } catch (const kj::Exception& e) {
      EXPECT_NE(std::string(e.getDescription().cStr()).find("larger than this connection accepts"),
                std::string::npos)
          << e.getDescription().cStr();
    }
    close(p.a);
  }
  {
    Pair p;
    SocketMessageStream rx(io.unixEventPort, p.b);
    uint32_t header[2] = {0xffffffffu, 1};
    ASSERT_EQ(write(p.a, header, sizeof(header)), 8);
    EXPECT_ANY_THROW(rx.readMessage().wait(io.waitScope));
    close(p.a);
  }
}

TEST(SocketMessageStream, EndOfStreamCleanAndMidMessage) {
  auto io = kj::setupAsyncIo();
  {
    Pair p;
    SocketMessageStream tx(io.unixEventPort, p.a), rx(io.unixEventPort, p.b);
    auto m = MakeMessage(1, 10);
    tx.writeMessage(nullptr, *m).wait(io.waitScope);
    tx.end().wait(io.waitScope);
    EXPECT_NE(rx.tryReadMessage().wait(io.waitScope), nullptr);
    EXPECT_EQ(rx.tryReadMessage().wait(io.waitScope), nullptr);  // clean end
  }
  {
    Pair p;
    SocketMessageStream rx(io.unixEventPort, p.b);
    uint32_t header[4] = {0, 4, 1, 2};  // 4 words promised, 1 sent
    ASSERT_EQ(write(p.a, header, sizeof(header)), 16);
    close(p.a);
    try {
      rx.tryReadMessage().wait(io.waitScope);
      FAIL() << "a truncated message was accepted";
    } catch (const kj::Exception& e) {
      EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED);
    }
  }
}

TEST(SocketMessageStream, HangUpRightAfterTheLastMessageIsSeen) {
  // The peer writes and closes before the reader runs, and the event loop
  // sees both (one readiness event) before the first read: the read that
  // takes the data must not be taken for the end of what there is to see.
  auto io = kj::setupAsyncIo();
  Pair p;
  SocketMessageStream rx(io.unixEventPort, p.b);
  auto m = MakeMessage(9, 40);
  auto flat = capnp::messageToFlatArray(*m);
  auto bytes = flat.asBytes();
  ASSERT_EQ(write(p.a, bytes.begin(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  close(p.a);
  io.waitScope.poll();
  auto first = rx.tryReadMessage().wait(io.waitScope);
  ASSERT_NE(first, nullptr);
  bool timed_out = false;
  auto second = rx.tryReadMessage()
                    .exclusiveJoin(io.provider->getTimer().afterDelay(5 * kj::SECONDS).then([&]() {
                      timed_out = true;
                      return kj::Maybe<kj::Own<capnp::MessageReader>>(nullptr);
                    }))
                    .wait(io.waitScope);
  EXPECT_FALSE(timed_out) << "the hang-up was never reported";
  EXPECT_EQ(second, nullptr);
}

TEST(SocketMessageStream, WritersWaitWhileTooMuchIsUnsent) {
  auto io = kj::setupAsyncIo();
  Pair p;
  SocketMessageStream tx(io.unixEventPort, p.a, SocketMessageStream::Options{64 << 20, 1 << 20});
  SocketMessageStream rx(io.unixEventPort, p.b);
  std::vector<kj::Own<capnp::MallocMessageBuilder>> msgs;
  std::vector<kj::Promise<void>> writes;
  for (uint32_t i = 0; i < 32; ++i) {  // 32 x 256 KiB = 8 MiB
    msgs.push_back(MakeMessage(i, 32768));
    writes.push_back(tx.writeMessage(nullptr, *msgs.back()));
  }
  EXPECT_FALSE(writes.back().poll(io.waitScope)) << "8 MiB queued without back-pressure";
  for (uint32_t i = 0; i < 32; ++i) {
    auto r = rx.readMessage().wait(io.waitScope);
    ASSERT_EQ(Payload(*r), Expected(i, 32768));
  }
  for (auto& w : writes) w.wait(io.waitScope);
}

TEST(SocketMessageStream, InteroperatesWithTheStockTransport) {
  auto io = kj::setupAsyncIo();
  Pair p;
  auto stock = io.lowLevelProvider->wrapUnixSocketFd(p.a, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  SocketMessageStream ours(io.unixEventPort, p.b);
  int memfd = memfd_create("kvtier-test", MFD_CLOEXEC);
  ASSERT_GE(memfd, 0);
  // Stock writer, our reader: plain messages and one with an fd.
  auto m1 = MakeMessage(1, 100), m2 = MakeMessage(2, 5);
  capnp::writeMessage(*stock, nullptr, *m1).wait(io.waitScope);
  int fds[1] = {memfd};
  capnp::writeMessage(*stock, kj::arrayPtr(fds, 1), *m2).wait(io.waitScope);
  kj::AutoCloseFd space[1];
  auto r1 = ours.readMessage(kj::arrayPtr(space, 1)).wait(io.waitScope);
  EXPECT_EQ(Payload(*r1.reader), Expected(1, 100));
  EXPECT_EQ(r1.fds.size(), 0u);
  auto r2 = ours.readMessage(kj::arrayPtr(space, 1)).wait(io.waitScope);
  EXPECT_EQ(Payload(*r2.reader), Expected(2, 5));
  EXPECT_EQ(r2.fds.size(), 1u);
  // Our writer, stock reader.
  auto m3 = MakeMessage(3, 2000);
  ours.writeMessage(nullptr, *m3).wait(io.waitScope);
  auto r3 = capnp::readMessage(*stock).wait(io.waitScope);
  EXPECT_EQ(Payload(*r3), Expected(3, 2000));
  close(memfd);
}

}  // namespace
}  // namespace kvtier
