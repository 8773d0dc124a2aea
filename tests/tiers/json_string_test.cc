// Tests of the one JSON string escaper (tiers/json_string.cc), checked against
// nlohmann-json's strict parser.
#include "tiers/json_string.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <random>
#include <string>

namespace kvtier {
namespace {

using nlohmann::json;

std::string Escaped(std::string_view s) {
  std::string out;
  AppendJsonEscaped(s, &out);
  return out;
}

TEST(JsonStringTest, EscapesWhatJsonRequires) {
  EXPECT_EQ(Escaped("plain"), "plain");
  EXPECT_EQ(Escaped("a\"b\\c"), "a\\\"b\\\\c");
  EXPECT_EQ(Escaped("\n\r\t\b\f"), "\\n\\r\\t\\b\\f");
  EXPECT_EQ(Escaped(std::string_view("\x01\x1f\0", 3)), "\\u0001\\u001f\\u0000");
  EXPECT_EQ(Escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");  // valid UTF-8 kept
  EXPECT_EQ(Escaped("\xff"), "\\ufffd");
  EXPECT_EQ(Escaped("\xc3"), "\\ufffd");                         // truncated
  EXPECT_EQ(Escaped("\xc0\xaf"), "\\ufffd\\ufffd");              // overlong
  EXPECT_EQ(Escaped("\xed\xa0\x80"), "\\ufffd\\ufffd\\ufffd");   // surrogate
  EXPECT_EQ(Escaped("\xf4\x90\x80\x80"), "\\ufffd\\ufffd\\ufffd\\ufffd");  // past U+10FFFF
  EXPECT_EQ(JsonQuoted("a\"b"), "\"a\\\"b\"");
}

// A file name is bytes: a Latin-1 name ("caf\xe9.jsonl") must still give
// valid JSON, with the bad byte as U+FFFD and everything else kept.
TEST(JsonStringTest, NonUtf8FileNamesGiveValidJson) {
  const std::string name = "traces/caf\xe9-\x80\xfe.jsonl";
  const std::string doc = "{\"trace\":" + JsonQuoted(name) + "}";
  ASSERT_TRUE(json::accept(doc)) << doc;
  EXPECT_EQ(json::parse(doc).at("trace"), "traces/caf\xef\xbf\xbd-\xef\xbf\xbd\xef\xbf\xbd.jsonl");
}

// Any bytes at all: the output parses, and valid UTF-8 input round-trips.
TEST(JsonStringTest, RandomBytesAlwaysParse) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    const std::string doc = JsonQuoted(s);
    ASSERT_TRUE(json::accept(doc)) << i;
    const std::string back = json::parse(doc).get<std::string>();
    if (Escaped(s).find("\\ufffd") == std::string::npos) {
      EXPECT_EQ(back, s) << i;  // nothing replaced: exact round trip
    }
  }
}

}  // namespace
}  // namespace kvtier
