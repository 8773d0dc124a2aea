// DaemonConfig: every setting of kvtierd, its defaults, and the parser of the
// command line and the config file.
//
// Precedence: built-in defaults < config file (--config FILE) < command-line
// flags, whatever the order of the flags. Defaults that depend on the machine
// (socket path, host capacity, RPC threads, NVMe path) are resolved after
// parsing from a SystemInfo, so tests can pin them.
//
// Ownership: plain values. Thread safety: functions here are pure except
// ReadSystemInfo() (reads the environment and /proc/meminfo) and
// ParseDaemonConfig() (calls it, and reads the config file).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tiers/status.h"

namespace kvtier {

inline constexpr uint64_t kKiB = 1ull << 10;
inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint64_t kGiB = 1ull << 30;
inline constexpr uint64_t kTiB = 1ull << 40;
// The NVMe tier's geometry as the daemon sets it up: a 1MiB header, then whole
// regions of kNvmeRegionBytes (tiers/nvme_format.h, NvmeStoreOptions).
inline constexpr uint64_t kNvmeRegionBytes = 64 * kMiB;
inline constexpr uint64_t kNvmeMinCapacity = kMiB + kNvmeRegionBytes;
// Bytes of an NVMe capacity the tier uses: the header and whole regions.
inline uint64_t NvmeUsableBytes(uint64_t capacity) {
  return capacity < kNvmeMinCapacity
             ? 0
             : kMiB + (capacity - kMiB) / kNvmeRegionBytes * kNvmeRegionBytes;
}

struct DaemonConfig {
  // Unix socket the RPC service listens on. Empty until resolved; the default
  // is $XDG_RUNTIME_DIR/kvtier.sock when XDG_RUNTIME_DIR is set and writable,
  // else <data_dir>/kvtier.sock. At most 107 bytes (sun_path).
  std::string socket_path;
  // Directory of the daemon's files (NVMe tier file, its index, maybe the
  // socket). Created by the daemon when missing.
  std::string data_dir = "./kvtier-data";
  // Size of the pinned-host tier (the shared segment). 0 until resolved; the
  // default is 25% of MemAvailable, capped at 64 GiB, at least 256 MiB,
  // rounded down to whole regions (and never below one region). A value set
  // by flag or file is also rounded down to whole regions.
  uint64_t host_capacity_bytes = 0;
  // Slab region of the host tier: the unit in which capacity is carved into
  // size classes (larger blocks take runs of whole regions).
  uint64_t host_region_bytes = 64 * kMiB;
  // NUMA placement of the host segment: "auto" (on a multi-node host: the
  // nodes of --gpus, else interleaved over all nodes), "off", or a node
  // list ("0", "0-1") to bind (one node) or interleave (several).
  std::string host_numa = "auto";
  // Persistent host segment: a file (on a tmpfs such as /dev/shm) whose
  // committed blocks a restarted daemon re-adopts after verifying them;
  // empty = an anonymous memfd, lost with the process.
  std::string host_shm_path;
  // Eviction policy of the host tier: lru, priority-lru, prefix-lru, s3fifo.
  std::string host_policy = "adaptive-2q";
  // Admin HTTP endpoint, "HOST:PORT" ("[v6addr]:PORT" for IPv6). "off"
  // disables it; port 0 picks a free port (logged at startup).
  std::string admin_address = "127.0.0.1:9477";
  // spdlog level: trace, debug, info, warn, error, off.
  std::string log_level = "info";
  // Log JSON lines ({"ts","level","msg",...}) instead of text.
  bool log_json = false;
  // Threads serving RPCs. 0 until resolved; default min(4, hardware threads).
  // Valid: 1..256.
  uint32_t rpc_threads = 0;
  // Most keys in one acquire/reserve/hash call (cache's max_keys_per_call).
  uint32_t max_keys_per_call = 65536;
  // Largest RPC message accepted or sent.
  uint64_t max_message_bytes = 64 * kMiB;
  // Most client connections at once; more are refused.
  uint32_t max_connections = 1024;
  // What clients may make the daemon hold (server/connection_limits.h,
  // docs/security.md); each refusal is counted in kvtier_refused_total.
  uint32_t max_connections_per_uid = 256;
  uint64_t max_connection_memory = 128 * kMiB;
  uint64_t max_uid_memory = 1 * kGiB;
  uint32_t max_questions = 1024;
  uint32_t max_leases = 4096;
  uint32_t max_uid_leases = 16384;
  uint32_t max_txns = 1024;
  uint32_t max_uid_txns = 4096;
  uint32_t max_uncommitted_blocks = 65536;
  uint32_t max_uid_uncommitted_blocks = 262144;
  uint32_t max_priority_ranges = 256;
  uint64_t max_unread_answers = 4 * kMiB;
  uint32_t handshake_timeout_seconds = 10;
  uint32_t io_timeout_seconds = 30;
  uint32_t idle_timeout_seconds = 300;
  // The admin endpoint: connections served at once (more are answered 503
  // at once) and the time a client has to send its whole request.
  uint32_t admin_max_connections = 32;
  uint32_t admin_timeout_seconds = 5;
  // SIGTERM: seconds to wait for open leases and stores to finish (no new
  // ones are taken meanwhile) before the daemon exits.
  uint32_t drain_timeout_seconds = 10;
  // Idle namespaces (no block anywhere, no client) are reclaimed after this.
  uint32_t namespace_idle_seconds = 600;
  // HBM tier: bytes of GPU memory the daemon takes on each of --gpus; 0 = no HBM
  // tier. Off by default: GPU memory belongs to the engines unless an
  // operator gives some to kvtier.
  uint64_t hbm_capacity_bytes = 0;
  // CUDA devices with an HBM tier each (comma-separated), e.g. "0,1,2,3".
  std::string gpus = "0";
  // Where fresh stores land: "host" or "hbm" (needs --hbm-capacity).
  std::string store_tier = "host";
  // Host blocks hit this many times move up to the HBM tier; 0 = never.
  uint32_t promote_to_hbm_hits = 0;
  // NVMe tier file or block device. Empty = <data_dir>/nvme.dat (resolved).
  std::string nvme_path;
  // NVMe tier size; 0 = NVMe tier off.
  uint64_t nvme_capacity_bytes = 0;
  // io_uring submission queue depth of the NVMe tier. Valid: 1..4096.
  uint32_t nvme_queue_depth = 256;
  // "write-back" (cold host blocks written to NVMe in the background),
  // "write-through" (written at commit; the commit answers once durable) or
  // "write-async" (written at commit; the commit answers at once).
  std::string nvme_write_policy = "write-back";
  // write-back: seconds a SIGTERM may spend writing host-only blocks to NVMe
  // after the drain; 0 = no flush.
  uint32_t nvme_flush_timeout_seconds = 30;
  // Eviction policy of the NVMe tier.
  std::string nvme_policy = "lru";
  // NVMe admission: "always" or "second-sighting".
  std::string nvme_admission = "always";
  // Read bandwidth of an NVMe index rebuild (after a damaged index was set
  // aside), bytes per second; 0 = unlimited.
  uint64_t nvme_rebuild_rate_bytes = 0;
  // Testing only: NVMe I/O faults to inject (tiers/fault_io_queue.h,
  // ParseFaultSpec); empty: none.
  std::string nvme_fault_inject;
  // Tenants (server/tenants.h, docs/security.md): one "NAME=RULE[,RULE...]"
  // per tenant (--tenant, repeatable); empty: one tenant, every connection.
  std::vector<std::string> tenants;
  // A group that may read the data dir (then 02750, files 0640) and, without
  // tenants, connect to the socket (0660); empty: the daemon's user only.
  std::string data_group;
  // When committed checksums are checked against the blocks' bytes:
  // "spill" (before a block's first NVMe write) or "commit" (also at
  // commit, for host-tier blocks: a wrong one is never served).
  std::string verify_checksums = "spill";

