// Tests of the NVMe admission policies (eviction/admission.cc).
#include "eviction/admission.h"

#include <gtest/gtest.h>

#include <string>

namespace kvtier {
namespace {

std::unique_ptr<AdmissionPolicy> Make(const char* name, size_t window = size_t{1} << 20) {
  AdmissionOptions options;
  options.window = window;
  auto r = NewAdmissionPolicy(name, options);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(r).value();
}

TEST(AdmissionTest, AlwaysAdmits) {
  auto a = Make("always");
  EXPECT_EQ(a->name(), "always");
  for (uint64_t fp : {0ull, 1ull, 1ull, 42ull}) EXPECT_TRUE(a->Admit(fp));
  EXPECT_GT(a->MemoryUsage(), 0u);
}

TEST(AdmissionTest, SecondSightingAdmitsFromTheSecondCall) {
  auto a = Make("second-sighting");
  EXPECT_EQ(a->name(), "second-sighting");
  EXPECT_FALSE(a->Admit(42));
  EXPECT_TRUE(a->Admit(42));
  EXPECT_FALSE(a->Admit(43));
  EXPECT_TRUE(a->Admit(42));  // still remembered
  EXPECT_TRUE(a->Admit(43));
  EXPECT_FALSE(a->Admit(44));
}

TEST(AdmissionTest, UnknownFingerprintIsAdmitted) {
  auto a = Make("second-sighting");
  EXPECT_TRUE(a->Admit(0));
}

TEST(AdmissionTest, SecondSightingForgetsOutsideItsWindow) {
  auto a = Make("second-sighting", 4);
  EXPECT_FALSE(a->Admit(1));
  EXPECT_FALSE(a->Admit(2));
  EXPECT_FALSE(a->Admit(3));
  EXPECT_FALSE(a->Admit(4));
  EXPECT_TRUE(a->Admit(1));   // 3 sightings later: within the window
  for (uint64_t fp = 10; fp < 14; ++fp) EXPECT_FALSE(a->Admit(fp));
  EXPECT_FALSE(a->Admit(2));  // 4+ sightings later: forgotten
}

TEST(AdmissionTest, MemoryIsBoundedByTheWindow) {
  auto a = Make("second-sighting", 1024);
  const size_t before = a->MemoryUsage();
  for (uint64_t fp = 1; fp <= 1000000; ++fp) EXPECT_FALSE(a->Admit(fp * 0x9E3779B97F4A7C15ull));
  EXPECT_EQ(a->MemoryUsage(), before);
  EXPECT_LT(a->MemoryUsage(), 64u * 1024);
}

TEST(AdmissionTest, FactoryRejectsUnknownNamesAndBadWindows) {
  auto r = NewAdmissionPolicy("tinylfu");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
  EXPECT_NE(r.status().message().find("second-sighting"), std::string::npos);
  AdmissionOptions zero;
  zero.window = 0;
  EXPECT_TRUE(NewAdmissionPolicy("second-sighting", zero).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvtier
