#include "server/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace kvtier {
namespace {

SystemInfo PinnedSystem() {
  SystemInfo s;
  s.runtime_dir = "/run/user/1000";
  s.mem_available_bytes = 64 * kGiB;
  s.hardware_threads = 16;
  return s;
}

Result<DaemonConfig> Parse(std::initializer_list<const char*> args,
                           const SystemInfo& sys = PinnedSystem()) {
  std::vector<const char*> argv = {"kvtierd"};
  argv.insert(argv.end(), args.begin(), args.end());
  return ParseDaemonConfig(static_cast<int>(argv.size()), argv.data(), sys);
}

// A config file under the test's temp dir, removed at the end.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    path_ = ::testing::TempDir() + "kvtier_config_test_" + std::to_string(getpid()) + "_" +
            std::to_string(counter_++) + ".conf";
    std::ofstream(path_) << text;
  }
  ~TempFile() { unlink(path_.c_str()); }
  const char* path() const { return path_.c_str(); }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

// The error message of a parse that must fail with InvalidArgument.
std::string ErrorOf(std::initializer_list<const char*> args) {
  auto r = Parse(args);
  EXPECT_FALSE(r.ok());
  if (r.ok()) return "";
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  return r.status().message();
}

TEST(ConfigTest, DefaultsFromPinnedSystem) {
  auto c = Parse({});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->socket_path, "/run/user/1000/kvtier.sock");
  EXPECT_EQ(c->data_dir, "./kvtier-data");
  EXPECT_EQ(c->host_capacity_bytes, 16 * kGiB);  // 25% of 64 GiB
  EXPECT_EQ(c->host_region_bytes, 64 * kMiB);
  EXPECT_EQ(c->host_policy, "adaptive-2q");
  EXPECT_EQ(c->admin_address, "127.0.0.1:9477");
  EXPECT_EQ(c->log_level, "info");
  EXPECT_FALSE(c->log_json);
  EXPECT_EQ(c->rpc_threads, 4u);
  EXPECT_EQ(c->max_keys_per_call, 65536u);
  EXPECT_EQ(c->max_message_bytes, 64 * kMiB);
  EXPECT_EQ(c->max_connections, 1024u);
  EXPECT_EQ(c->nvme_path, "./kvtier-data/nvme.dat");
  EXPECT_EQ(c->nvme_capacity_bytes, 0u);
  EXPECT_EQ(c->nvme_queue_depth, 256u);
  EXPECT_EQ(c->nvme_write_policy, "write-back");
  EXPECT_FALSE(c->show_help);
  EXPECT_FALSE(c->show_version);
  EXPECT_TRUE(c->config_file.empty());
  EXPECT_TRUE(c->Validate().ok());
}

TEST(ConfigTest, SocketFallsBackToDataDirWithoutRuntimeDir) {
  SystemInfo sys = PinnedSystem();
  sys.runtime_dir.reset();
  auto c = Parse({"--data-dir", "/var/lib/kvtier/"}, sys);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->socket_path, "/var/lib/kvtier/kvtier.sock");
  EXPECT_EQ(c->nvme_path, "/var/lib/kvtier/nvme.dat");
}

TEST(ConfigTest, RpcThreadsDefaultFollowsHardware) {
  SystemInfo sys = PinnedSystem();
  sys.hardware_threads = 2;
  EXPECT_EQ(Parse({}, sys)->rpc_threads, 2u);
  sys.hardware_threads = 0;  // unknown
  EXPECT_EQ(Parse({}, sys)->rpc_threads, 4u);
}

