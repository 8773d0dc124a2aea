#include "server/logging.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "tests/server_admin/json_test_util.h"

namespace kvtier {
namespace {

using testing::JsonParser;

std::string Escaped(std::string_view s) {
  std::string out;
  AppendJsonEscaped(s, &out);
  return out;
}

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

TEST(JsonEscapeTest, EscapesWhatJsonRequires) {
  EXPECT_EQ(Escaped("plain"), "plain");
  EXPECT_EQ(Escaped("a\"b\\c"), "a\\\"b\\\\c");
  EXPECT_EQ(Escaped("\n\r\t\b\f"), "\\n\\r\\t\\b\\f");
  EXPECT_EQ(Escaped(std::string_view("\x01\x1f\0", 3)), "\\u0001\\u001f\\u0000");
  EXPECT_EQ(Escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");  // valid UTF-8 kept
  EXPECT_EQ(Escaped("\xff"), "\\ufffd");
  EXPECT_EQ(Escaped("\xc3"), "\\ufffd");              // truncated
  EXPECT_EQ(Escaped("\xc0\xaf"), "\\ufffd\\ufffd");   // overlong
  EXPECT_EQ(Escaped("\xed\xa0\x80"), "\\ufffd\\ufffd\\ufffd");  // surrogate
}

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
  auto first = JsonParser::Parse(lines[0]);
  ASSERT_TRUE(first.has_value()) << lines[0];
  EXPECT_EQ((*first)["level"].str, "info");
  EXPECT_EQ((*first)["msg"].str, "he said \"hi\"\\ on\nline two\t\x01 \xef\xbf\xbd end");
  EXPECT_EQ((*first)["tid"].type, testing::Json::Type::kNumber);
  const std::string& ts = (*first)["ts"].str;
  ASSERT_EQ(ts.size(), 27u) << ts;  // 2024-05-01T12:00:00.123456Z
  EXPECT_EQ(ts[10], 'T');
  EXPECT_EQ(ts.back(), 'Z');
  auto second = JsonParser::Parse(lines[1]);
  ASSERT_TRUE(second.has_value()) << lines[1];
  EXPECT_EQ((*second)["level"].str, "warning");
  EXPECT_EQ((*second)["msg"].str, "second 2");
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
