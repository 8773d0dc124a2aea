// The binaries' flag handling (server/cli.h conventions), as a user sees it:
// one table of command lines run against the real kvtierd, kvtier,
// kvtier-bench and kvtier-nvme-bench, with the exit code and what stdout or
// stderr must say. Nothing here reaches a daemon: every case stops at the
// command line, or at connecting to a socket that does not exist.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace {

struct Case {
  const char* binary;  // KVTIERD, KVTIER, BENCH or NVME
  const char* args;    // shell words
  int exit_code;
  const char* out;     // must appear in stdout ("" = anything)
  const char* err;     // must appear in stderr ("" = anything)
};

// Error cases must also be short: at most two lines on stderr, none on stdout.
const Case kCases[] = {
    // --help everywhere, per command, exit 0 on stdout.
    {"KVTIERD", "--help", 0, "--nvme-queue-depth N", ""},
    {"KVTIERD", "--rpc-threads 0 --help", 0, "Usage: kvtierd", ""},
    {"KVTIER", "--help", 0, "lookup", ""},
    {"KVTIER", "lookup --help", 0, "--tokens-file", ""},
    {"KVTIER", "stats -h", 0, "--json", ""},
    {"BENCH", "--help", 0, "sim", ""},
    {"BENCH", "sim --help", 0, "--tier1-capacity", ""},
    {"BENCH", "rpc --help", 0, "--spin-us", ""},
    {"BENCH", "load --help", 0, "--nvme-chunk", ""},
    {"BENCH", "tp --help", 0, "--layers", ""},
    {"NVME", "--help", 0, "--extent", ""},
    // Booleans: bare, =false, =1; a bad boolean is refused.
    {"KVTIERD", "--log-json=false --version", 0, "kvtier 0.", ""},
    {"KVTIER", "stats --json=false --socket /nonexistent/kvtier.sock", 1, "", "no kvtierd"},
    {"KVTIER", "stats --json=1 --socket=/nonexistent/kvtier.sock", 1, "", "no kvtierd"},
    {"KVTIER", "health --json --socket /nonexistent/kvtier.sock", 1, "", "no kvtierd"},
    {"KVTIER", "stats --json=maybe", 2, "", "--json"},
    {"KVTIERD", "--log-json=maybe", 2, "", "--log-json 'maybe': not a boolean"},
    {"NVME", "--no-verify=maybe --path x", 2, "", "--no-verify"},
    // Unknown flags and commands: one line naming them.
    {"KVTIERD", "--bogus", 2, "", "unknown flag --bogus"},
    {"KVTIER", "stats --bogus", 2, "", "--bogus"},
    {"KVTIER", "frobnicate", 2, "", "frobnicate"},
    {"BENCH", "frobnicate", 2, "", "unknown command 'frobnicate'"},
    {"BENCH", "sim --trace t.jsonl --bogus 1", 2, "", "--bogus"},
    {"NVME", "--path x --bogus", 2, "", "--bogus"},
    // A value-taking flag followed by a flag or by nothing: missing value.
    {"KVTIERD", "--socket --log-json", 2, "", "--socket: missing value"},
    {"KVTIER", "stats --socket --json", 2, "", "--socket: missing value"},
    {"KVTIER", "stats --socket", 2, "", "--socket"},
    {"NVME", "--path", 2, "", "--path"},
    // Ranges and choices, checked before any work (no trace read, no file
    // created, no daemon spawned).
    {"KVTIERD", "--rpc-threads 0", 2, "", "--rpc-threads '0': out of range 1..256"},
    {"KVTIERD", "--nvme-queue-depth=5000", 2, "", "--nvme-queue-depth '5000': out of range"},
    {"NVME", "--path x --qd 0", 2, "", "'0' is out of range 1..1024"},
    {"NVME", "--path x --qd 8,0", 2, "", "'0' is out of range"},
    {"NVME", "--path x --extent 5K", 2, "", "not a multiple of 4096"},
    {"NVME", "--path x --size lots", 2, "", "'lots' is not a size"},
    {"NVME", "--path x --seconds 0", 2, "", "--seconds"},
    {"NVME", "", 2, "", "--path is required"},
    {"NVME", "--path x --size 64M", 2, "", "--size 64M is too small for --extent 256K: the store needs 65M"},
    {"NVME", "--path x --size 1G --extent 128M", 2, "", "is too small for --extent 128M"},
    {"BENCH", "sim --trace /nonexistent/t.jsonl --policy foo", 2, "", "foo"},
    {"BENCH", "sim --trace /nonexistent/t.jsonl --tier2-policy foo", 2, "", "foo"},
    {"BENCH", "sim --trace /nonexistent/t.jsonl --admission maybe", 2, "", "maybe"},
    {"BENCH", "sim --trace /nonexistent/t.jsonl --tier1-capacity 5XB", 2, "", "5XB"},
    {"BENCH", "sim --trace /nonexistent/t.jsonl --tier1-capacity 64GiB", 2, "", "--block-bytes"},
    {"BENCH", "sim --trace /nonexistent/t.jsonl --format csv", 2, "", "--format"},
    {"BENCH", "sim --trace /nonexistent/t.jsonl --jobs 0", 2, "", "--jobs"},
    {"BENCH", "sim --policy lru", 2, "", "--trace is required"},
    // --json is a boolean everywhere; the sim's report file is --json-out PATH.
    {"BENCH", "sim --trace /nonexistent/t.jsonl --json r.json", 2, "", "--json"},
    {"BENCH", "rpc --clients 1,0", 2, "", "--clients"},
    {"BENCH", "rpc --rpc-threads=0", 2, "", "--rpc-threads"},
    {"BENCH", "load --tiers host,disk", 2, "", "unknown tier 'disk'"},
    {"BENCH", "tp --layers 0", 2, "", "--layers"},
    {"KVTIER", "lookup --tokens 1,2 --layers 0", 2, "", "--layers"},
    {"KVTIER", "lookup --tokens 1,2 --dtype int4", 2, "", "--dtype"},
    {"KVTIER", "lookup --tokens 1,2 --tp-rank 2 --tp-size 2", 2, "", "tp_rank"},
    {"KVTIER", "lookup", 2, "", "give --tokens or --tokens-file"},
    {"KVTIER", "demo --prompts 0", 2, "", "--prompts"},
    // kvtier hash prints docs/hashing.md's vectors (tokens 0..31: k0, k1).
    {"KVTIER", "hash --model meta-llama/Llama-3.1-8B --revision main --tokens 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31", 0,
     "d671f98fdc675aa890b9077b863da0e8", ""},
    {"KVTIER", "hash --model=meta-llama/Llama-3.1-8B --revision=main --hash sha256 --salt tenant-a --json --tokens 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
     0, "\"keys\":[\"aefa248b79e953e7576bcbaba638fda2\",\"7722b120631d5d5a1217942c91624197\"]", ""},
    {"KVTIER", "hash --model meta-llama/Llama-3.1-8B --revision main --tp-rank 1 --tp-size 2 --tokens 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31", 0,
     "5a128d093f4b1f3910b986db81c1ed90", ""},
    {"KVTIER", "hash --tokens 1,2 --tokens-file /nonexistent", 2, "", "--tokens-file"},
    {"KVTIER", "evict --admin 127.0.0.1:1", 2, "", "--namespace is required"},
    {"KVTIER", "evict --namespace x", 2, "", "--namespace"},
    // The shipped config file parses (its errors would come before the flag's).
    {"KVTIERD", "--config @SRC@/deploy/kvtierd.conf --rpc-threads 0", 2, "", "--rpc-threads '0'"},
    // --flag=value and --flag value are the same; a valid trace-less sim
    // error comes from reading (exit 1), after all flags passed.
    {"BENCH", "sim --trace=/nonexistent/t.jsonl --policy=lru,s3fifo --jobs=1", 1, "", "no trace at"},
};