TEST(ConfigTest, DefaultHostCapacity) {
  EXPECT_EQ(DefaultHostCapacity(64 * kGiB, 64 * kMiB), 16 * kGiB);
  EXPECT_EQ(DefaultHostCapacity(1024 * kGiB, 64 * kMiB), 64 * kGiB);  // capped
  EXPECT_EQ(DefaultHostCapacity(512 * kMiB, 64 * kMiB), 256 * kMiB);   // floor
  EXPECT_EQ(DefaultHostCapacity(0, 64 * kMiB), 256 * kMiB);            // unknown: 1 GiB
  // 25% of 4000 MiB = 1000 MiB, rounded down to 64 MiB regions = 960 MiB.
  EXPECT_EQ(DefaultHostCapacity(4000 * kMiB, 64 * kMiB), 960 * kMiB);
  // A region larger than the floor: one region.
  EXPECT_EQ(DefaultHostCapacity(512 * kMiB, kGiB), kGiB);
}

TEST(ConfigTest, ReadSystemInfoSeesThisMachine) {
  SystemInfo s = ReadSystemInfo();
  EXPECT_GT(s.mem_available_bytes, 0u);  // Linux has /proc/meminfo
  EXPECT_GT(s.hardware_threads, 0u);
  auto c = ParseDaemonConfig(1, std::vector<const char*>{"kvtierd"}.data());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_GE(c->host_capacity_bytes, 256 * kMiB);
  EXPECT_LE(c->host_capacity_bytes, 64 * kGiB);
  EXPECT_EQ(c->host_capacity_bytes % c->host_region_bytes, 0u);
}

