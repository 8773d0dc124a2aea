#include "server/config.h"

#include "eviction/admission.h"
#include "tiers/fault_io_queue.h"
#include "tiers/numa.h"

#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "eviction/policy.h"
#include "server/data_dir.h"
#include "server/tenants.h"

#ifndef KVTIER_VERSION_STRING
#define KVTIER_VERSION_STRING "unknown"
#endif

namespace kvtier {
namespace {

constexpr size_t kMaxSocketPath = 107;  // sizeof(sockaddr_un::sun_path) - 1
constexpr uint64_t kBytesPerKeyInMessage = 64;

enum class FlagType : uint8_t { kString, kSize, kU32, kBool, kList, kConfig, kHelp, kVersion };

// One flag: its name (also the config-file key), what it sets, its limits and
// its --help line. The parser, the file reader and DaemonHelpText() all read
// this table, so they cannot disagree.
struct FlagSpec {
  std::string_view name;
  std::string_view metavar;  // "" = takes no value
  FlagType type;
  std::string DaemonConfig::*str = nullptr;
  uint64_t DaemonConfig::*u64 = nullptr;
  uint32_t DaemonConfig::*u32 = nullptr;
  bool DaemonConfig::*boolean = nullptr;
  std::vector<std::string> DaemonConfig::*list = nullptr;  // kList: every value kept
  uint64_t min = 0;
  uint64_t max = UINT64_MAX;
  Status (*check)(std::string_view value) = nullptr;  // for strings
  std::string_view default_text;
  std::string_view help;
};

Status CheckNonEmpty(std::string_view v) {
  if (v.empty()) return Status::InvalidArgument("must not be empty");
  return Status::OK();
}

Status CheckPolicy(std::string_view v) {
  auto p = NewEvictionPolicy(v);
  if (!p.ok()) return p.status();
  return Status::OK();
}

Status CheckAdmin(std::string_view v) {
  if (v == "off") return Status::OK();
  auto hp = ParseHostPort(v);
  if (!hp.ok()) return hp.status();
  return Status::OK();
}

constexpr std::string_view kLogLevels[] = {"trace", "debug", "info", "warn", "error", "off"};

Status CheckLogLevel(std::string_view v) {
  for (auto l : kLogLevels)
    if (v == l) return Status::OK();
  return Status::InvalidArgument("unknown log level (trace, debug, info, warn, error, off)");
}

Status CheckWritePolicy(std::string_view v) {
  if (v == "write-back" || v == "write-through" || v == "write-async") return Status::OK();
  return Status::InvalidArgument("unknown write policy (write-back, write-through, write-async)");
}

Status CheckFaultSpec(std::string_view v) {
  auto r = ParseFaultSpec(v);
  return r.ok() ? Status::OK() : r.status();
}

Status CheckNuma(std::string_view v) {
  if (v == "auto" || v == "off") return Status::OK();
  auto r = ParseNodeList(v);
  return r.ok() ? Status::OK() : r.status();
}

Status CheckGpus(std::string_view v) {
  auto r = ParseGpuList(v);
  return r.ok() ? Status::OK() : r.status();
}

Status CheckStoreTier(std::string_view v) {
  if (v == "host" || v == "hbm") return Status::OK();
  return Status::InvalidArgument("unknown tier '" + std::string(v) + "' (expected host or hbm)");
}

Status CheckAdmission(std::string_view v) {
  auto a = NewAdmissionPolicy(v);
  return a.ok() ? Status::OK() : a.status();
}

Status CheckGroup(std::string_view v) {
  if (v.empty()) return Status::OK();
  auto g = ResolveGroup(v);
  return g.ok() ? Status::OK() : g.status();
}

Status CheckVerify(std::string_view v) {
  if (v == "spill" || v == "commit") return Status::OK();
  return Status::InvalidArgument("unknown value (spill, commit)");
}

Status CheckSocket(std::string_view v) {
  if (v.empty()) return Status::InvalidArgument("must not be empty");
  if (v.size() > kMaxSocketPath)
    return Status::InvalidArgument("longer than " + std::to_string(kMaxSocketPath) +
                                   " bytes (the limit of a Unix socket path)");
  return Status::OK();
}

const std::vector<FlagSpec>& Flags() {
  using C = DaemonConfig;
  static const std::vector<FlagSpec> kFlags = {
      {.name = "socket", .metavar = "PATH", .type = FlagType::kString, .str = &C::socket_path,
       .check = CheckSocket,
       .default_text = "$XDG_RUNTIME_DIR/kvtier.sock if XDG_RUNTIME_DIR is set and writable, "
                       "else <data-dir>/kvtier.sock",
       .help = "Unix socket of the RPC service (at most 107 bytes)."},
      {.name = "data-dir", .metavar = "DIR", .type = FlagType::kString, .str = &C::data_dir,
       .check = CheckNonEmpty, .default_text = "./kvtier-data",
       .help = "Directory of the daemon's files (NVMe tier file and index, maybe the socket)."},
      {.name = "host-capacity", .metavar = "SIZE", .type = FlagType::kSize,
       .u64 = &C::host_capacity_bytes, .min = kMiB, .max = 16 * kTiB,
       .default_text = "25% of MemAvailable, capped at 64GiB, at least 256MiB, "
                       "rounded down to whole regions",
       .help = "Size of the pinned-host tier (shared memory segment); rounded down to whole "
               "regions."},
      {.name = "host-region", .metavar = "SIZE", .type = FlagType::kSize,
       .u64 = &C::host_region_bytes, .min = kMiB, .max = 4 * kGiB, .default_text = "64MiB",
       .help = "Slab region of the host tier, a multiple of 4KiB."},
      {.name = "host-numa", .metavar = "auto|off|NODES", .type = FlagType::kString,
       .str = &C::host_numa, .check = CheckNuma, .default_text = "auto",
       .help = "NUMA placement of the host tier: auto (multi-node hosts: the nodes of "
               "--gpus, else interleaved over all), off, or nodes like 0 or 0-1."},
      {.name = "host-shm-path", .metavar = "PATH", .type = FlagType::kString,
       .str = &C::host_shm_path, .default_text = "none (anonymous memory)",
       .help = "Keep the host tier in this file (on a tmpfs such as /dev/shm, mode 0600) "
               "with checksummed slot records beside it (PATH.meta): a restarted daemon "
               "(kill -9 or upgrade) serves the blocks it verifies again."},
      {.name = "host-policy", .metavar = "NAME", .type = FlagType::kString,
       .str = &C::host_policy, .check = CheckPolicy, .default_text = "adaptive-2q",
       .help = "Eviction policy of the host (and HBM) tier: adaptive-2q (priorities and "
               "retention, then a self-tuning two-queue order; see docs/eviction.md), lru, "
               "priority-lru, prefix-lru, s3fifo."},
      {.name = "admin", .metavar = "HOST:PORT|off", .type = FlagType::kString,
       .str = &C::admin_address, .check = CheckAdmin, .default_text = "127.0.0.1:9477",
       .help = "Admin HTTP endpoint (/healthz, /metrics, /v1/stats, /). Port 0 picks a free "
               "port; \"off\" disables it; IPv6 as [::1]:9477."},
      {.name = "log-level", .metavar = "LEVEL", .type = FlagType::kString, .str = &C::log_level,
       .check = CheckLogLevel, .default_text = "info",
       .help = "trace, debug, info, warn, error or off."},
      {.name = "log-json", .metavar = "", .type = FlagType::kBool, .boolean = &C::log_json,
       .default_text = "off",
       .help = "Log JSON lines instead of text (--log-json=false turns it off again)."},
      {.name = "rpc-threads", .metavar = "N", .type = FlagType::kU32, .u32 = &C::rpc_threads,
       .min = 1, .max = 256, .default_text = "min(4, hardware threads)",
       .help = "Threads serving RPCs, 1..256."},
      {.name = "max-keys", .metavar = "N", .type = FlagType::kU32,
       .u32 = &C::max_keys_per_call, .min = 1, .max = 1u << 24, .default_text = "65536",
       .help = "Most keys in one acquire, reserve or hash call, 1..16777216."},
      {.name = "max-message", .metavar = "SIZE", .type = FlagType::kSize,
       .u64 = &C::max_message_bytes, .min = 64 * kKiB, .max = 4 * kGiB, .default_text = "64MiB",
       .help = "Largest RPC message, 64KiB..4GiB, at least 64 bytes per --max-keys."},
      {.name = "max-connections", .metavar = "N", .type = FlagType::kU32,
       .u32 = &C::max_connections, .min = 1, .max = 1u << 20, .default_text = "1024",
       .help = "Most client connections at once, 1..1048576; more are refused."},
      {.name = "max-connections-per-uid", .metavar = "N", .type = FlagType::kU32,
       .u32 = &C::max_connections_per_uid, .min = 1, .max = 1u << 20, .default_text = "256",
       .help = "Most connections of one peer uid (SO_PEERCRED) at once, 1..1048576 (and at "
               "most --max-connections); more are refused, so that one user cannot take every "
               "slot."},
      {.name = "max-connection-memory", .metavar = "SIZE", .type = FlagType::kSize,
       .u64 = &C::max_connection_memory, .min = 1 * kMiB, .max = 64 * kGiB,
       .default_text = "128MiB",
       .help = "Memory one connection may make the daemon hold: the message it is sending "
               "(allocated as its bytes arrive) and the answers it has not finished. Past it "
               "the connection is closed. At least --max-message."},
      {.name = "max-uid-memory", .metavar = "SIZE", .type = FlagType::kSize,
       .u64 = &C::max_uid_memory, .min = 1 * kMiB, .max = 1024 * kGiB, .default_text = "1GiB",
       .help = "The same for all connections of one peer uid together."},
      {.name = "max-questions", .metavar = "N", .type = FlagType::kU32, .u32 = &C::max_questions,
       .min = 1, .max = 1u << 20, .default_text = "1024",
       .help = "Most calls one connection may have unfinished (answered or not, until the "
               "client's Finish), 1..1048576; past it the connection is closed."},
      {.name = "max-leases", .metavar = "N", .type = FlagType::kU32, .u32 = &C::max_leases,
       .min = 1, .max = 1u << 30, .default_text = "4096",
       .help = "Most leases (pinned prefixes) one connection may hold; acquire past it fails "
               "with ResourceExhausted."},
      {.name = "max-uid-leases", .metavar = "N", .type = FlagType::kU32,
       .u32 = &C::max_uid_leases, .min = 1, .max = 1u << 30, .default_text = "16384",
       .help = "Most leases all connections of one peer uid may hold together."},
      {.name = "max-txns", .metavar = "N", .type = FlagType::kU32, .u32 = &C::max_txns, .min = 1,
       .max = 1u << 30, .default_text = "1024",
       .help = "Most write transactions one connection may hold uncommitted; reserve past it "
               "fails with ResourceExhausted."},
      {.name = "max-uid-txns", .metavar = "N", .type = FlagType::kU32, .u32 = &C::max_uid_txns,
       .min = 1, .max = 1u << 30, .default_text = "4096",
       .help = "Most uncommitted write transactions of one peer uid."},
      {.name = "max-uncommitted-blocks", .metavar = "N", .type = FlagType::kU32,
       .u32 = &C::max_uncommitted_blocks, .min = 1, .max = 1u << 30, .default_text = "65536",
       .help = "Most blocks one connection may hold reserved and uncommitted (a reserve "
               "counts each of its keys until it is answered)."},
      {.name = "max-uid-uncommitted-blocks", .metavar = "N", .type = FlagType::kU32,
       .u32 = &C::max_uid_uncommitted_blocks, .min = 1, .max = 1u << 30,
       .default_text = "262144",
       .help = "Most reserved, uncommitted blocks of one peer uid."},
      {.name = "max-priority-ranges", .metavar = "N", .type = FlagType::kU32,
       .u32 = &C::max_priority_ranges, .min = 1, .max = 1u << 20, .default_text = "256",
       .help = "Most priority ranges in one reserve; more are refused (InvalidArgument)."},
      {.name = "max-unread-answers", .metavar = "SIZE", .type = FlagType::kSize,
       .u64 = &C::max_unread_answers, .min = 64 * kKiB, .max = 4 * kGiB, .default_text = "4MiB",
       .help = "Unsent answers of one connection above which its further calls are not read "
               "until the client reads (backpressure)."},
      {.name = "handshake-timeout", .metavar = "SECONDS", .type = FlagType::kU32,
       .u32 = &C::handshake_timeout_seconds, .min = 0, .max = 86400, .default_text = "10",
       .help = "Close a connection that has not sent a whole first message within this long; "
               "0: never."},
      {.name = "io-timeout", .metavar = "SECONDS", .type = FlagType::kU32,
       .u32 = &C::io_timeout_seconds, .min = 0, .max = 86400, .default_text = "30",
       .help = "Close a connection that has begun a message and not finished it, or left its "
               "answers unread, for this long; 0: never."},
      {.name = "idle-timeout", .metavar = "SECONDS", .type = FlagType::kU32,
       .u32 = &C::idle_timeout_seconds, .min = 0, .max = 100000000, .default_text = "300",
       .help = "Close a connection that holds no namespace, lease or transaction and has been "
               "silent this long; 0: never."},
      {.name = "admin-max-connections", .metavar = "N", .type = FlagType::kU32,
       .u32 = &C::admin_max_connections, .min = 1, .max = 4096, .default_text = "32",
       .help = "Admin HTTP connections served at once, 1..4096; more are answered 503 at once. "
               "/healthz and /readyz have 4 more of their own."},
      {.name = "admin-timeout", .metavar = "SECONDS", .type = FlagType::kU32,
       .u32 = &C::admin_timeout_seconds, .min = 1, .max = 3600, .default_text = "5",
       .help = "Time an admin client has to send its whole request (and to read the answer), "
               "1..3600."},
      {.name = "drain-timeout", .metavar = "SECONDS", .type = FlagType::kU32,
       .u32 = &C::drain_timeout_seconds, .min = 0, .max = 3600, .default_text = "10",
       .help = "On SIGTERM, refuse new leases and stores and wait up to this long, 0..3600, "
               "for clients to release their leases and commit their stores before exiting."},
      {.name = "namespace-idle", .metavar = "SECONDS", .type = FlagType::kU32,
       .u32 = &C::namespace_idle_seconds, .min = 0, .max = 100000000, .default_text = "600",
       .help = "Forget a namespace that has had no block in any tier and no client for this "
               "long (its id may then be reused); 0 keeps every namespace for ever."},
      {.name = "hbm-capacity", .metavar = "SIZE", .type = FlagType::kSize,
       .u64 = &C::hbm_capacity_bytes, .min = 0, .max = 1024 * kGiB, .default_text = "0 (off)",
       .help = "GPU memory for the HBM tier on each of --gpus, shared with engines by CUDA "
               "IPC; 0 turns the tier off."},
      {.name = "gpus", .metavar = "LIST", .type = FlagType::kString, .str = &C::gpus,
       .check = CheckGpus, .default_text = "0",
       .help = "CUDA devices that get an HBM tier each, comma-separated (e.g. 0,1,2,3)."},
      {.name = "store-tier", .metavar = "TIER", .type = FlagType::kString, .str = &C::store_tier,
       .check = CheckStoreTier, .default_text = "host",
       .help = "Where fresh stores land: host, or hbm (blocks evicted from HBM move down to "
               "the host tier)."},
      {.name = "promote-to-hbm-hits", .metavar = "N", .type = FlagType::kU32,
       .u32 = &C::promote_to_hbm_hits, .min = 0, .max = 1u << 30, .default_text = "0 (never)",
       .help = "Move a host block up to the HBM tier once it was hit N times (background, "
               "on the daemon's CUDA stream); 0 never does."},
      {.name = "nvme-path", .metavar = "PATH", .type = FlagType::kString, .str = &C::nvme_path,
       .default_text = "<data-dir>/nvme.dat",
       .help = "File or block device of the NVMe tier."},
      {.name = "nvme-capacity", .metavar = "SIZE", .type = FlagType::kSize,
       .u64 = &C::nvme_capacity_bytes, .min = 0, .max = 1024 * kTiB, .default_text = "0 (off)",
       .help = "Size of the NVMe tier; 0 turns the tier off, otherwise at least 65MiB (a 1MiB "
               "header and one 64MiB region). The tier uses whole 64MiB regions after the "
               "header; the rest of a larger size is unused, and the start-up log says how much."},
      {.name = "nvme-queue-depth", .metavar = "N", .type = FlagType::kU32,
       .u32 = &C::nvme_queue_depth, .min = 1, .max = 4096, .default_text = "256",
       .help = "io_uring queue depth of the NVMe tier, 1..4096."},
      {.name = "nvme-write-policy", .metavar = "POLICY", .type = FlagType::kString,
       .str = &C::nvme_write_policy, .check = CheckWritePolicy, .default_text = "write-back",
       .help = "write-back (cold host blocks are written to NVMe in the background, so "
               "they live on there when the host tier evicts them; a graceful stop flushes "
               "host-only blocks), write-through (every block is written to NVMe at commit, "
               "and a commit answers once its blocks and their index records are durable) "
               "or write-async (written at commit, the commit answers at once)."},
      {.name = "nvme-flush-timeout", .metavar = "SECONDS", .type = FlagType::kU32,
       .u32 = &C::nvme_flush_timeout_seconds, .min = 0, .max = 3600, .default_text = "30",
       .help = "write-back: on SIGTERM, after the drain, write host blocks that have no NVMe "
               "copy to NVMe for up to this long, 0..3600 (0: no flush)."},
      {.name = "nvme-policy", .metavar = "NAME", .type = FlagType::kString,
       .str = &C::nvme_policy, .check = CheckPolicy, .default_text = "lru",
       .help = "Eviction policy of the NVMe tier: lru, priority-lru, prefix-lru, s3fifo, "
               "adaptive-2q."},
      {.name = "nvme-admission", .metavar = "NAME", .type = FlagType::kString,
       .str = &C::nvme_admission, .check = CheckAdmission, .default_text = "always",
       .help = "Which blocks may be written to NVMe: always, or second-sighting (only "
               "blocks considered a second time, after a hit)."},
      {.name = "nvme-rebuild-rate", .metavar = "SIZE", .type = FlagType::kSize,
       .u64 = &C::nvme_rebuild_rate_bytes, .min = 0, .max = 1024 * kGiB,
       .default_text = "0 (unlimited)",
       .help = "Read bandwidth per second of an NVMe index rebuild (a damaged index is set "
               "aside and rebuilt from the extents' headers at start); 0: as fast as the "
               "device reads."},
      {.name = "nvme-fault-inject", .metavar = "SPEC", .type = FlagType::kString,
       .str = &C::nvme_fault_inject, .check = CheckFaultSpec, .default_text = "none",
       .help = "Testing only: fail NVMe I/O at random, e.g. read-eio=0.01,write-enospc=0.005 "
               "(kinds read-eio, write-eio, write-enospc, read-short, read-flip, each with a "
               "probability per operation); what kvtier-crash-test --inject-faults runs the "
               "daemon with. Never in production."},
      {.name = "tenant", .metavar = "NAME=RULES", .type = FlagType::kList, .list = &C::tenants,
       .default_text = "none (one tenant: every connection)",
       .help = "A tenant (repeat the flag, one per tenant): RULES are comma-separated uid:N, "
               "gid:N (the peer's primary group), token-sha256:HEX (the SHA-256 of a token the "
               "client gives when it opens a namespace), host:SIZE (its host segment), hbm:SIZE "
               "(its HBM arena per GPU), nvme:SIZE (most bytes of its blocks on NVMe), e.g. "
               "alice=uid:1000,host:8G. A tenant's blocks live in memory only its own "
               "connections are handed; a connection that matches no tenant is refused. Host "
               "and HBM capacity without an explicit share is split evenly. See "
               "docs/security.md."},
      {.name = "data-group", .metavar = "GROUP", .type = FlagType::kString,
       .str = &C::data_group, .check = CheckGroup, .default_text = "none (owner only)",
       .help = "A group (name or gid) that may read the data dir (mode 2750, files 0640) and, "
               "without tenants, connect to the socket (0660). Without it the data dir is 0700, "
               "its files 0600 and the socket 0600 (0666 with tenants: the daemon tells them "
               "apart by their credentials)."},
      {.name = "verify-checksums", .metavar = "WHEN", .type = FlagType::kString,
       .str = &C::verify_checksums, .check = CheckVerify, .default_text = "spill",
       .help = "When the daemon checks each block's committed checksum against its bytes: "
               "spill (before its first NVMe write, off the RPC path) or commit (also at "
               "commit for host-tier blocks, so that a block committed with a wrong checksum "
               "is never served; costs one pass over the bytes per commit). A mismatch is the "
               "client's fault: the block is dropped and counted in "
               "kvtier_client_checksum_mismatch_total, never reported as NVMe corruption."},
      {.name = "config", .metavar = "FILE", .type = FlagType::kConfig, .default_text = "none",
       .help = "Read settings from FILE first; flags override them (see below)."},
      {.name = "help", .metavar = "", .type = FlagType::kHelp, .default_text = "",
       .help = "Print this text and exit."},
      {.name = "version", .metavar = "", .type = FlagType::kVersion, .default_text = "",
       .help = "Print the version and exit."},
  };
  return kFlags;
}

const FlagSpec* FindFlag(std::string_view name) {
  for (const auto& f : Flags())
    if (f.name == name) return &f;
  return nullptr;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

Result<uint64_t> ParseUnsigned(std::string_view s) {
  if (s.empty()) return Status::InvalidArgument("not a number (empty)");
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return Status::InvalidArgument("not a whole number");
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return Status::InvalidArgument("number too large");
    v = v * 10 + d;
  }
  return v;
}

Result<bool> ParseBool(std::string_view s) {
  if (s == "true" || s == "1" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "0" || s == "no" || s == "off") return false;
  return Status::InvalidArgument("not a boolean (true, false, 1, 0, yes, no, on, off)");
}

std::string RangeText(const FlagSpec& f) {
  if (f.type == FlagType::kSize) return FormatSize(f.min) + ".." + FormatSize(f.max);
  return std::to_string(f.min) + ".." + std::to_string(f.max);
}

// Sets the field of `f` from `value`. Errors carry the reason only; the caller
// says where the value came from.
Status ApplyValue(const FlagSpec& f, std::string_view value, DaemonConfig* c) {
  switch (f.type) {
    case FlagType::kString:
      if (f.check) KVTIER_RETURN_IF_ERROR(f.check(value));
      c->*f.str = std::string(value);
      return Status::OK();
    case FlagType::kSize: {
      auto v = ParseSize(value);
      if (!v.ok()) return v.status();
      if (*v < f.min || *v > f.max)
        return Status::InvalidArgument("out of range " + RangeText(f));
      c->*f.u64 = *v;
      return Status::OK();
    }
    case FlagType::kU32: {
      auto v = ParseUnsigned(value);
      if (!v.ok()) return v.status();
      if (*v < f.min || *v > f.max)
        return Status::InvalidArgument("out of range " + RangeText(f));
      c->*f.u32 = static_cast<uint32_t>(*v);
      return Status::OK();
    }
    case FlagType::kBool: {
      auto v = ParseBool(value);
      if (!v.ok()) return v.status();
      c->*f.boolean = *v;
      return Status::OK();
    }
    case FlagType::kList:
      if (value.empty()) return Status::InvalidArgument("must not be empty");
      (c->*f.list).push_back(std::string(value));
      return Status::OK();
    case FlagType::kConfig:
    case FlagType::kHelp:
    case FlagType::kVersion:
      break;
  }
  return Status::Internal("flag without a field");
}

std::string Quote(std::string_view v) { return "'" + std::string(v) + "'"; }

Status ApplyConfigFile(const std::string& path, DaemonConfig* c) {
  std::ifstream in(path);
  if (!in) {
    return Status::InvalidArgument("--config " + Quote(path) +
                                   ": cannot read: " + std::strerror(errno));
  }
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = path + ":" + std::to_string(lineno) + ": ";
    std::string_view s = Trim(line);
    if (s.empty() || s.front() == '#') continue;
    size_t eq = s.find('=');
    if (eq == std::string_view::npos)
      return Status::InvalidArgument(where + "expected 'key = value', got " + Quote(s));
    std::string key(Trim(s.substr(0, eq)));
    std::replace(key.begin(), key.end(), '_', '-');
    std::string_view value = Trim(s.substr(eq + 1));
    if (!value.empty() && value.front() == '"') {
      // Quoted: the text up to the closing quote, taken as is; after it only
      // a comment may follow (so `"/srv/kv" # data` is /srv/kv, not a path
      // that keeps its quotes).
      const size_t close = value.find('"', 1);
      if (close == std::string_view::npos)
        return Status::InvalidArgument(where + "unterminated quote in " + Quote(value));
      std::string_view rest = Trim(value.substr(close + 1));
      if (!rest.empty() && rest.front() != '#')
        return Status::InvalidArgument(where + "text after the closing quote: " + Quote(rest));
      value = value.substr(1, close - 1);
    } else {
      // A '#' after whitespace starts a comment.
      for (size_t i = 1; i < value.size(); ++i) {
        if (value[i] == '#' && (value[i - 1] == ' ' || value[i - 1] == '\t')) {
          value = Trim(value.substr(0, i));
          break;
        }
      }
    }
    const FlagSpec* f = FindFlag(key);
    if (f == nullptr || f->type == FlagType::kConfig || f->type == FlagType::kHelp ||
        f->type == FlagType::kVersion) {
      return Status::InvalidArgument(where + "unknown key " + Quote(key));
    }
    Status st = ApplyValue(*f, value, c);
    if (!st.ok())
      return Status::InvalidArgument(where + std::string(f->name) + " = " + Quote(value) + ": " +
                                     st.message());
  }
  if (in.bad()) {
    return Status::InvalidArgument("--config " + Quote(path) + ": read failed after line " +
                                   std::to_string(lineno));
  }
  return Status::OK();
}

// An exact text of `bytes`: FormatSize() when it is exact ("1.5GiB"), else a
// whole number of the largest unit that divides it ("5824MiB"), else bytes.
std::string ExactSize(uint64_t bytes) {
  std::string f = FormatSize(bytes);
  auto back = ParseSize(f);
  if (back.ok() && *back == bytes) return f;
  for (auto [unit, name] : {std::pair{kTiB, "TiB"}, {kGiB, "GiB"}, {kMiB, "MiB"}, {kKiB, "KiB"}}) {
    if (bytes % unit == 0) return std::to_string(bytes / unit) + name;
  }
  return std::to_string(bytes);
}

std::string JoinPath(const std::string& dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  if (dir.back() == '/') return dir + std::string(name);
  return dir + "/" + std::string(name);
}

// `text` as lines of at most `width` columns (words permitting); lines after
// the first are indented by `indent`; the caller has written the first
// line's indent. Ends with a newline.
std::string Wrap(std::string_view text, size_t indent, size_t width) {
  std::string out;
  size_t col = indent;
  bool first_word = true;
  while (!text.empty()) {
    size_t sp = text.find(' ');
    std::string_view word = text.substr(0, sp);
    text = sp == std::string_view::npos ? std::string_view() : text.substr(sp + 1);
    if (word.empty()) continue;
    if (!first_word && col + 1 + word.size() > width) {
      out += '\n';
      out.append(indent, ' ');
      col = indent;
      first_word = true;
    }
    if (!first_word) {
      out += ' ';
      ++col;
    }
    out += word;
    col += word.size();
    first_word = false;
  }
  return out + "\n";
}

}  // namespace

