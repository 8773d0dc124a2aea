// Tests of the trace readers (bench/trace_reader.cc, bench/trace_json.cc).
#include "bench/trace_reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "bench/trace_json.h"

namespace kvtier::bench {
namespace {

std::vector<uint32_t> Blocks(const Trace& t, size_t i) {
  auto s = t.blocks(t.requests[i]);
  return {s.begin(), s.end()};
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "kvtier-trace-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string p = path_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    std::ofstream(p) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(JsonCursorTest, ReadsAndSkipsValues) {
  JsonCursor c(R"({"a": [1, {"x": "q\"uote"}, [true, null]], "n": -2.5e1, "u": 42})");
  ASSERT_TRUE(c.BeginObject());
  bool first = true;
  std::string_view key;
  ASSERT_EQ(c.ObjectNext(&first, &key), JsonCursor::Step::kItem);
  EXPECT_EQ(key, "a");
  ASSERT_TRUE(c.SkipValue());
  ASSERT_EQ(c.ObjectNext(&first, &key), JsonCursor::Step::kItem);
  EXPECT_EQ(key, "n");
  double d = 0;
  ASSERT_TRUE(c.Number(&d));
  EXPECT_DOUBLE_EQ(d, -25.0);
  ASSERT_EQ(c.ObjectNext(&first, &key), JsonCursor::Step::kItem);
  uint64_t u = 0;
  ASSERT_TRUE(c.Uint(&u));
  EXPECT_EQ(u, 42u);
  EXPECT_EQ(c.ObjectNext(&first, &key), JsonCursor::Step::kEnd);
  EXPECT_TRUE(c.AtEnd());
}

TEST(JsonCursorTest, RejectsMalformedInput) {
  JsonCursor c("[1 2]");
  ASSERT_TRUE(c.BeginArray());
  bool first = true;
  uint64_t v;
  ASSERT_EQ(c.ArrayNext(&first), JsonCursor::Step::kItem);
  ASSERT_TRUE(c.Uint(&v));
  EXPECT_EQ(c.ArrayNext(&first), JsonCursor::Step::kError);  // missing comma
  JsonCursor f("1.5");
  EXPECT_FALSE(f.Uint(&v));  // not an integer
}

TEST(TraceReaderTest, MooncakeLinesBecomeDenseChains) {
  TraceBuilder b;
  ASSERT_TRUE(ParseMooncakeJsonl(
                  "{\"timestamp\": 0, \"input_length\": 1000, \"output_length\": 5, \"hash_ids\": [7, 8]}\n"
                  "\n"
                  "{\"timestamp\": 3000, \"input_length\": 1500, \"hash_ids\": [7, 8, 90]}\n"
                  "{\"timestamp\": 1500, \"input_length\": 100, \"hash_ids\": [123456789012]}\n",
                  &b)
                  .ok());
  TraceReadOptions o;
  o.block_tokens = 512;
  Trace t = b.Finish(o);
  ASSERT_EQ(t.requests.size(), 3u);
  EXPECT_EQ(t.num_unique_blocks, 4u);
  EXPECT_EQ(t.refs.size(), 6u);
  EXPECT_EQ(t.total_input_tokens, 2600u);
  EXPECT_EQ(t.max_request_blocks, 3u);
  // Replay order is by time; ids are renumbered by first appearance.
  EXPECT_DOUBLE_EQ(t.requests[1].time_s, 1.5);
  EXPECT_EQ(Blocks(t, 0), (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(Blocks(t, 1), (std::vector<uint32_t>{2}));
  EXPECT_EQ(Blocks(t, 2), (std::vector<uint32_t>{0, 1, 3}));
  EXPECT_EQ(t.requests[2].input_tokens, 1500u);
}

TEST(TraceReaderTest, MooncakeErrorsNameTheLine) {
  TraceBuilder b;
  Status s = ParseMooncakeJsonl("{\"hash_ids\": [1]}\n{\"hash_ids\": [1, \"x\"]}\n", &b);
  ASSERT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("line 2"), std::string::npos) << s.message();
  TraceBuilder b2;
  EXPECT_TRUE(ParseMooncakeJsonl("{\"timestamp\": 1}\n", &b2).IsInvalidArgument());  // no ids
}

constexpr const char* kSessionA = R"({
  "id": "trace_a", "block_size": 64, "hash_id_scope": "local",
  "requests": [
    {"t": 0.0, "type": "n", "in": 200, "out": 3, "hash_ids": [1, 2, 3]},
    {"t": 10.0, "type": "subagent", "agent_id": "x", "requests": [
      {"t": 1.5, "type": "s", "in": 130, "hash_ids": [1, 9]}
    ]},
    {"t": 20.0, "type": "s", "in": 300, "hash_ids": [1, 2, 3, 4]}
  ]
})";
constexpr const char* kSessionB = R"({"block_size": 64, "requests": [
  {"t": 5.0, "in": 64, "hash_ids": [1]}]})";

