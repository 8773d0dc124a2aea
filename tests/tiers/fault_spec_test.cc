// ParseFaultSpec: the fault-injection rules a daemon under test is given.
#include <gtest/gtest.h>

#include "tiers/fault_io_queue.h"

namespace kvtier {
namespace {

TEST(FaultSpecTest, EveryKindAndItsProbability) {
  auto r = ParseFaultSpec("read-eio=0.01,write-enospc=0.5,write-eio=1,read-short=0,read-flip=0.25");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 5u);
  EXPECT_EQ((*r)[0].kind, FaultKind::kReadError);
  EXPECT_EQ((*r)[0].error, EIO);
  EXPECT_DOUBLE_EQ((*r)[0].probability, 0.01);
  EXPECT_EQ((*r)[1].kind, FaultKind::kWriteError);
  EXPECT_EQ((*r)[1].error, ENOSPC);
  EXPECT_EQ((*r)[2].kind, FaultKind::kWriteError);
  EXPECT_EQ((*r)[2].error, EIO);
  EXPECT_EQ((*r)[3].kind, FaultKind::kShortRead);
  EXPECT_EQ((*r)[4].kind, FaultKind::kBitFlip);
  EXPECT_DOUBLE_EQ((*r)[4].probability, 0.25);
  EXPECT_TRUE(ParseFaultSpec("")->empty());
}

TEST(FaultSpecTest, BadItemsAreNamed) {
  for (const char* bad : {"read-eio", "read-eio=", "read-eio=2", "read-eio=-0.1", "read-eio=x",
                          "disk-on-fire=0.1", "read-eio=0.1,,write-eio=0.1"}) {
    auto r = ParseFaultSpec(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("fault spec"), std::string::npos) << bad;
  }
}

}  // namespace
}  // namespace kvtier
