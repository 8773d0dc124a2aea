#include "server/logging.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <sstream>


namespace kvtier {
namespace {

using nlohmann::json;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

class LoggingTest : public ::testing::Test {
 protected:
  void TearDown() override { ASSERT_TRUE(SetupLogging("info", false).ok()); }
};

TEST_F(LoggingTest, UnknownLevelIsRejected) {
  Status st = SetupLogging("verbose", false);
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("verbose"), std::string::npos);
  for (const char* l : {"trace", "debug", "info", "warn", "error", "off"})
    EXPECT_TRUE(SetupLogging(l, false).ok()) << l;
}

TEST_F(LoggingTest, JsonLinesParseWhateverTheMessage) {
  ASSERT_TRUE(SetupLogging("info", true).ok());
  const std::string tricky = "he said \"hi\"\\ on\nline two\t\x01 \xff end";
  ::testing::internal::CaptureStderr();
  spdlog::info("{}", tricky);
  spdlog::debug("below the level");
  spdlog::warn("second {}", 2);
  spdlog::default_logger()->flush();
  const std::string out = ::testing::internal::GetCapturedStderr();
  auto lines = Lines(out);
  ASSERT_EQ(lines.size(), 2u) << out;
  // nlohmann's parser is strict: it refuses invalid UTF-8 and raw control characters.
  ASSERT_TRUE(json::accept(lines[0])) << lines[0];
  const json first = json::parse(lines[0]);
  EXPECT_EQ(first.size(), 4u);
  EXPECT_EQ(first.at("level"), "info");
  EXPECT_EQ(first.at("msg"), "he said \"hi\"\\ on\nline two\t\x01 \xef\xbf\xbd end");
  EXPECT_TRUE(first.at("tid").is_number_unsigned());
  const std::string ts = first.at("ts");
  ASSERT_EQ(ts.size(), 27u) << ts;  // 2024-05-01T12:00:00.123456Z
  EXPECT_EQ(ts[10], 'T');
  EXPECT_EQ(ts.back(), 'Z');
  ASSERT_TRUE(json::accept(lines[1])) << lines[1];
  const json second = json::parse(lines[1]);
  EXPECT_EQ(second.at("level"), "warning");
  EXPECT_EQ(second.at("msg"), "second 2");
}

TEST_F(LoggingTest, TextLines) {
  ASSERT_TRUE(SetupLogging("warn", false).ok());
  ::testing::internal::CaptureStderr();
  spdlog::info("hidden");
  spdlog::error("shown {}", 1);
  spdlog::default_logger()->flush();
  const std::string out = ::testing::internal::GetCapturedStderr();
  auto lines = Lines(out);
  ASSERT_EQ(lines.size(), 1u) << out;
  EXPECT_NE(lines[0].find("[error] shown 1"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[0].find("\x1b["), std::string::npos);  // no colours off a terminal
}

}  // namespace
}  // namespace kvtier
