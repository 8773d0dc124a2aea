#include "tiers/host_shm_tier.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "tests/tiers/nvme_test_util.h"
#include "tiers/checksum.h"

namespace kvtier {
namespace {

void Fill(uint8_t* p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>((seed * 131 + i * 7 + (i >> 9)) & 255);
}

bool Check(const uint8_t* p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != static_cast<uint8_t>((seed * 131 + i * 7 + (i >> 9)) & 255)) return false;
  return true;
}

TEST(HostShmTierTest, AllocatesWithinTheSegment) {
  HostShmOptions o;
  o.capacity_bytes = 16 << 20;
  o.region_bytes = 4 << 20;
  auto t = HostShmTier::Create(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  HostShmTier& tier = **t;
  EXPECT_EQ(tier.capacity_bytes(), 16u << 20);
  auto a = tier.Allocate(2 << 20);
  auto b = tier.Allocate(100000);
  ASSERT_TRUE(a.ok() && b.ok());
  Fill(tier.Address(*a), a->bytes, 1);
  Fill(tier.Address(*b), b->bytes, 2);
  EXPECT_TRUE(Check(tier.Address(*a), a->bytes, 1));
  EXPECT_TRUE(Check(tier.Address(*b), b->bytes, 2));
  EXPECT_GT(tier.used_bytes(), 0u);
  tier.Free(*a);
  tier.Free(*b);
  EXPECT_EQ(tier.used_bytes(), 0u);
  EXPECT_EQ(tier.counters().allocations, 2u);
  EXPECT_EQ(tier.counters().frees, 2u);
}

TEST(HostShmTierTest, RejectsImpossibleSizes) {
  HostShmOptions o;
  o.capacity_bytes = 1 << 20;
  o.region_bytes = 4 << 20;
  EXPECT_TRUE(HostShmTier::Create(o).status().IsInvalidArgument());
}

// The daemon hands the segment's fd to clients over a Unix socket; a client
// maps it and must read exactly what the daemon wrote, and its writes must be
// visible to the daemon. The child maps the fd it *received*, not its copy
// of the parent's mapping.
TEST(HostShmTierTest, AnotherProcessMapsTheSegmentByFd) {
  HostShmOptions o;
  o.capacity_bytes = 8 << 20;
  o.region_bytes = 4 << 20;
  auto t = HostShmTier::Create(o);
  ASSERT_TRUE(t.ok());
  HostShmTier& tier = **t;
  auto slot = tier.Allocate(3 << 20);
  ASSERT_TRUE(slot.ok());
  Fill(tier.Address(*slot), slot->bytes, 42);

  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(sv[0]);
    char byte;
    char ctrl[CMSG_SPACE(sizeof(int))];
    iovec iov{&byte, 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl;
    msg.msg_controllen = sizeof(ctrl);
    if (recvmsg(sv[1], &msg, 0) != 1) _exit(10);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    if (c == nullptr || c->cmsg_type != SCM_RIGHTS) _exit(11);
    int fd;
    std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
    void* p = mmap(nullptr, 8 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) _exit(12);
    auto* base = static_cast<uint8_t*>(p);
    if (!Check(base + slot->offset, slot->bytes, 42)) _exit(13);
    // Write back a different pattern for the parent to see.
    Fill(base + slot->offset, 4096, 7);
    munmap(p, 8 << 20);
    _exit(0);
  }
  close(sv[1]);
  char byte = 'f';
  char ctrl[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{&byte, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof(ctrl);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  int fd = tier.fd();
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ASSERT_EQ(sendmsg(sv[0], &msg, 0), 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child exit code (12 map failed, 13 wrong bytes)";
  EXPECT_TRUE(Check(tier.Address(*slot), 4096, 7));
  close(sv[0]);
}

// A persistent segment: committed blocks (recorded) come back after the
// tier is dropped and created again over the same file — the daemon's
// restart — with their bytes and records, their slots allocated; a block
// whose payload changed, one never recorded, a torn record and a freed slot
// do not; new allocations never overlap a re-adopted slot; a second tier on
// the same file is refused while the first holds it.
TEST(HostShmTierTest, PersistentSegmentReadoptsVerifiedRecordedBlocks) {
  testing::ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  HostShmOptions o;
  o.capacity_bytes = 16 << 20;
  o.region_bytes = 4 << 20;
  o.path = dir.File("host.seg");
  const std::vector<uint64_t> sizes = {32 << 10, 32 << 10, 100000, 5 << 20, 32 << 10, 32 << 10};
  std::vector<Slot> slots;
  {
    auto t = HostShmTier::Create(o);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_TRUE((*t)->persistent());
    EXPECT_TRUE((*t)->Reopened().empty());
    auto again = HostShmTier::Create(o);
    EXPECT_EQ(again.status().code(), StatusCode::kUnavailable) << again.status().ToString();
    for (size_t i = 0; i < sizes.size(); ++i) {
      auto s = (*t)->Allocate(sizes[i]);
      ASSERT_TRUE(s.ok());
      slots.push_back(*s);
      Fill((*t)->Address(*s), s->bytes, i);
      HostSlotRecord r;
      r.slot = *s;
      r.tag[0] = static_cast<uint8_t>(i);
      r.ns = static_cast<uint32_t>(i);
      r.priority = static_cast<uint8_t>(10 + i);
      r.checksum = checksum::Sum64((*t)->Address(*s), s->bytes);
      if (i != 4) (*t)->Record(r);  // block 4: reserved, never committed
    }
    (*t)->Address(slots[1])[7] ^= 1;  // block 1's payload changes after its commit
    (*t)->Free(slots[5]);            // block 5 freed
  }
  {
    // Block 2's record torn (a crash in the middle of writing it).
    FILE* f = std::fopen((o.path + ".meta").c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, static_cast<long>(4096 + (slots[2].offset >> 12) * 64 + 30), SEEK_SET);
    std::fputc(0x5A, f);
    std::fclose(f);
  }
  auto t = HostShmTier::Create(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto back = (*t)->Reopened();
  std::vector<size_t> got;
  for (const auto& r : back) {
    const size_t i = r.tag[0];
    got.push_back(i);
    EXPECT_EQ(r.slot.offset, slots[i].offset);
    EXPECT_EQ(r.slot.bytes, sizes[i]);
    EXPECT_EQ(r.ns, i);
    EXPECT_EQ(r.priority, 10 + i);
    EXPECT_TRUE(Check((*t)->Address(r.slot), r.slot.bytes, i));
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<size_t>{0, 3}));
  // A file others may read, or a symlink, is refused (a shared /dev/shm lets
  // anyone create the name first).
  HostShmOptions other = o;
  other.path = dir.File("open.seg");
  {
    FILE* f = std::fopen(other.path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
    ASSERT_EQ(::chmod(other.path.c_str(), 0644), 0);
  }
  EXPECT_TRUE(HostShmTier::Create(other).status().IsInvalidArgument());
  other.path = dir.File("link.seg");
  ASSERT_EQ(::symlink(o.path.c_str(), other.path.c_str()), 0);
  EXPECT_FALSE(HostShmTier::Create(other).ok());
  EXPECT_TRUE((*t)->Reopened().empty()) << "handed out once";
  // The re-adopted slots are allocated: nothing new lands on them.
  for (int i = 0; i < 64; ++i) {
    auto s = (*t)->Allocate(32 << 10);
    if (!s.ok()) break;
    for (const auto& r : back)
      EXPECT_TRUE(s->offset + s->bytes <= r.slot.offset || s->offset >= r.slot.offset + r.slot.bytes)
          << "new slot at " << s->offset << " overlaps a re-adopted one";
  }
}

}  // namespace
}  // namespace kvtier
