// kvtier-bench rpc against a daemon whose host tier cannot hold its chains:
// it stops with one line saying what failed and why, exit 1 (it used to exit
// 1 in silence).
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "tests/server/daemon_fixture.h"

namespace kvtier {
namespace {

TEST(BenchRpcTest, AFailedStoreSaysWhatFailed) {
#ifndef KVTIER_BENCH_PATH
  GTEST_SKIP() << "configured with KVTIER_BUILD_BENCH=OFF: no kvtier-bench to run";
#else
  // 16 MiB: room for the 1- and 64-block chains of 16 KiB blocks, not for 2,048.
  testing::Daemon d({"--host-capacity", "16M"});
  ASSERT_TRUE(d.running());
  const std::string cmd = std::string("'") + KVTIER_BENCH_PATH + "' rpc --socket '" + d.socket() +
                          "' --calls 10 --clients 1 --seconds 0.1 2>&1 >/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string err;
  char buf[1024];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) err.append(buf, n);
  const int status = ::pclose(p);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << err;
  EXPECT_NE(err.find("kvtier-bench rpc: storing 2048 blocks: "), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(d.Stop(), 0);
#endif
}

}  // namespace
}  // namespace kvtier
