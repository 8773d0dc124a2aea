// kvtier-crash-test: clients store and load self-verifying blocks while the
// daemon is killed and restarted at random moments; every load is compared
// byte by byte, and every block whose write-through commit returned must be
// served after every restart.
//
// Each cycle starts kvtierd over the same data dir (NVMe tier on, the write
// policy of the cycle: the listed policies in turn), checks that every block
// committed durably so far is served byte-exact, runs client threads that
// store and load blocks of two block sizes (32 KiB and 128 KiB namespaces)
// for a random time, then stops the daemon in the middle of their calls:
// SIGKILL, and every --sigterm-every'th cycle SIGTERM (drain, write-back
// flush). With --corrupt N, N random bytes of the NVMe file's data area are
// flipped while the daemon is down: no flipped block may ever be served
// (the byte check), though durable blocks may then be missing (reported, not
// failed). With --corrupt-extents N, one payload byte of each of N random
// extents (found by their self-describing headers) is flipped while the
// daemon is down, and each damaged block is looked up at the next start:
// it must be refused (a miss) or served intact from another copy, never
// served with the flipped byte. A block's bytes are a function of its key,
// so a wrong byte is caught whoever wrote the block and whenever. With
// --inject-faults SPEC the daemon's NVMe I/O queue fails operations at random
// under load (kvtierd --nvme-fault-inject): EIO, ENOSPC, short reads, flipped
// bits; nothing wrong may be served and every start must succeed (durable
// blocks may then be missing: reported, not failed).
//
// --small-fs MIB puts the data dir (NVMe index, namespaces file) on a tmpfs
// of that size and fills it up before a third of the starts: the daemon
// must start and serve through a full disk (root only; exit 77 otherwise).
// --host-shm 1 keeps the host tier in a persistent segment (DIR/host.seg),
// so blocks also come back from host memory after each restart.
// --store-rate S measures instead: stores/s and per-store latency of one
// client under each policy, no crashes (docs/performance.md).
//
// Exit status: 0 when no wrong byte was served, every daemon start
// succeeded and (without --corrupt) no durably committed block was lost; 1
// otherwise; 2 on a bad command line. The short form runs in the test suite
// (crash_test_short); the long form is in docs/reliability.md.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine_adapter/client.h"
#include "tiers/nvme_format.h"