std::string_view KvtierVersion() { return KVTIER_VERSION_STRING; }

std::string DaemonVersion() { return "kvtier " + std::string(KvtierVersion()); }

Result<std::vector<int>> ParseGpuList(std::string_view text) {
  std::vector<int> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view item = text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    int v = 0;
    if (item.empty() || item.size() > 4) return Status::InvalidArgument("GPU list '" + std::string(text) + "' is not like 0,1,2");
    for (char c : item) {
      if (c < '0' || c > '9') return Status::InvalidArgument("GPU list '" + std::string(text) + "' is not like 0,1,2");
      v = v * 10 + (c - '0');
    }
    if (v > 1023) return Status::InvalidArgument("GPU " + std::to_string(v) + " is out of range 0..1023");
    if (std::find(out.begin(), out.end(), v) != out.end())
      return Status::InvalidArgument("GPU " + std::to_string(v) + " is listed twice");
    out.push_back(v);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

Result<uint64_t> ParseSize(std::string_view text) {
  const std::string bad = Quote(text) +
                          " is not a size (bytes, or a number with K, M, G or T, "
                          "e.g. 8G, 512MiB, 1.5g)";
  size_t i = 0;
  uint64_t whole = 0;
  size_t whole_digits = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (whole > (UINT64_MAX - d) / 10) return Status::InvalidArgument(Quote(text) + " is too large");
    whole = whole * 10 + d;
    ++i;
    ++whole_digits;
  }
  if (whole_digits == 0) return Status::InvalidArgument(bad);
  unsigned __int128 frac = 0, frac_den = 1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (digits < 18) {
        frac = frac * 10 + static_cast<unsigned>(text[i] - '0');
        frac_den *= 10;
      } else if (text[i] != '0') {
        return Status::InvalidArgument(Quote(text) + " has too many decimals");
      }
      ++i;
      ++digits;
    }
    if (digits == 0) return Status::InvalidArgument(bad);
  }
  std::string unit;
  for (; i < text.size(); ++i) {
    char ch = text[i];
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    unit.push_back(ch);
  }
  uint64_t mult = 0;
  if (unit.empty() || unit == "b") {
    mult = 1;
  } else {
    switch (unit[0]) {
      case 'k': mult = kKiB; break;
      case 'm': mult = kMiB; break;
      case 'g': mult = kGiB; break;
      case 't': mult = kTiB; break;
      default: return Status::InvalidArgument(bad);
    }
    std::string_view rest = std::string_view(unit).substr(1);
    if (!(rest.empty() || rest == "b" || rest == "ib")) return Status::InvalidArgument(bad);
  }
  unsigned __int128 total = static_cast<unsigned __int128>(whole) * mult;
  unsigned __int128 frac_bytes = frac * mult;
  if (frac_bytes % frac_den != 0)
    return Status::InvalidArgument(Quote(text) + " is not a whole number of bytes");
  total += frac_bytes / frac_den;
  if (total > UINT64_MAX) return Status::InvalidArgument(Quote(text) + " is too large");
  return static_cast<uint64_t>(total);
}