  // Not settings: what the command line asked for.
  std::string config_file;    // the --config file that was read, if any
  bool show_help = false;     // --help / -h: print DaemonHelpText(), exit 0
  bool show_version = false;  // --version: print DaemonVersion(), exit 0

  // InvalidArgument naming the setting when a value is out of range:
  // host capacity below one region or above 16 TiB, region not a multiple
  // of 4 KiB or outside 1 MiB..4 GiB, unknown policy, log level or
  // write policy, bad admin address, rpc threads outside 1..256, max keys
  // outside 1..16M, max message outside 64 KiB..4 GiB or too small for
  // max-keys (64 bytes per key), max connections outside 1..1M, NVMe queue
  // depth outside 1..4096, NVMe capacity below 1 MiB when on, socket path
  // empty or longer than 107 bytes. REQUIRES: defaults resolved.
  Status Validate() const;

  // One line for the startup log: "socket=... data_dir=... host_capacity=...".
  std::string ToString() const;
};

// What the machine-dependent defaults depend on.
struct SystemInfo {
  std::optional<std::string> runtime_dir;  // $XDG_RUNTIME_DIR if set and writable
  uint64_t mem_available_bytes = 0;        // /proc/meminfo MemAvailable (0 = unknown)
  unsigned hardware_threads = 0;           // std::thread::hardware_concurrency()
};
SystemInfo ReadSystemInfo();

// 25% of MemAvailable, capped at 64 GiB, at least 256 MiB, rounded down to
// whole regions, at least one region. Unknown memory (0) counts as 1 GiB.
uint64_t DefaultHostCapacity(uint64_t mem_available_bytes, uint64_t region_bytes);

// Fills what is still unset (socket path, host capacity, rpc threads, NVMe
// path) from `sys` and the other settings, and rounds a set host capacity of
// at least one region down to whole regions.
void ResolveDefaults(const SystemInfo& sys, DaemonConfig* config);

// Parses argv[1..argc) (argv[0] is the program), reading --config FILE first,
// then resolves defaults from ReadSystemInfo() and validates. With --help or
// --version anywhere, returns at once with show_help / show_version set and
// nothing else parsed or validated. Errors: InvalidArgument naming the flag
// (or the file and line) and the bad value.
Result<DaemonConfig> ParseDaemonConfig(int argc, const char* const* argv);
// Same, with the system pinned (for tests).
Result<DaemonConfig> ParseDaemonConfig(int argc, const char* const* argv, const SystemInfo& sys);

// The --help text: usage, every flag with its default, the config file format.
std::string DaemonHelpText();
// "kvtier 0.1.0".
std::string DaemonVersion();
// The version number alone, "0.1.0".
std::string_view KvtierVersion();

// "8G", "512MiB", "1.5g", "4096", "64kb": bytes. Units K/M/G/T are powers of
// two (KiB..TiB), case-insensitive, optionally followed by "iB" or "B"; a
// bare "B" means bytes. A decimal fraction is accepted when the result is a
// whole number of bytes ("1.5K" = 1536; "1.5" and "0.1K" are rejected).
// InvalidArgument (without a flag name) on anything else or on overflow.
Result<uint64_t> ParseSize(std::string_view text);
// 17179869184 → "16GiB", 1536 → "1.5KiB", 100 → "100B" (up to 2 decimals).
std::string FormatSize(uint64_t bytes);

// "0,1,3" → {0, 1, 3}. InvalidArgument on anything else (empty, duplicates,
// values above 1023).
Result<std::vector<int>> ParseGpuList(std::string_view text);

// "127.0.0.1:9477", "localhost:0", "[::1]:9477" → host and port.
struct HostPort {
  std::string host;
  int port = 0;
};
Result<HostPort> ParseHostPort(std::string_view address);

}  // namespace kvtier