TEST(ConfigTest, EveryFlagSeparateValue) {
  auto c = Parse({"--socket", "/tmp/k.sock", "--data-dir", "/data", "--host-capacity", "8G",
                  "--host-region", "32MiB", "--host-policy", "s3fifo", "--admin", "0.0.0.0:0",
                  "--log-level", "debug", "--log-json", "--rpc-threads", "8", "--max-keys",
                  "1024", "--max-message", "16M", "--max-connections", "10", "--nvme-path",
                  "/dev/nvme0n1", "--nvme-capacity", "1T", "--nvme-queue-depth", "128",
                  "--nvme-write-policy", "write-through"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->socket_path, "/tmp/k.sock");
  EXPECT_EQ(c->data_dir, "/data");
  EXPECT_EQ(c->host_capacity_bytes, 8 * kGiB);
  EXPECT_EQ(c->host_region_bytes, 32 * kMiB);
  EXPECT_EQ(c->host_policy, "s3fifo");
  EXPECT_EQ(c->admin_address, "0.0.0.0:0");
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_TRUE(c->log_json);
  EXPECT_EQ(c->rpc_threads, 8u);
  EXPECT_EQ(c->max_keys_per_call, 1024u);
  EXPECT_EQ(c->max_message_bytes, 16 * kMiB);
  EXPECT_EQ(c->max_connections, 10u);
  EXPECT_EQ(c->nvme_path, "/dev/nvme0n1");
  EXPECT_EQ(c->nvme_capacity_bytes, kTiB);
  EXPECT_EQ(c->nvme_queue_depth, 128u);
  EXPECT_EQ(c->nvme_write_policy, "write-through");
}

TEST(ConfigTest, EveryFlagEqualsValue) {
  auto c = Parse({"--socket=/tmp/k.sock", "--data-dir=/data", "--host-capacity=1.5g",
                  "--host-region=1M", "--host-policy=lru", "--admin=off", "--log-level=trace",
                  "--log-json=true", "--rpc-threads=256", "--max-keys=1", "--max-message=64KiB",
                  "--max-connections=1", "--nvme-path=/x", "--nvme-capacity=2GB",
                  "--nvme-queue-depth=1", "--nvme-write-policy=write-back"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->socket_path, "/tmp/k.sock");
  EXPECT_EQ(c->host_capacity_bytes, 1536 * kMiB);
  EXPECT_EQ(c->host_region_bytes, kMiB);
  EXPECT_EQ(c->host_policy, "lru");
  EXPECT_EQ(c->admin_address, "off");
  EXPECT_EQ(c->log_level, "trace");
  EXPECT_TRUE(c->log_json);
  EXPECT_EQ(c->rpc_threads, 256u);
  EXPECT_EQ(c->max_keys_per_call, 1u);
  EXPECT_EQ(c->max_message_bytes, 64 * kKiB);
  EXPECT_EQ(c->max_connections, 1u);
  EXPECT_EQ(c->nvme_path, "/x");
  EXPECT_EQ(c->nvme_capacity_bytes, 2 * kGiB);
  EXPECT_EQ(c->nvme_queue_depth, 1u);
  EXPECT_EQ(c->nvme_write_policy, "write-back");
}

TEST(ConfigTest, LogJsonForms) {
  EXPECT_TRUE(Parse({"--log-json"})->log_json);
  EXPECT_FALSE(Parse({"--log-json", "--log-json=false"})->log_json);
  EXPECT_TRUE(Parse({"--log-json=1"})->log_json);
  EXPECT_NE(ErrorOf({"--log-json=maybe"}).find("--log-json"), std::string::npos);
}

TEST(ConfigTest, LaterFlagWins) {
  EXPECT_EQ(Parse({"--log-level", "warn", "--log-level=error"})->log_level, "error");
}

TEST(ConfigTest, ExplicitHostCapacityRoundsDownToRegions) {
  auto c = Parse({"--host-capacity", "1000M"});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host_capacity_bytes, 960 * kMiB);
}

TEST(ConfigTest, FileThenFlagsOverrideWhateverTheOrder) {
  TempFile f(
      "# kvtierd settings\n"
      "\n"
      "host-capacity = 8G\n"
      "log-level = debug   # trailing comment\n"
      "  data_dir = \"/srv/kv # data\"\n"
      "log-json = yes\n"
      "rpc-threads=3\n"
      "max-connections = 7\n");
  // Flags before and after --config both win over the file.
  auto c = Parse({"--log-level", "warn", "--config", f.path(), "--rpc-threads", "5"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->config_file, f.path());
  EXPECT_EQ(c->host_capacity_bytes, 8 * kGiB);  // from the file
  EXPECT_EQ(c->log_level, "warn");              // flag before --config
  EXPECT_EQ(c->rpc_threads, 5u);                // flag after --config
  EXPECT_EQ(c->data_dir, "/srv/kv # data");     // quoted, '#' kept
  EXPECT_TRUE(c->log_json);
  EXPECT_EQ(c->max_connections, 7u);
  EXPECT_NE(c->ToString().find("config="), std::string::npos);
}

// A quoted value followed by a comment is the quoted text (before, the
// quotes were kept and the daemon made a directory named "/srv/... in the
// working directory); anything else after the closing quote is an error.
TEST(ConfigTest, QuotedValueThenComment) {
  TempFile f("data-dir = \"/srv/kv data\"   # where the index lives\n"
             "socket = \"/run/kv.sock\"#no space before the comment\n");
  auto c = Parse({"--config", f.path()});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->data_dir, "/srv/kv data");
  EXPECT_EQ(c->socket_path, "/run/kv.sock");
  for (const char* bad : {"data-dir = \"/srv/kv\" extra\n", "data-dir = \"/srv/kv\n"}) {
    TempFile g(bad);
    auto r = Parse({"--config", g.path()});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_TRUE(r.status().IsInvalidArgument());
    EXPECT_NE(r.status().message().find(std::string(g.path()) + ":1:"), std::string::npos)
        << r.status().message();
    EXPECT_TRUE(r.status().message().find("after the closing quote") != std::string::npos ||
                r.status().message().find("unterminated quote") != std::string::npos)
        << r.status().message();
  }
}

TEST(ConfigTest, FileErrorsNameFileAndLine) {
  {
    TempFile f("host-capacity = 8G\n# fine\nhost-capacity = lots\n");
    auto r = Parse({"--config", f.path()});
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(r.status().IsInvalidArgument());
    EXPECT_NE(r.status().message().find(std::string(f.path()) + ":3:"), std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find("host-capacity"), std::string::npos);
    EXPECT_NE(r.status().message().find("lots"), std::string::npos);
  }
  {
    TempFile f("\nfrobnicate = 1\n");
    auto r = Parse({"--config", f.path()});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(":2: unknown key 'frobnicate'"), std::string::npos)
        << r.status().message();
  }
  {
    TempFile f("log-level debug\n");
    auto r = Parse({"--config", f.path()});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(":1: expected 'key = value'"), std::string::npos)
        << r.status().message();
  }
  {
    TempFile f("config = other.conf\n");
    EXPECT_FALSE(Parse({"--config", f.path()}).ok());
  }
}