std::string FormatSize(uint64_t bytes) {
  static constexpr struct {
    uint64_t unit;
    const char* name;
  } kUnits[] = {{kTiB, "TiB"}, {kGiB, "GiB"}, {kMiB, "MiB"}, {kKiB, "KiB"}};
  for (const auto& u : kUnits) {
    if (bytes < u.unit) continue;
    // Hundredths, rounded to nearest.
    unsigned __int128 h = (static_cast<unsigned __int128>(bytes) * 100 + u.unit / 2) / u.unit;
    uint64_t whole = static_cast<uint64_t>(h / 100);
    unsigned cents = static_cast<unsigned>(h % 100);
    std::string s = std::to_string(whole);
    if (cents != 0) {
      s += '.';
      s += static_cast<char>('0' + cents / 10);
      if (cents % 10 != 0) s += static_cast<char>('0' + cents % 10);
    }
    return s + u.name;
  }
  return std::to_string(bytes) + "B";
}

Result<HostPort> ParseHostPort(std::string_view address) {
  const std::string bad = Quote(address) + " is not HOST:PORT (e.g. 127.0.0.1:9477, [::1]:9477)";
  HostPort hp;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return Status::InvalidArgument(bad);
    }
    hp.host = std::string(address.substr(1, close - 1));
    port = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return Status::InvalidArgument(bad);
    hp.host = std::string(address.substr(0, colon));
    if (hp.host.find(':') != std::string::npos)
      return Status::InvalidArgument(Quote(address) + ": put an IPv6 address in brackets, "
                                                      "e.g. [::1]:9477");
    port = address.substr(colon + 1);
  }
  if (hp.host.empty())
    return Status::InvalidArgument(Quote(address) + ": host is missing (0.0.0.0 listens on all "
                                                    "interfaces)");
  auto p = ParseUnsigned(port);
  if (!p.ok() || *p > 65535)
    return Status::InvalidArgument(Quote(address) + ": port must be a number 0..65535");
  hp.port = static_cast<int>(*p);
  return hp;
}