std::string Binary(const std::string& name) {
  if (name == "KVTIERD") return KVTIERD_PATH;
  if (name == "KVTIER") return KVTIER_PATH;
  if (name == "BENCH") return KVTIER_BENCH_PATH;
  return KVTIER_NVME_BENCH_PATH;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(CliFlagsTest, EveryBinaryTheSameWay) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "kvtier-cli-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl;
  for (const Case& c : kCases) {
    std::string args = c.args;  // @SRC@: the source tree
    if (const size_t at = args.find("@SRC@"); at != std::string::npos) args.replace(at, 5, KVTIER_SOURCE_DIR);
    const std::string line = std::string(c.binary) + " " + args;
    SCOPED_TRACE(line);
    // Run inside the scratch dir: nothing a case might create lands elsewhere.
    const std::string cmd = "cd '" + dir + "' && '" + Binary(c.binary) + "' " + args + " >'" + dir +
                            "/out' 2>'" + dir + "/err' </dev/null";
    const int status = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(status));
    const std::string out = Slurp(dir + "/out"), err = Slurp(dir + "/err");
    EXPECT_EQ(WEXITSTATUS(status), c.exit_code) << "stdout: " << out << "\nstderr: " << err;
    EXPECT_NE(out.find(c.out), std::string::npos) << "stdout: " << out;
    EXPECT_NE(err.find(c.err), std::string::npos) << "stderr: " << err;
    if (c.exit_code == 2) {
      EXPECT_EQ(out, "");
      EXPECT_LE(std::count(err.begin(), err.end(), '\n'), 2) << "stderr: " << err;
    }
  }
  // No case created anything (no kvtier-data, no NVMe file named x).
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == "out" || name == "err") << "a case created " << name;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
