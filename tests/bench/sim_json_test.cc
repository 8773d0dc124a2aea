// `kvtier-bench sim --json-out` writes valid JSON whatever the trace's file name:
// runs the real binary on a trace named with Latin-1 bytes and parses its
// report with nlohmann-json's strict parser.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

TEST(SimJsonTest, NonUtf8TraceNameGivesValidJson) {
#ifndef KVTIER_BENCH_PATH
  GTEST_SKIP() << "configured with KVTIER_BUILD_BENCH=OFF: no kvtier-bench to run";
#else
  std::string tmpl = (std::filesystem::temp_directory_path() / "kvtier-simjson-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl;
  const std::string trace = dir + "/caf\xe9-\"q\".jsonl";  // Latin-1 e-acute, and quotes
  {
    std::ofstream out(trace);
    for (int i = 0; i < 20; ++i)
      out << "{\"timestamp\": " << i << ", \"input_length\": 1024, \"hash_ids\": [1, 2, " << 3 + i % 3
          << "]}\n";
  }
  const std::string report = dir + "/report.json";
  const std::string cmd = std::string("'") + KVTIER_BENCH_PATH + "' sim --trace '" + trace +
                          "' --policy lru --tier1-capacity 2 --no-belady --jobs 1 --progress 0 --json-out '" + report +
                          "' > '" + dir + "/stdout' 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(report);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  ASSERT_TRUE(nlohmann::json::accept(text)) << text;
  const nlohmann::json j = nlohmann::json::parse(text);
  const std::string name = "caf\xef\xbf\xbd-\"q\"";  // the bad byte as U+FFFD, quotes kept
  EXPECT_EQ(j.at("trace").at("name"), name);
  EXPECT_EQ(j.at("trace").at("requests"), 20);
  ASSERT_TRUE(j.at("runs").is_array());
  ASSERT_EQ(j.at("runs").size(), 1u);
  EXPECT_EQ(j.at("runs").at(0).at("trace"), name);
  EXPECT_EQ(j.at("runs").at(0).at("policy"), "lru");
  std::filesystem::remove_all(dir);
#endif
}

}  // namespace