SystemInfo ReadSystemInfo() {
  SystemInfo sys;
  if (const char* d = std::getenv("XDG_RUNTIME_DIR"); d != nullptr && *d != '\0') {
    if (access(d, W_OK | X_OK) == 0) sys.runtime_dir = d;
  }
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t value = 0;
  std::string unit;
  while (meminfo >> key >> value) {
    std::getline(meminfo, unit);
    if (key == "MemAvailable:") {
      sys.mem_available_bytes = Trim(unit) == "kB" ? value * kKiB : value;
      break;
    }
  }
  sys.hardware_threads = std::thread::hardware_concurrency();
  return sys;
}

uint64_t DefaultHostCapacity(uint64_t mem_available_bytes, uint64_t region_bytes) {
  uint64_t avail = mem_available_bytes != 0 ? mem_available_bytes : kGiB;
  uint64_t cap = std::clamp<uint64_t>(avail / 4, 256 * kMiB, 64 * kGiB);
  if (region_bytes == 0) return cap;
  cap -= cap % region_bytes;
  return std::max(cap, region_bytes);
}

void ResolveDefaults(const SystemInfo& sys, DaemonConfig* c) {
  if (c->socket_path.empty()) {
    c->socket_path = sys.runtime_dir ? JoinPath(*sys.runtime_dir, "kvtier.sock")
                                     : JoinPath(c->data_dir, "kvtier.sock");
  }
  if (c->host_capacity_bytes == 0) {
    c->host_capacity_bytes = DefaultHostCapacity(sys.mem_available_bytes, c->host_region_bytes);
  } else if (c->host_region_bytes != 0 && c->host_capacity_bytes >= c->host_region_bytes) {
    c->host_capacity_bytes -= c->host_capacity_bytes % c->host_region_bytes;
  }
  if (c->rpc_threads == 0) {
    c->rpc_threads = sys.hardware_threads == 0 ? 4 : std::min(4u, sys.hardware_threads);
  }
  if (c->nvme_path.empty()) c->nvme_path = JoinPath(c->data_dir, "nvme.dat");
}