TEST(TraceReaderTest, AgenticSessionsAreNamespacedAndSubagentsNested) {
  TraceBuilder b;
  ASSERT_TRUE(ParseAgenticSession(kSessionA, 0, &b).ok());
  ASSERT_TRUE(ParseAgenticSession(kSessionB, 0, &b).ok());
  Trace t = b.Finish({});
  EXPECT_EQ(t.block_tokens, 64u);
  EXPECT_EQ(t.num_sessions, 2u);
  ASSERT_EQ(t.requests.size(), 4u);
  // Order: A@0, B@5, A's sub-agent@11.5, A@20.
  EXPECT_EQ(t.requests[1].session, 1u);
  EXPECT_DOUBLE_EQ(t.requests[2].time_s, 11.5);
  EXPECT_EQ(Blocks(t, 0), (std::vector<uint32_t>{0, 1, 2}));
  EXPECT_EQ(Blocks(t, 1), (std::vector<uint32_t>{3}));  // id 1 of B is not id 1 of A
  EXPECT_EQ(Blocks(t, 2), (std::vector<uint32_t>{0, 4}));  // sub-agent shares A's ids
  EXPECT_EQ(Blocks(t, 3), (std::vector<uint32_t>{0, 1, 2, 5}));
  EXPECT_EQ(t.num_unique_blocks, 6u);
}

TEST(TraceReaderTest, AgenticRejectsConflictingBlockSizes) {
  TraceBuilder b;
  ASSERT_TRUE(ParseAgenticSession(kSessionA, 0, &b).ok());
  EXPECT_TRUE(ParseAgenticSession(R"({"block_size": 16, "requests": []})", 0, &b)
                  .IsInvalidArgument());
  EXPECT_TRUE(ParseAgenticSession(R"({"requests": [{"t": 1, "hash_ids": [1,]}]})", 0, &b)
                  .IsInvalidArgument());
}

TEST(TraceReaderTest, ReadsFilesDirectoriesAndLimits) {
  TempDir dir;
  const std::string jsonl = dir.Write("mini.jsonl",
                                      "{\"timestamp\": 0, \"input_length\": 600, \"hash_ids\": [1, 2]}\n"
                                      "{\"timestamp\": 1, \"input_length\": 700, \"hash_ids\": [1, 3]}\n");
  auto m = ReadTrace(jsonl, {});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->name, "mini");
  EXPECT_EQ(m->block_tokens, 512u);
  EXPECT_EQ(m->num_unique_blocks, 3u);

  TraceReadOptions first;
  first.max_requests = 1;
  auto m1 = ReadTrace(jsonl, first);
  ASSERT_TRUE(m1.ok());
  EXPECT_EQ(m1->requests.size(), 1u);
  EXPECT_EQ(m1->num_unique_blocks, 2u);  // the dropped request's block is gone

  dir.Write("sessions/trace_0002.json", kSessionB);
  dir.Write("sessions/trace_0001.json", kSessionA);
  auto a = ReadTrace(dir.path() + "/sessions", {});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->num_sessions, 2u);
  EXPECT_EQ(a->requests.size(), 4u);
  TraceReadOptions one;
  one.max_sessions = 1;
  one.session_stagger_s = 100;
  auto a1 = ReadTrace(dir.path() + "/sessions", one);
  ASSERT_TRUE(a1.ok());
  EXPECT_EQ(a1->num_sessions, 1u);  // file-name order: trace_0001 first
  EXPECT_EQ(a1->requests.size(), 3u);

  // Two sessions in one file, and the second one staggered.
  const std::string two = dir.Write("two.json", std::string(kSessionA) + "\n" + kSessionB);
  TraceReadOptions st;
  st.session_stagger_s = 100;
  auto b = ReadTrace(two, st);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->num_sessions, 2u);
  EXPECT_DOUBLE_EQ(b->requests.back().time_s, 105.0);

  EXPECT_TRUE(ReadTrace(dir.path() + "/missing.jsonl", {}).status().IsNotFound());
}