TEST(ConfigTest, UnreadableConfigFile) {
  std::string msg = ErrorOf({"--config", "/nonexistent/kvtier.conf"});
  EXPECT_NE(msg.find("--config"), std::string::npos) << msg;
  EXPECT_NE(msg.find("/nonexistent/kvtier.conf"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
}

TEST(ConfigTest, ErrorsNameTheFlagAndValue) {
  struct Case {
    std::initializer_list<const char*> args;
    const char* want1;
    const char* want2;
  };
  const Case cases[] = {
      {{"--bogus"}, "unknown flag --bogus", "--help"},
      {{"--bogus=1"}, "unknown flag --bogus", ""},
      {{"stray"}, "unexpected argument 'stray'", ""},
      {{"--socket"}, "--socket: missing value", "PATH"},
      {{"--socket", "--log-json"}, "--socket: missing value", ""},
      {{"--rpc-threads", "x"}, "--rpc-threads 'x'", "not a whole number"},
      {{"--rpc-threads", "-1"}, "--rpc-threads '-1'", ""},
      {{"--rpc-threads", "0"}, "--rpc-threads '0'", "out of range 1..256"},
      {{"--rpc-threads", "257"}, "--rpc-threads '257'", "out of range"},
      {{"--max-keys", "99999999999999999999999"}, "--max-keys", "too large"},
      {{"--host-capacity", "8X"}, "--host-capacity '8X'", "not a size"},
      {{"--host-capacity", "1.5"}, "--host-capacity '1.5'", "whole number of bytes"},
      {{"--host-capacity", "32M", "--host-region", "64M"}, "--host-capacity", "one region"},
      {{"--host-region", "1000K"}, "--host-region", "out of range"},
      {{"--host-region", "1025K"}, "--host-region", "multiple of 4KiB"},
      {{"--host-policy", "fifo"}, "--host-policy 'fifo'", "lru"},
      {{"--log-level", "verbose"}, "--log-level 'verbose'", "unknown log level"},
      {{"--nvme-write-policy", "sometimes"}, "--nvme-write-policy 'sometimes'",
       "unknown write policy"},
      {{"--nvme-capacity", "4K"}, "--nvme-capacity", "at least 65MiB"},
      {{"--nvme-capacity", "64M"}, "--nvme-capacity", "a 1MiB header and one 64MiB region"},
      {{"--nvme-queue-depth", "0"}, "--nvme-queue-depth '0'", "out of range"},
      {{"--admin", "localhost"}, "--admin 'localhost'", "HOST:PORT"},
      {{"--admin", "127.0.0.1:70000"}, "--admin", "0..65535"},
      {{"--admin", "::1:9477"}, "--admin", "brackets"},
      {{"--max-message", "1M", "--max-keys", "65536"}, "--max-message", "--max-keys 65536"},
      {{"--max-connections=0"}, "--max-connections '0'", "out of range"},
      {{"--socket", ""}, "--socket ''", "empty"},
      {{"--version=1"}, "--version takes no value", ""},
  };
  for (const auto& c : cases) {
    std::string msg = ErrorOf(c.args);
    EXPECT_NE(msg.find(c.want1), std::string::npos) << "got: " << msg;
    EXPECT_NE(msg.find(c.want2), std::string::npos) << "got: " << msg;
  }
  std::string long_path = "/" + std::string(120, 'a');
  auto r = Parse({"--socket", long_path.c_str()});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("107 bytes"), std::string::npos);
}

// The fault-handling settings: write policies by name, the shutdown flush's
// bound, the index rebuild's read rate; their defaults and ranges.
TEST(ConfigTest, NvmeDurabilitySettings) {
  auto d = Parse({});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->nvme_write_policy, "write-back");
  EXPECT_EQ(d->nvme_flush_timeout_seconds, 30u);
  EXPECT_EQ(d->nvme_rebuild_rate_bytes, 0u);
  for (const char* policy : {"write-back", "write-through", "write-async"}) {
    auto c = Parse({"--nvme-write-policy", policy});
    ASSERT_TRUE(c.ok()) << policy << ": " << c.status().ToString();
    EXPECT_EQ(c->nvme_write_policy, policy);
  }
  auto c = Parse({"--nvme-flush-timeout", "0", "--nvme-rebuild-rate", "256M"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->nvme_flush_timeout_seconds, 0u);
  EXPECT_EQ(c->nvme_rebuild_rate_bytes, 256 * kMiB);
  EXPECT_NE(ErrorOf({"--nvme-flush-timeout", "3601"}).find("out of range 0..3600"),
            std::string::npos);
  EXPECT_NE(ErrorOf({"--nvme-rebuild-rate", "lots"}).find("--nvme-rebuild-rate 'lots'"),
            std::string::npos);
  EXPECT_NE(ErrorOf({"--nvme-write-policy", "write-sometimes"})
                .find("write-back, write-through, write-async"),
            std::string::npos);
  const std::string help = DaemonHelpText();
  for (const char* flag : {"--nvme-flush-timeout SECONDS", "--nvme-rebuild-rate SIZE", "write-async"})
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
}

TEST(ConfigTest, HelpAndVersionWinOverEverything) {
  auto h = Parse({"--bogus", "--help"});
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(h->show_help);
  EXPECT_TRUE(Parse({"-h"})->show_help);
  auto v = Parse({"--version", "--rpc-threads", "0"});
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->show_version);
  EXPECT_EQ(DaemonVersion(), "kvtier " + std::string(KvtierVersion()));
  EXPECT_NE(KvtierVersion(), "unknown");
}