namespace kvtier {
namespace {

struct Options {
  std::string kvtierd;
  std::string dir;
  int cycles = 50;
  int min_ms = 40;
  int max_ms = 250;
  int clients = 2;
  int sigterm_every = 5;
  int corrupt = 0;
  int corrupt_extents = 0;
  // Non-empty: the daemon runs with --nvme-fault-inject SPEC (EIO, ENOSPC,
  // short reads, flipped bits from its NVMe I/O queue, under load).
  std::string inject_faults;
  uint64_t seed = 1;
  std::vector<std::string> policies = {"write-through", "write-async", "write-back"};
  // > 0: no crash cycles; measure store rate and latency per policy instead.
  double store_rate_seconds = 0;
  // Keep the host tier in <dir>/host.seg (--host-shm-path).
  bool host_shm = false;
  // > 0: the data dir (NVMe index, namespaces) is a tmpfs of this many MiB
  // (root only), filled up before a third of the starts; the NVMe file is
  // outside it.
  int small_fs_mib = 0;
};

// Two namespaces of different block sizes; a fixed pool of prompts each, so
// that the blocks fit the NVMe tier (no NVMe eviction: a durable block must
// stay) while the host tier evicts.
struct Pool {
  NamespaceSpec spec;
  uint32_t prompts;
};
constexpr size_t kBlocksPerPrompt = 8;

std::vector<Pool> Pools() {
  NamespaceSpec a;
  a.model_id = "crash/small";
  a.layout = KvLayout{4, 2, 64, 16, DType::kBF16, 2};  // 32 KiB blocks
  NamespaceSpec b;
  b.model_id = "crash/large";
  b.layout = KvLayout{16, 2, 64, 16, DType::kBF16, 2};  // 128 KiB blocks
  return {Pool{a, 96}, Pool{b, 24}};  // 24 + 24 MiB
}

void FillFromKey(const BlockKey& k, uint8_t* p, size_t n) {
  uint64_t x = k.lo ^ (k.hi * 0x9E3779B97F4A7C15ull) ^ 1;
  for (size_t i = 0; i < n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(p + i, &x, std::min<size_t>(8, n - i));
  }
}

std::vector<BlockKey> PromptKeys(const ClientNamespace& ns, uint32_t prompt) {
  std::vector<uint32_t> tokens(kBlocksPerPrompt * ns.spec().layout.tokens_per_block);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = prompt * 1000003u + static_cast<uint32_t>(i);
  return ns.HashTokens(tokens);
}

struct Totals {
  std::atomic<uint64_t> stores_ok{0}, store_errors{0}, loads{0}, blocks_verified{0},
      wrong_blocks{0}, load_errors{0};
};

class DaemonRun {
 public:
  DaemonRun(const Options& o, const std::string& policy) : socket_(o.dir + "/kvtier.sock") {
    // The store-rate mode passes only flags every build knows, so that an
    // older kvtierd can be measured beside this one.
    const bool plain = o.store_rate_seconds > 0;
    std::vector<std::string> args = {o.kvtierd,
                                     "--socket", socket_,
                                     "--data-dir", o.dir + "/data",
                                     "--host-capacity", "32M",
                                     "--host-region", "4M",
                                     "--admin", "off",
                                     "--log-level", "error",
                                     "--rpc-threads", "2",
                                     "--nvme-capacity", "256M",
                                     "--nvme-queue-depth", "64",
                                     "--nvme-write-policy", policy};
    if (!plain) args.insert(args.end(), {"--drain-timeout", "2", "--nvme-flush-timeout", "5"});
    if (o.host_shm) args.insert(args.end(), {"--host-shm-path", o.dir + "/host.seg"});
    if (!plain && !o.inject_faults.empty())
      args.insert(args.end(), {"--nvme-fault-inject", o.inject_faults});
    if (o.small_fs_mib > 0) args.insert(args.end(), {"--nvme-path", o.dir + "/nvme.dat"});
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    for (int i = 0; i < 400; ++i) {
      if (Client::Connect(socket_).ok()) {
        up_ = true;
        return;
      }
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  ~DaemonRun() { Stop(SIGKILL); }
  bool up() const { return up_; }
  const std::string& socket() const { return socket_; }
  // Sends `sig` and waits for the exit; returns the exit status (128 + signal).
  int Stop(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  std::string socket_;
  pid_t pid_ = -1;
  bool up_ = false;
};

// Every durably committed prompt: served, byte-exact? Returns {missing, wrong} blocks.
std::pair<uint64_t, uint64_t> CheckDurable(const std::string& socket,
                                           const std::vector<std::set<uint32_t>>& durable) {
  auto c = Client::Connect(socket);
  if (!c.ok()) return {~0ull, 0};
  const auto pools = Pools();
  uint64_t missing = 0, wrong = 0;
  for (size_t n = 0; n < pools.size(); ++n) {
    auto ns = (*c)->OpenNamespace(pools[n].spec);
    if (!ns.ok()) return {~0ull, 0};
    std::vector<uint8_t> got((*ns)->block_bytes()), want(got.size());
    for (uint32_t p : durable[n]) {
      auto keys = PromptKeys(**ns, p);
      for (const BlockKey& k : keys) {
        auto lease = (*ns)->Lookup(std::span(&k, 1));
        if (!lease.ok() || lease->empty()) {
          ++missing;
          continue;
        }
        uint8_t* dst = got.data();
        FillFromKey(k, want.data(), want.size());
        if (!(*ns)->Load(*lease, std::span(&dst, 1)).ok()) {
          ++missing;  // a checksum failure is a miss, never data
        } else if (got != want) {
          ++wrong;
        }
      }
    }
  }
  return {missing, wrong};
}

// One client: stores and loads random prompts until the daemon goes away.
void ClientLoop(const std::string& socket, uint64_t seed, bool durable_commits, Totals& t,
                std::mutex& mu, std::vector<std::set<uint32_t>>& durable,
                const std::atomic<bool>& stop) {
  auto c = Client::Connect(socket);
  if (!c.ok()) return;
  const auto pools = Pools();
  std::vector<std::unique_ptr<ClientNamespace>> nss;
  for (const Pool& p : pools) {
    auto ns = (*c)->OpenNamespace(p.spec);
    if (!ns.ok()) return;
    nss.push_back(std::move(ns).value());
  }
  std::mt19937_64 rng(seed);
  std::vector<std::vector<uint8_t>> bufs;
  while (!stop.load(std::memory_order_relaxed)) {
    const size_t n = rng() % pools.size();
    ClientNamespace& ns = *nss[n];
    const uint32_t prompt = static_cast<uint32_t>(rng() % pools[n].prompts);
    auto keys = PromptKeys(ns, prompt);
    bufs.assign(keys.size(), std::vector<uint8_t>(ns.block_bytes()));
    if (rng() % 2 == 0) {
      std::vector<const uint8_t*> ptrs;
      for (size_t i = 0; i < keys.size(); ++i) {
        FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
        ptrs.push_back(bufs[i].data());
      }
      auto r = ns.Store(keys, ptrs);
      if (!r.ok()) {
        ++t.store_errors;
        // write-through on a degraded NVMe tier: committed to host only.
        if (r.status().message().find("not durable") != std::string::npos) continue;
        if (r.status().code() == StatusCode::kUnavailable ||
            r.status().code() == StatusCode::kIOError)
          return;  // the daemon is gone or draining
        continue;
      }
      ++t.stores_ok;
      if (durable_commits && r->stored == keys.size()) {
        std::lock_guard<std::mutex> l(mu);
        durable[n].insert(prompt);
      }
    } else {
      auto lease = ns.Lookup(keys);
      if (!lease.ok()) {
        ++t.load_errors;
        return;
      }
      if (lease->empty()) continue;
      std::vector<uint8_t*> dsts;
      for (size_t i = 0; i < lease->size(); ++i) dsts.push_back(bufs[i].data());
      if (!ns.Load(*lease, dsts).ok()) {
        ++t.load_errors;
        continue;
      }
      ++t.loads;
      std::vector<uint8_t> want(ns.block_bytes());
      for (size_t i = 0; i < lease->size(); ++i) {
        FillFromKey(keys[i], want.data(), want.size());
        ++t.blocks_verified;
        if (bufs[i] != want) ++t.wrong_blocks;
      }
    }
  }
}

// Flips `n` random bytes of the NVMe file's data area (offset 1 MiB on).
int Corrupt(const std::string& path, int n, std::mt19937_64& rng) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st{};
  fstat(fd, &st);
  int done = 0;
  const uint64_t begin = 1 << 20;
  for (int i = 0; i < n && static_cast<uint64_t>(st.st_size) > begin; ++i) {
    const off_t at = static_cast<off_t>(begin + rng() % (static_cast<uint64_t>(st.st_size) - begin));
    uint8_t b;
    if (::pread(fd, &b, 1, at) != 1) continue;
    b ^= static_cast<uint8_t>(1u << (rng() % 8));
    if (::pwrite(fd, &b, 1, at) == 1) ++done;
  }
  ::close(fd);
  return done;
}

// Flips one payload byte in each of `n` random extents of the NVMe file,
// found by walking the data area's self-describing headers; adds their keys
// to *damaged. Returns the number flipped.
int CorruptExtents(const std::string& path, int n, std::mt19937_64& rng,
                   std::set<std::pair<uint64_t, uint64_t>>* damaged) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st{};
  fstat(fd, &st);
  struct Found {
    uint64_t offset, payload;
    ExtentTag tag;
  };
  std::vector<Found> found;
  std::vector<uint8_t> header(kExtentHeaderBytes);
  for (uint64_t at = kDataOffset; at + kExtentHeaderBytes <= static_cast<uint64_t>(st.st_size);) {
    if (::pread(fd, header.data(), header.size(), static_cast<off_t>(at)) !=
        static_cast<ssize_t>(header.size()))
      break;
    Result<ExtentHeader> h = DecodeExtentHeader(header.data());
    if (h.ok() && h->extent_offset == at && h->payload_bytes > 0 &&
        at + ExtentBytesNeeded(h->payload_bytes) <= static_cast<uint64_t>(st.st_size)) {
      found.push_back({at, h->payload_bytes, h->tag});
      at += ExtentBytesNeeded(h->payload_bytes);
    } else {
      at += kNvmeBlockBytes;
    }
  }
  int done = 0;
  for (int i = 0; i < n && !found.empty(); ++i) {
    const Found& x = found[rng() % found.size()];
    const off_t at = static_cast<off_t>(x.offset + kExtentHeaderBytes + rng() % x.payload);
    uint8_t b;
    if (::pread(fd, &b, 1, at) != 1) continue;
    b ^= static_cast<uint8_t>(1u << (rng() % 8));
    if (::pwrite(fd, &b, 1, at) != 1) continue;
    uint64_t lo, hi;
    std::memcpy(&lo, x.tag.data(), 8);
    std::memcpy(&hi, x.tag.data() + 8, 8);
    damaged->insert({lo, hi});
    ++done;
  }
  ::close(fd);
  return done;
}

// Looks each damaged block up (in both namespaces; a key belongs to one):
// refused (a miss, or the client's checksum refused it), served intact
// (another copy), or served wrong.
struct DamageCheck {
  uint64_t refused = 0, intact = 0, wrong = 0;
};
DamageCheck CheckDamaged(const std::string& socket,
                         const std::set<std::pair<uint64_t, uint64_t>>& damaged) {
  DamageCheck r;
  auto c = Client::Connect(socket);
  if (!c.ok()) return r;
  std::vector<std::unique_ptr<ClientNamespace>> nss;
  for (const Pool& p : Pools()) {
    auto ns = (*c)->OpenNamespace(p.spec);
    if (!ns.ok()) return r;
    nss.push_back(std::move(ns).value());
  }
  for (const auto& [lo, hi] : damaged) {
    const BlockKey k{lo, hi};
    bool served = false;
    for (auto& ns : nss) {
      auto lease = ns->Lookup(std::span(&k, 1));
      if (!lease.ok() || lease->empty()) continue;
      std::vector<uint8_t> got(ns->block_bytes()), want(got.size());
      uint8_t* dst = got.data();
      if (!ns->Load(*lease, std::span(&dst, 1)).ok()) continue;  // refused by the client
      FillFromKey(k, want.data(), want.size());
      served = true;
      got == want ? ++r.intact : ++r.wrong;
      break;
    }
    if (!served) ++r.refused;
  }
  return r;
}

// Store rate: one client stores fresh 8-block prompts (32 KiB blocks) for
// `seconds` under each policy; prints stores/s and per-store latency.
int StoreRate(const Options& o) {
  for (const std::string& policy : o.policies) {
    std::error_code ec;
    std::filesystem::remove_all(o.dir + "/data", ec);
    std::filesystem::remove(o.dir + "/host.seg", ec);
    std::filesystem::remove(o.dir + "/host.seg.meta", ec);
    DaemonRun d(o, policy);
    if (!d.up()) {
      std::fprintf(stderr, "%s: kvtierd did not start\n", policy.c_str());
      return 1;
    }
    auto c = Client::Connect(d.socket());
    auto ns = c.ok() ? (*c)->OpenNamespace(Pools()[0].spec) : Result<std::unique_ptr<ClientNamespace>>(c.status());
    if (!ns.ok()) return 1;
    std::vector<std::vector<uint8_t>> bufs(kBlocksPerPrompt, std::vector<uint8_t>((*ns)->block_bytes()));
    std::vector<const uint8_t*> ptrs;
    for (auto& b : bufs) ptrs.push_back(b.data());
    std::vector<double> us;
    uint64_t errors = 0;
    const auto start = std::chrono::steady_clock::now();
    for (uint32_t p = 1000000;; ++p) {
      const auto t0 = std::chrono::steady_clock::now();
      if (std::chrono::duration<double>(t0 - start).count() >= o.store_rate_seconds) break;
      auto keys = PromptKeys(**ns, p);
      for (size_t i = 0; i < keys.size(); ++i) FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
      auto r = (*ns)->Store(keys, ptrs);
      if (!r.ok()) ++errors;
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::sort(us.begin(), us.end());
    auto q = [&](double f) { return us.empty() ? 0.0 : us[std::min(us.size() - 1, static_cast<size_t>(f * us.size()))]; };
    std::printf("%-14s stores/s %8.0f  (%zu stores of 8 x 32 KiB, %lu errors)  p50 %8.1f us  p99 %8.1f us\n",
                policy.c_str(), static_cast<double>(us.size()) / secs, us.size(),
                static_cast<unsigned long>(errors), q(0.5), q(0.99));
    c = Status::Unavailable("closed");
    d.Stop(SIGTERM);
  }
  return 0;
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "kvtier-crash-test: %s\n"
               "usage: kvtier-crash-test --kvtierd PATH --dir DIR [--cycles 50] [--min-ms 40]\n"
               "         [--max-ms 250] [--clients 2] [--sigterm-every 5] [--corrupt 0]\n"
               "         [--corrupt-extents 0]   (N extents' payloads damaged per stop; their\n"
               "                                  blocks checked at the next start)\n"
               "         [--inject-faults SPEC]  (kvtierd --nvme-fault-inject SPEC, e.g.\n"
               "                                  read-eio=0.01,write-enospc=0.01,read-flip=0.001)\n"
               "         [--policies write-through,write-async,write-back] [--seed 1]\n"
               "         [--host-shm 0|1]   (host tier in DIR/host.seg: --host-shm-path)\n"
               "         [--small-fs MIB]   (data dir on a tmpfs of MIB, full at 1/3 of the\n"
               "                             starts; root only, else exit 77)\n"
               "       kvtier-crash-test --kvtierd PATH --dir DIR --store-rate SECONDS\n"
               "         [--policies ...]   (store rate and latency per policy, no crashes)\n",
               why);
  return 2;
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return Usage(("missing value for " + a).c_str());
    std::string v = argv[++i];
    if (a == "--kvtierd") o.kvtierd = v;
    else if (a == "--dir") o.dir = v;
    else if (a == "--cycles") o.cycles = std::atoi(v.c_str());
    else if (a == "--min-ms") o.min_ms = std::atoi(v.c_str());
    else if (a == "--max-ms") o.max_ms = std::atoi(v.c_str());
    else if (a == "--clients") o.clients = std::atoi(v.c_str());
    else if (a == "--sigterm-every") o.sigterm_every = std::atoi(v.c_str());
    else if (a == "--corrupt") o.corrupt = std::atoi(v.c_str());
    else if (a == "--corrupt-extents") o.corrupt_extents = std::atoi(v.c_str());
    else if (a == "--inject-faults") o.inject_faults = v;
    else if (a == "--seed") o.seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--store-rate") o.store_rate_seconds = std::atof(v.c_str());
    else if (a == "--host-shm") o.host_shm = v == "1" || v == "true";
    else if (a == "--small-fs") o.small_fs_mib = std::atoi(v.c_str());
    else if (a == "--policies") {
      o.policies.clear();
      for (size_t s = 0; s <= v.size();) {
        size_t e = v.find(',', s);
        if (e == std::string::npos) e = v.size();
        o.policies.push_back(v.substr(s, e - s));
        s = e + 1;
      }
    } else {
      return Usage(("unknown flag " + a).c_str());
    }
  }
  if (o.kvtierd.empty() || o.dir.empty()) return Usage("--kvtierd and --dir are required");
  if (o.cycles < 1 || o.clients < 1 || o.min_ms < 1 || o.max_ms < o.min_ms || o.policies.empty())
    return Usage("bad numbers");
  signal(SIGPIPE, SIG_IGN);
  std::error_code ec;
  const std::string data = o.dir + "/data";
  (void)::umount2(data.c_str(), MNT_DETACH);  // left by an interrupted run
  std::filesystem::remove_all(o.dir, ec);
  std::filesystem::create_directories(o.dir, ec);
  if (o.store_rate_seconds > 0) return StoreRate(o);
  if (o.small_fs_mib > 0) {
    std::filesystem::create_directories(data, ec);
    const std::string opts = "size=" + std::to_string(o.small_fs_mib) + "m,mode=0700";
    if (::mount("tmpfs", data.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
      std::fprintf(stderr, "kvtier-crash-test: cannot mount a tmpfs on %s (needs root): %s\n",
                   data.c_str(), std::strerror(errno));
      return 77;
    }
  }
  const std::string filler = data + "/filler";
  uint64_t full_starts = 0;

  std::mt19937_64 rng(o.seed);
  Totals t;
  std::mutex mu;
  std::vector<std::set<uint32_t>> durable(Pools().size());
  uint64_t kills = 0, terms = 0, failed_starts = 0, bad_exits = 0, flips = 0;
  uint64_t missing_total = 0, wrong_durable = 0, checks = 0, damaged_extents = 0,
           damaged_blocks = 0;
  std::set<std::pair<uint64_t, uint64_t>> damaged;
  DamageCheck damage;
  const auto started = std::chrono::steady_clock::now();
  for (int cycle = 0; cycle <= o.cycles; ++cycle) {
    const std::string& policy = o.policies[static_cast<size_t>(cycle) % o.policies.size()];
    if (o.small_fs_mib > 0) {
      std::remove(filler.c_str());
      // A full data dir at a third of the starts (never the first: the
      // namespaces are registered then).
      if (cycle > 0 && rng() % 3 == 0) {
        FILE* f = std::fopen(filler.c_str(), "w");
        if (f != nullptr) {
          std::vector<char> chunk(1 << 16, 'x');
          while (std::fwrite(chunk.data(), 1, chunk.size(), f) == chunk.size() && std::fflush(f) == 0) {
          }
          std::fclose(f);
          ++full_starts;
        }
      }
    }
    DaemonRun d(o, policy);
    if (!d.up()) {
      ++failed_starts;
      std::fprintf(stderr, "cycle %d: kvtierd did not start\n", cycle);
      continue;
    }
    std::vector<std::set<uint32_t>> snapshot;
    {
      std::lock_guard<std::mutex> l(mu);
      snapshot = durable;
    }
    auto [missing, wrong] = CheckDurable(d.socket(), snapshot);
    ++checks;
    missing_total += missing;
    wrong_durable += wrong;
    if (missing > 0 || wrong > 0)
      std::fprintf(stderr, "cycle %d (%s): %lu durable blocks missing, %lu wrong\n", cycle,
                   policy.c_str(), static_cast<unsigned long>(missing),
                   static_cast<unsigned long>(wrong));
    if (!damaged.empty()) {
      const DamageCheck dc = CheckDamaged(d.socket(), damaged);
      damaged_blocks += damaged.size();
      damage.refused += dc.refused;
      damage.intact += dc.intact;
      damage.wrong += dc.wrong;
      if (dc.wrong > 0)
        std::fprintf(stderr, "cycle %d: %lu damaged blocks served wrong\n", cycle,
                     static_cast<unsigned long>(dc.wrong));
      damaged.clear();
    }
    if (cycle == o.cycles) {
      d.Stop(SIGTERM);
      break;  // the last start only checks
    }
    const bool durable_commits = policy == "write-through";
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < o.clients; ++c)
      clients.emplace_back(ClientLoop, d.socket(), rng(), durable_commits, std::ref(t), std::ref(mu),
                           std::ref(durable), std::cref(stop));
    const int ms = o.min_ms + static_cast<int>(rng() % static_cast<uint64_t>(o.max_ms - o.min_ms + 1));
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    const bool term = o.sigterm_every > 0 && cycle % o.sigterm_every == o.sigterm_every - 1;
    const int status = d.Stop(term ? SIGTERM : SIGKILL);
    stop = true;  // the daemon is gone: the clients' calls fail, they return
    term ? ++terms : ++kills;
    if (term && status != 0) {
      ++bad_exits;
      std::fprintf(stderr, "cycle %d: SIGTERM exit status %d\n", cycle, status);
    }
    for (auto& th : clients) th.join();
    const std::string nvme_file = o.small_fs_mib > 0 ? o.dir + "/nvme.dat" : o.dir + "/data/nvme.dat";
    if (o.corrupt > 0) flips += static_cast<uint64_t>(Corrupt(nvme_file, o.corrupt, rng));
    if (o.corrupt_extents > 0)
      damaged_extents += static_cast<uint64_t>(CorruptExtents(nvme_file, o.corrupt_extents, rng, &damaged));
    if ((cycle + 1) % 100 == 0)
      std::fprintf(stderr, "cycle %d: %lu loads, %lu wrong blocks, %lu durable blocks missing so far\n",
                   cycle + 1, static_cast<unsigned long>(t.loads.load()),
                   static_cast<unsigned long>(t.wrong_blocks.load()),
                   static_cast<unsigned long>(missing_total));
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  uint64_t durable_blocks = 0;
  for (const auto& s : durable) durable_blocks += s.size() * kBlocksPerPrompt;
  std::printf(
      "kvtier-crash-test: %d cycles in %.1f s (%lu SIGKILL, %lu SIGTERM, %lu failed starts, "
      "%lu bad SIGTERM exits)\n"
      "  stores ok %lu, store errors %lu, loads %lu, blocks verified %lu, wrong blocks %lu\n"
      "  durable (write-through) blocks %lu, checked at %lu starts: missing %lu, wrong %lu\n"
      "  corruption: %lu bytes flipped; %lu extent payloads damaged (%lu blocks), those blocks "
      "then refused %lu, served intact from another copy %lu, served wrong %lu\n",
      o.cycles, secs, static_cast<unsigned long>(kills), static_cast<unsigned long>(terms),
      static_cast<unsigned long>(failed_starts), static_cast<unsigned long>(bad_exits),
      static_cast<unsigned long>(t.stores_ok.load()), static_cast<unsigned long>(t.store_errors.load()),
      static_cast<unsigned long>(t.loads.load()), static_cast<unsigned long>(t.blocks_verified.load()),
      static_cast<unsigned long>(t.wrong_blocks.load()), static_cast<unsigned long>(durable_blocks),
      static_cast<unsigned long>(checks), static_cast<unsigned long>(missing_total),
      static_cast<unsigned long>(wrong_durable), static_cast<unsigned long>(flips),
      static_cast<unsigned long>(damaged_extents), static_cast<unsigned long>(damaged_blocks),
      static_cast<unsigned long>(damage.refused),
      static_cast<unsigned long>(damage.intact), static_cast<unsigned long>(damage.wrong));
  if (o.small_fs_mib > 0) {
    std::printf("  full data dir at %lu of %d starts\n", static_cast<unsigned long>(full_starts),
                o.cycles + 1);
    (void)::umount2(data.c_str(), MNT_DETACH);
  }
  const bool ok = t.wrong_blocks == 0 && wrong_durable == 0 && failed_starts == 0 &&
                  bad_exits == 0 && damage.wrong == 0 &&
                  (o.corrupt > 0 || o.corrupt_extents > 0 || !o.inject_faults.empty() ||
                   missing_total == 0);
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  if (ok) std::filesystem::remove_all(o.dir, ec);
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace kvtier

int main(int argc, char** argv) { return kvtier::Main(argc, argv); }