// Writes a tar archive with libarchive's writer: `filter` is
// ARCHIVE_FILTER_XZ, _GZIP or _NONE; members are (name, contents).
void WriteTar(const std::string& path, int filter,
              const std::vector<std::pair<std::string, std::string>>& members) {
  archive* a = archive_write_new();
  ASSERT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
  ASSERT_EQ(archive_write_add_filter(a, filter), ARCHIVE_OK);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
  for (const auto& [name, text] : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, static_cast<la_int64_t>(text.size()));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK);
    ASSERT_EQ(archive_write_data(a, text.data(), text.size()), static_cast<la_ssize_t>(text.size()));
    archive_entry_free(e);
  }
  ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
}

TEST(TraceReaderTest, ReadsTarArchivesThroughLibarchive) {
  TempDir dir;
  struct Case {
    const char* file;
    int filter;
  };
  for (const Case& c : {Case{"t.tar.xz", ARCHIVE_FILTER_XZ}, Case{"t.tar.gz", ARCHIVE_FILTER_GZIP},
                        Case{"t.tar", ARCHIVE_FILTER_NONE}}) {
    SCOPED_TRACE(c.file);
    const std::string path = dir.path() + "/" + c.file;
    // A README between the sessions is skipped, as in a trace directory.
    WriteTar(path, c.filter,
             {{"traces/trace_0001.json", kSessionA},
              {"traces/README.md", "not json {"},
              {"traces/trace_0002.json", kSessionB}});
    auto t = ReadTrace(path, {});
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(t->name, "t");
    EXPECT_EQ(t->num_sessions, 2u);
    EXPECT_EQ(t->requests.size(), 4u);
    EXPECT_EQ(t->num_unique_blocks, 6u);
    TraceReadOptions one;
    one.max_sessions = 1;
    auto t1 = ReadTrace(path, one);
    ASSERT_TRUE(t1.ok()) << t1.status().ToString();
    EXPECT_EQ(t1->num_sessions, 1u);
  }
}

TEST(TraceReaderTest, ArchiveErrorsNameTheMember) {
  TempDir dir;
  const std::string bad = dir.path() + "/bad.tar.xz";
  WriteTar(bad, ARCHIVE_FILTER_XZ, {{"traces/trace_0001.json", kSessionA},
                                    {"traces/trace_0002.json", "{\"requests\": [1, }"}});
  Status s = ReadTrace(bad, {}).status();
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("traces/trace_0002.json"), std::string::npos) << s.ToString();

  // Not an archive at all, and an xz stream cut in half: IOError naming the file.
  const std::string junk = dir.Write("junk.tar.xz", "this is not an archive");
  s = ReadTrace(junk, {}).status();
  EXPECT_TRUE((s.code() == StatusCode::kIOError)) << s.ToString();
  EXPECT_NE(s.message().find("junk.tar.xz"), std::string::npos) << s.ToString();
  const std::string good = dir.path() + "/good.tar.xz";
  WriteTar(good, ARCHIVE_FILTER_XZ, {{"traces/trace_0001.json", std::string(kSessionA) + std::string(4000, ' ')},
                                     {"traces/trace_0002.json", kSessionB}});
  std::string bytes;
  {
    std::ifstream in(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string cut = dir.Write("cut.tar.xz", bytes.substr(0, bytes.size() / 2));
  s = ReadTrace(cut, {}).status();
  EXPECT_TRUE((s.code() == StatusCode::kIOError)) << s.ToString();
}

}  // namespace
}  // namespace kvtier::bench