Status DaemonConfig::Validate() const {
  auto bad = [](std::string_view flag, const std::string& value, const std::string& why) {
    return Status::InvalidArgument("--" + std::string(flag) + " " + Quote(value) + ": " + why);
  };
  // String settings and numeric ranges, as the parser checks them.
  for (const auto& f : Flags()) {
    switch (f.type) {
      case FlagType::kString:
        if (f.check) {
          Status st = f.check(this->*f.str);
          if (!st.ok()) return bad(f.name, this->*f.str, st.message());
        }
        break;
      case FlagType::kSize:
        if (this->*f.u64 < f.min || this->*f.u64 > f.max)
          return bad(f.name, ExactSize(this->*f.u64), "out of range " + RangeText(f));
        break;
      case FlagType::kU32:
        if (this->*f.u32 < f.min || this->*f.u32 > f.max)
          return bad(f.name, std::to_string(this->*f.u32), "out of range " + RangeText(f));
        break;
      default:
        break;
    }
  }
  if (host_region_bytes % (4 * kKiB) != 0)
    return bad("host-region", ExactSize(host_region_bytes), "must be a multiple of 4KiB");
  if (host_capacity_bytes < host_region_bytes)
    return bad("host-capacity", ExactSize(host_capacity_bytes),
               "smaller than one region (--host-region " + FormatSize(host_region_bytes) + ")");
  if (max_message_bytes < uint64_t{max_keys_per_call} * kBytesPerKeyInMessage)
    return bad("max-message", ExactSize(max_message_bytes),
               "too small for --max-keys " + std::to_string(max_keys_per_call) + " (needs " +
                   std::to_string(kBytesPerKeyInMessage) + " bytes per key, " +
                   FormatSize(uint64_t{max_keys_per_call} * kBytesPerKeyInMessage) + ")");
  if (max_connection_memory < max_message_bytes)
    return bad("max-connection-memory", ExactSize(max_connection_memory),
               "smaller than --max-message " + FormatSize(max_message_bytes) +
                   " (a connection must be able to send its largest message)");
  if (max_uid_memory < max_connection_memory)
    return bad("max-uid-memory", ExactSize(max_uid_memory),
               "smaller than --max-connection-memory " + FormatSize(max_connection_memory));
  if (promote_to_hbm_hits > 0 && hbm_capacity_bytes == 0)
    return bad("promote-to-hbm-hits", std::to_string(promote_to_hbm_hits),
               "needs an HBM tier (--hbm-capacity)");
  if (store_tier == "hbm" && hbm_capacity_bytes == 0)
    return bad("store-tier", store_tier, "needs an HBM tier (--hbm-capacity)");
  if (nvme_capacity_bytes != 0 && nvme_capacity_bytes < kNvmeMinCapacity)
    return bad("nvme-capacity", ExactSize(nvme_capacity_bytes),
               "must be 0 (off) or at least 65MiB (a 1MiB header and one 64MiB region)");
  if (nvme_capacity_bytes != 0 && nvme_path.empty())
    return bad("nvme-path", nvme_path, "must not be empty when the NVMe tier is on");
  auto ts = ParseTenants(tenants);
  if (!ts.ok()) return Status::InvalidArgument("--tenant: " + ts.status().message());
  if (!ts->empty()) {
    std::vector<uint64_t> host, hbm;
    for (const auto& t : *ts) {
      host.push_back(t.host_bytes);
      hbm.push_back(t.hbm_bytes);
    }
    auto h = SplitShares(host, host_capacity_bytes, host_region_bytes, "host");
    if (!h.ok()) return Status::InvalidArgument("--tenant: " + h.status().message());
    if (hbm_capacity_bytes > 0) {
      auto g = SplitShares(hbm, hbm_capacity_bytes, host_region_bytes, "HBM");
      if (!g.ok()) return Status::InvalidArgument("--tenant: " + g.status().message());
    }
  }
  return Status::OK();
}