TEST(ConfigTest, HelpDocumentsEveryFlagAndDefault) {
  const std::string help = DaemonHelpText();
  for (const char* flag :
       {"--socket PATH", "--data-dir DIR", "--host-capacity SIZE", "--host-region SIZE",
        "--host-policy NAME", "--admin HOST:PORT|off", "--log-level LEVEL", "--log-json",
        "--rpc-threads N", "--max-keys N", "--max-message SIZE", "--max-connections N",
        "--nvme-path PATH", "--nvme-capacity SIZE", "--nvme-queue-depth N",
        "--nvme-write-policy POLICY", "--config FILE", "--help", "--version"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  }
  // Lines fit a terminal.
  size_t start = 0;
  while (start < help.size()) {
    size_t nl = help.find('\n', start);
    EXPECT_LE(nl - start, 80u) << help.substr(start, nl - start);
    start = nl + 1;
  }
  // Defaults may wrap across lines: compare with whitespace collapsed.
  std::string flat;
  for (char ch : help) {
    if (ch == ' ' || ch == '\n') {
      if (!flat.empty() && flat.back() != ' ') flat += ' ';
    } else {
      flat += ch;
    }
  }
  for (const char* def :
       {"default: ./kvtier-data", "default: 64MiB", "default: adaptive-2q",
        "default: 127.0.0.1:9477", "default: info", "default: 65536", "default: 1024",
        "default: <data-dir>/nvme.dat", "default: 0 (off)", "default: 64",
        "default: write-back", "default: min(4, hardware threads)",
        "25% of MemAvailable, capped at 64GiB, at least 256MiB",
        "$XDG_RUNTIME_DIR/kvtier.sock", "key = value", "Precedence"}) {
    EXPECT_NE(flat.find(def), std::string::npos) << def;
  }
  // The example in the help parses.
  TempFile f(
      "socket = /run/kvtier/kvtier.sock\nhost-capacity = 32G\nadmin = 0.0.0.0:9477\n"
      "log-json = true\n");
  EXPECT_TRUE(Parse({"--config", f.path()}).ok());
}

TEST(ConfigTest, ParseSize) {
  struct Case {
    const char* text;
    uint64_t bytes;
  };
  const Case ok[] = {
      {"0", 0},           {"4096", 4096},        {"1B", 1},          {"1b", 1},
      {"8G", 8 * kGiB},   {"8g", 8 * kGiB},      {"8GiB", 8 * kGiB}, {"8gib", 8 * kGiB},
      {"8GB", 8 * kGiB},  {"512MiB", 512 * kMiB}, {"512m", 512 * kMiB}, {"64k", 64 * kKiB},
      {"64KB", 64 * kKiB}, {"2T", 2 * kTiB},     {"1.5G", 1536 * kMiB}, {"1.5K", 1536},
      {"0.5M", 512 * kKiB}, {"1.0", 1},          {"1.25T", 1280 * kGiB},
      {"18446744073709551615", UINT64_MAX},
  };
  for (const auto& c : ok) {
    auto r = ParseSize(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.status().ToString();
    EXPECT_EQ(*r, c.bytes) << c.text;
  }
  for (const char* bad : {"", "G", "-1", "1.5", "0.1K", "1.", ".5G", "8 G", "8GG", "8Gi",
                          "8iB", "8X", "1e9", "18446744073709551616", "16777216T", "0x10"}) {
    EXPECT_FALSE(ParseSize(bad).ok()) << bad;
  }
}

TEST(ConfigTest, FormatSize) {
  EXPECT_EQ(FormatSize(0), "0B");
  EXPECT_EQ(FormatSize(100), "100B");
  EXPECT_EQ(FormatSize(1536), "1.5KiB");
  EXPECT_EQ(FormatSize(16 * kGiB), "16GiB");
  EXPECT_EQ(FormatSize(kTiB + 256 * kGiB), "1.25TiB");
  EXPECT_EQ(FormatSize(64 * kMiB), "64MiB");
  EXPECT_EQ(FormatSize(91 * 64 * kMiB), "5.69GiB");  // rounded for display
}

TEST(ConfigTest, ParseHostPort) {
  auto a = ParseHostPort("127.0.0.1:9477");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9477);
  auto b = ParseHostPort("[::1]:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 0);
  auto c = ParseHostPort("localhost:80");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "localhost");
  for (const char* bad : {"", ":80", "host", "host:", "host:x", "host:65536", "[::1]", "[::1]80",
                          "::1:80"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
}

TEST(ConfigTest, ToStringNamesTheSettings) {
  auto c = Parse({"--nvme-capacity", "10G"});
  ASSERT_TRUE(c.ok());
  const std::string s = c->ToString();
  for (const char* want : {"socket=/run/user/1000/kvtier.sock", "host_capacity=16GiB",
                           "host_policy=adaptive-2q", "admin=127.0.0.1:9477", "rpc_threads=4",
                           "nvme_capacity=10GiB", "nvme_write_policy=write-back"}) {
    EXPECT_NE(s.find(want), std::string::npos) << want << " in " << s;
  }
  EXPECT_NE(Parse({})->ToString().find("nvme=off"), std::string::npos);
  // Sizes print exactly: 91 regions of 64 MiB are not a round number of GiB.
  EXPECT_NE(Parse({"--host-capacity", "5824M"})->ToString().find("host_capacity=5824MiB "),
            std::string::npos);
  EXPECT_NE(Parse({"--host-capacity", "1.5G"})->ToString().find("host_capacity=1.5GiB "),
            std::string::npos);
}

TEST(ConfigTest, ValidateCatchesProgrammaticMistakes) {
  DaemonConfig c;
  ResolveDefaults(PinnedSystem(), &c);
  ASSERT_TRUE(c.Validate().ok());
  DaemonConfig bad = c;
  bad.host_policy = "nope";
  EXPECT_NE(bad.Validate().message().find("--host-policy"), std::string::npos);
  bad = c;
  bad.rpc_threads = 0;
  EXPECT_NE(bad.Validate().message().find("--rpc-threads"), std::string::npos);
  bad = c;
  bad.host_capacity_bytes = kMiB;
  EXPECT_NE(bad.Validate().message().find("--host-capacity"), std::string::npos);
}

TEST(ConfigTest, NvmeCapacityIsUsedInWholeRegionsAfterTheHeader) {
  EXPECT_EQ(NvmeUsableBytes(kNvmeMinCapacity - 1), 0u);
  EXPECT_EQ(NvmeUsableBytes(kNvmeMinCapacity), kNvmeMinCapacity);
  EXPECT_EQ(NvmeUsableBytes(kMiB + 3 * kNvmeRegionBytes), kMiB + 3 * kNvmeRegionBytes);
  EXPECT_EQ(NvmeUsableBytes(kMiB + 3 * kNvmeRegionBytes + 5), kMiB + 3 * kNvmeRegionBytes);
  EXPECT_EQ(NvmeUsableBytes(kTiB), kMiB + (kTiB - kMiB) / kNvmeRegionBytes * kNvmeRegionBytes);
}

TEST(ConfigTest, TenantsAccumulateAndFlagsReplaceTheFilesTenants) {
  auto c = Parse({"--host-capacity", "4G", "--tenant", "a=uid:1000", "--tenant", "b=gid:20,host:1G"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->tenants.size(), 2u);
  EXPECT_EQ(c->tenants[1], "b=gid:20,host:1G");
  TempFile f("host-capacity = 4G\ntenant = x=uid:1\ntenant = y=uid:2\n");
  auto from_file = Parse({"--config", f.path()});
  ASSERT_TRUE(from_file.ok()) << from_file.status().ToString();
  EXPECT_EQ(from_file->tenants.size(), 2u);
  auto replaced = Parse({"--config", f.path(), "--tenant", "z=uid:3"});
  ASSERT_TRUE(replaced.ok());
  ASSERT_EQ(replaced->tenants.size(), 1u);
  EXPECT_EQ(replaced->tenants[0], "z=uid:3");
}

TEST(ConfigTest, BadTenantsAreRefusedWithTheReason) {
  struct Case {
    std::vector<const char*> args;
    const char* why;
  };
  for (const Case& k : std::vector<Case>{
           {{"--tenant", "nameonly"}, "expected NAME=RULE"},
           {{"--tenant", "a=uid:1", "--tenant", "a=gid:2"}, "configured twice"},
           {{"--tenant", "a=host:1G"}, "nobody could be it"},
           {{"--tenant", "a=uid:x"}, "not a number"},
           {{"--tenant", "a=colour:red"}, "unknown rule"},
           {{"--tenant", "a b=uid:1"}, "may hold only"},
           {{"--tenant", "a=token-sha256:00"}, "64 hex digits"},
           {{"--host-capacity", "1G", "--tenant", "a=uid:1,host:1G", "--tenant", "b=uid:2"},
            "less than one region"},
           {{"--host-capacity", "1G", "--tenant", "a=uid:1,host:2G"}, "exceed"},
           {{"--verify-checksums", "sometimes"}, "spill, commit"},
           {{"--data-group", "no-such-group-kvtier"}, "unknown group"}}) {
    std::vector<const char*> argv = {"kvtierd"};
    argv.insert(argv.end(), k.args.begin(), k.args.end());
    auto c = ParseDaemonConfig(static_cast<int>(argv.size()), argv.data(), PinnedSystem());
    ASSERT_FALSE(c.ok()) << k.why;
    EXPECT_TRUE(c.status().IsInvalidArgument());
    EXPECT_NE(c.status().message().find(k.why), std::string::npos) << c.status().ToString();
  }
}

}  // namespace
}  // namespace kvtier
