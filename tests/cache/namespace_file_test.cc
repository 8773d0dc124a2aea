// The namespace registry file: ids survive restarts, and a crash in the
// middle of an append (a torn last line) costs that one namespace only, also
// when more namespaces are registered after it (issue: every later start
// failed).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cache/cache.h"
#include "tests/cache/cache_test_util.h"
#include "tiers/host_shm_tier.h"

namespace kvtier {
namespace {

using testing::SmallSpec;

class NamespaceFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("kvtier-nsfile-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    file_ = dir_ + "/namespaces";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Result<std::unique_ptr<Cache>> Open() {
    HostShmOptions ho;
    ho.capacity_bytes = 1 << 20;
    ho.region_bytes = 1 << 20;
    CacheOptions o;
    o.tiers.push_back(TierSetup{std::move(HostShmTier::Create(ho)).value(), "lru"});
    o.namespace_file = file_;
    o.log_warning = [this](const std::string& w) { warnings_.push_back(w); };
    return Cache::Create(std::move(o));
  }
  static NamespaceSpec Spec(int i) {
    NamespaceSpec s = SmallSpec();
    s.model_id = "model-" + std::to_string(i);
    return s;
  }
  std::string Read() {
    std::ifstream in(file_, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void Append(const std::string& bytes) {
    std::ofstream out(file_, std::ios::binary | std::ios::app);
    out << bytes;
  }

  std::string dir_, file_;
  std::vector<std::string> warnings_;
};

TEST_F(NamespaceFileTest, IdsSurviveARestart) {
  {
    auto c = Open();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(*(*c)->OpenNamespace(Spec(i)), NamespaceId(i));
  }
  auto c = Open();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  for (int i = 2; i >= 0; --i) EXPECT_EQ(*(*c)->OpenNamespace(Spec(i)), NamespaceId(i));
  EXPECT_EQ(*(*c)->OpenNamespace(Spec(9)), NamespaceId(3));
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(NamespaceFileTest, TornLastLineThenNewNamespacesThenRestart) {
  {
    auto c = Open();
    ASSERT_TRUE(c.ok());
    for (int i = 0; i < 2; ++i) ASSERT_TRUE((*c)->OpenNamespace(Spec(i)).ok());
  }
  const std::string good = Read();
  // A crash halfway through appending id 2: a prefix of a real line.
  const size_t first_nl = good.find('\n');
  ASSERT_NE(first_nl, std::string::npos);
  Append("v1 2 " + good.substr(5, 12));
  {
    auto c = Open();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_EQ(warnings_.size(), 1u);
    EXPECT_NE(warnings_[0].find("torn last line"), std::string::npos) << warnings_[0];
    EXPECT_EQ(Read(), good) << "the torn bytes are cut off before anything is appended";
    EXPECT_EQ(*(*c)->OpenNamespace(Spec(1)), NamespaceId(1));
    EXPECT_EQ(*(*c)->OpenNamespace(Spec(2)), NamespaceId(2));  // the lost one, again
    EXPECT_EQ(*(*c)->OpenNamespace(Spec(3)), NamespaceId(3));
  }
  warnings_.clear();
  auto c = Open();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(warnings_.empty());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(*(*c)->OpenNamespace(Spec(i)), NamespaceId(i));
}

TEST_F(NamespaceFileTest, LastLineWithoutNewlineIsTorn) {
  {
    auto c = Open();
    ASSERT_TRUE(c.ok());
    for (int i = 0; i < 2; ++i) ASSERT_TRUE((*c)->OpenNamespace(Spec(i)).ok());
  }
  std::string text = Read();
  std::filesystem::resize_file(file_, text.size() - 1);  // the newline of line 2 lost
  auto c = Open();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(Read(), text.substr(0, text.find('\n') + 1));
  EXPECT_EQ(*(*c)->OpenNamespace(Spec(1)), NamespaceId(1));
}

TEST_F(NamespaceFileTest, DamageBeforeTheLastLineStopsTheStart) {
  {
    auto c = Open();
    ASSERT_TRUE(c.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*c)->OpenNamespace(Spec(i)).ok());
  }
  std::string text = Read();
  text[text.find('\n') + 1] = 'w';  // line 2 starts "w1 ..."
  {
    std::ofstream out(file_, std::ios::binary | std::ios::trunc);
    out << text;
  }
  auto c = Open();
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsCorruption()) << c.status().ToString();
  EXPECT_NE(c.status().message().find("line 2 is malformed"), std::string::npos);
  EXPECT_EQ(Read(), text) << "a damaged file is left as it was for an operator";
}

}  // namespace
}  // namespace kvtier