std::string DaemonConfig::ToString() const {
  std::ostringstream o;
  o << "socket=" << socket_path << " data_dir=" << data_dir
    << " host_capacity=" << ExactSize(host_capacity_bytes)
    << " host_region=" << ExactSize(host_region_bytes) << " host_numa=" << host_numa
    << " host_policy=" << host_policy
    << " host_shm_path=" << (host_shm_path.empty() ? "(anonymous)" : host_shm_path)
    << " admin=" << admin_address << " log_level=" << log_level
    << " log_json=" << (log_json ? "true" : "false") << " rpc_threads=" << rpc_threads
    << " max_keys=" << max_keys_per_call << " max_message=" << ExactSize(max_message_bytes)
    << " max_connections=" << max_connections
    << " max_connections_per_uid=" << max_connections_per_uid
    << " max_connection_memory=" << ExactSize(max_connection_memory)
    << " max_uid_memory=" << ExactSize(max_uid_memory) << " max_questions=" << max_questions
    << " max_leases=" << max_leases << "/" << max_uid_leases << " max_txns=" << max_txns << "/"
    << max_uid_txns << " max_uncommitted_blocks=" << max_uncommitted_blocks << "/"
    << max_uid_uncommitted_blocks << " max_priority_ranges=" << max_priority_ranges
    << " max_unread_answers=" << ExactSize(max_unread_answers)
    << " timeouts=" << handshake_timeout_seconds << "/" << io_timeout_seconds << "/"
    << idle_timeout_seconds << "s admin_max_connections=" << admin_max_connections
    << " admin_timeout=" << admin_timeout_seconds << "s drain_timeout=" << drain_timeout_seconds
    << "s hbm_capacity=" << ExactSize(hbm_capacity_bytes)
    << " gpus=" << gpus << " store_tier=" << store_tier
    << " promote_to_hbm_hits=" << promote_to_hbm_hits;
  if (nvme_capacity_bytes == 0) {
    o << " nvme=off";
  } else {
    o << " nvme_path=" << nvme_path << " nvme_capacity=" << ExactSize(nvme_capacity_bytes)
      << " nvme_queue_depth=" << nvme_queue_depth << " nvme_write_policy=" << nvme_write_policy
      << " nvme_policy=" << nvme_policy << " nvme_admission=" << nvme_admission
      << " nvme_rebuild_rate=" << ExactSize(nvme_rebuild_rate_bytes)
      << " nvme_flush_timeout=" << nvme_flush_timeout_seconds;
  }
  if (!config_file.empty()) o << " config=" << config_file;
  o << " tenants=" << tenants.size() << " data_group=" << (data_group.empty() ? "(none)" : data_group)
    << " verify_checksums=" << verify_checksums;
  return o.str();
}

Result<DaemonConfig> ParseDaemonConfig(int argc, const char* const* argv) {
  return ParseDaemonConfig(argc, argv, ReadSystemInfo());
}

Result<DaemonConfig> ParseDaemonConfig(int argc, const char* const* argv, const SystemInfo& sys) {
  DaemonConfig c;
  auto fail = [](std::string msg) { return Status::InvalidArgument(msg + " (see --help)"); };
  // --help and --version win wherever they are, whatever else is wrong.
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i] != nullptr ? argv[i] : "";
    if (arg == "-h" || arg == "--help") c.show_help = true;
    if (arg == "--version") c.show_version = true;
  }
  if (c.show_help || c.show_version) return c;

  // CLI11 splits the command line (--flag VALUE, --flag=VALUE, bare
  // booleans); every value is kept as text and set through ApplyValue, the
  // same code the config file goes through, so both report the same errors.
  CLI::App app("kvtierd", "kvtierd");
  app.set_help_flag();
  app.allow_extras();
  std::vector<std::pair<const FlagSpec*, CLI::Option*>> options;
  for (const FlagSpec& f : Flags()) {
    const std::string name = "--" + std::string(f.name);
    // Every occurrence is kept (a flag given twice keeps its last value).
    CLI::Option* o = f.type == FlagType::kBool ? app.add_flag(name) : app.add_option(name)->expected(1);
    // --help / --version only get here as --help=X (the bare forms returned above).
    options.emplace_back(&f, o->multi_option_policy(CLI::MultiOptionPolicy::TakeAll));
  }
  // A value-taking flag followed by nothing or by another flag: CLI11 would
  // take the next flag as the value; a value starting with "--" needs `=`.
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i] != nullptr ? argv[i] : "";
    if (arg.substr(0, 2) != "--" || arg.find('=') != std::string_view::npos) continue;
    const FlagSpec* f = FindFlag(arg.substr(2));
    if (f == nullptr || f->metavar.empty()) continue;
    if (i + 1 >= argc || std::string_view(argv[i + 1]).substr(0, 2) == "--")
      return fail(std::string(arg) + ": missing value (" + std::string(f->metavar) + ")");
    ++i;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return fail(e.what());
  }
  for (const std::string& extra : app.remaining()) {
    std::string_view x = extra;
    if (x.substr(0, 2) != "--" || x.size() < 3)
      return fail("unexpected argument " + Quote(x) + ": flags start with --");
    const FlagSpec* f = FindFlag(x.substr(2, x.find('=') - 2));
    if (f != nullptr && (f->type == FlagType::kHelp || f->type == FlagType::kVersion))
      return fail("--" + std::string(f->name) + " takes no value");
    return fail("unknown flag " + std::string(x.substr(0, x.find('='))));
  }
  for (const auto& [f, o] : options) {
    if ((f->type == FlagType::kHelp || f->type == FlagType::kVersion) && o->count() > 0)
      return fail("--" + std::string(f->name) + " takes no value");
  }

  // The config file first, whatever its position; the last --config counts.
  for (const auto& [f, o] : options) {
    if (f->type == FlagType::kConfig && o->count() > 0) c.config_file = o->results().back();
  }
  if (!c.config_file.empty()) {
    KVTIER_RETURN_IF_ERROR(ApplyConfigFile(c.config_file, &c));
  }
  // Then the flags; a flag given twice keeps its last value (a list flag:
  // its values replace the file's).
  for (const auto& [f, o] : options) {
    if (f->type == FlagType::kConfig || o->count() == 0) continue;
    if (f->type == FlagType::kList) (c.*f->list).clear();
    for (const std::string& value : o->results()) {
      Status st = ApplyValue(*f, value, &c);
      if (!st.ok())
        return Status::InvalidArgument("--" + std::string(f->name) + " " + Quote(value) + ": " +
                                       st.message());
    }
  }
  ResolveDefaults(sys, &c);
  KVTIER_RETURN_IF_ERROR(c.Validate());
  return c;
}

std::string DaemonHelpText() {
  std::ostringstream o;
  o << "Usage: kvtierd [FLAGS]\n"
       "\n"
       "kvtierd keeps KV-cache blocks of LLM inference engines in tiers (GPU HBM when\n"
       "--hbm-capacity is set, pinned host memory, NVMe when --nvme-capacity is set) and\n"
       "serves them over Cap'n Proto RPC on a Unix socket. With no flags it runs on the\n"
       "defaults below: a host tier only.\n"
       "\n"
       "Flags (--flag VALUE or --flag=VALUE):\n";
  for (const auto& f : Flags()) {
    std::string head = "  --" + std::string(f.name);
    if (!f.metavar.empty()) head += " " + std::string(f.metavar);
    if (f.type == FlagType::kHelp) head += ", -h";
    o << head;
    if (head.size() < 30) {
      o << std::string(30 - head.size(), ' ');
    } else {
      o << "\n" << std::string(30, ' ');
    }
    o << Wrap(f.help, 30, 80);
    if (!f.default_text.empty())
      o << std::string(30, ' ') << Wrap("default: " + std::string(f.default_text), 30, 80);
  }
  o << "\n"
       "SIZE is a number of bytes, or a number with a unit K, M, G or T (powers of two:\n"
       "KiB, MiB, GiB, TiB), case-insensitive, optionally followed by \"iB\" or \"B\":\n"
       "8G, 8GiB, 8gb, 512MiB, 65536. A fraction is allowed when the result is a whole\n"
       "number of bytes: 1.5G is 1610612736 bytes; 1.5 and 0.1K are rejected.\n"
       "A value that starts with \"--\" must be written --flag=VALUE.\n"
       "\n"
       "Config file (--config FILE): one setting per line as `key = value`, where key is\n"
       "a flag name without the dashes (\"_\" may stand for \"-\"). Blank lines and lines\n"
       "starting with '#' are ignored; \" #\" after a value starts a comment; a value in\n"
       "double quotes is taken as is, and a comment may follow its closing quote.\n"
       "log-json takes true/false (also 1/0, yes/no, on/off). tenant may be given on\n"
       "several lines, one tenant each (flags --tenant replace them all). config, help\n"
       "and version are not keys. Example:\n"
       "\n"
       "  # /etc/kvtier/kvtierd.conf\n"
       "  socket = /run/kvtier/kvtier.sock\n"
       "  host-capacity = 32G\n"
       "  admin = 0.0.0.0:9477\n"
       "  log-json = true\n"
       "\n"
       "Precedence: defaults, then the config file, then flags (whatever their order).\n";
  return o.str();
}

}  // namespace kvtier
