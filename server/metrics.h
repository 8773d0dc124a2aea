// Daemon metrics: a lock-free latency histogram, the RPC service's counters,
// and their Prometheus text exposition (format 0.0.4).
//
// LatencyHistogram::Record and the RpcMetrics counters are on the RPC hot
// path: a bucket search over a constant table and two relaxed atomic adds;
// no lock, no allocation. Readers (the admin endpoint) take snapshots, which
// are consistent per bucket but not across buckets: a snapshot taken during
// Record()s may see a count without its sum. That is what Prometheus
// clients do too.
//
// Ownership: the daemon owns one RpcMetrics for its lifetime; the admin
// server reads it through a const pointer. Thread safety: every member may be
// used from any thread at any time.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include "cache/cache.h"

namespace kvtier {

// Counts, sum and buckets of a LatencyHistogram at one moment.
struct HistogramSnapshot {
  static constexpr size_t kNumBounds = 22;
  static constexpr size_t kNumBuckets = kNumBounds + 1;  // the last is +Inf
  // Upper bounds (inclusive, nanoseconds): 1-2-5 steps from 1 us to 10 s.
  static constexpr std::array<uint64_t, kNumBounds> kBoundsNs = {
      1'000,       2'000,       5'000,         10'000,        20'000,        50'000,
      100'000,     200'000,     500'000,       1'000'000,     2'000'000,     5'000'000,
      10'000'000,  20'000'000,  50'000'000,    100'000'000,   200'000'000,   500'000'000,
      1'000'000'000, 2'000'000'000, 5'000'000'000, 10'000'000'000};

  uint64_t count = 0;   // sum of buckets
  uint64_t sum_ns = 0;  // sum of recorded values
  std::array<uint64_t, kNumBuckets> buckets{};  // per bucket, not cumulative

  // Prometheus "le" buckets: cumulative[i] = values <= kBoundsNs[i];
  // cumulative[kNumBounds] = count (le="+Inf").
  std::array<uint64_t, kNumBuckets> Cumulative() const;
  // The q-quantile (0..1) in nanoseconds, interpolated linearly inside its
  // bucket as Prometheus' histogram_quantile does: the estimate lies in the
  // same bucket as the true value. 0 when empty; values past 10 s report
  // 10 s.
  double QuantileNs(double q) const;
  double MeanNs() const { return count == 0 ? 0.0 : static_cast<double>(sum_ns) / count; }
};

class alignas(64) LatencyHistogram {
 public:
  static constexpr size_t kNumBuckets = HistogramSnapshot::kNumBuckets;

  // Index of the bucket that holds `ns`: the first bound >= ns.
  static size_t BucketOf(uint64_t ns) noexcept {
    const auto& b = HistogramSnapshot::kBoundsNs;
    return static_cast<size_t>(std::lower_bound(b.begin(), b.end(), ns) - b.begin());
  }

  void Record(uint64_t ns) noexcept {
    buckets_[BucketOf(ns)].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  }
  HistogramSnapshot Snapshot() const;

 private:
  std::array<std::atomic<uint64_t>, kNumBuckets> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

enum class RpcMethod : uint8_t {
  kOpenNamespace = 0,
  kAcquire,
  kReserve,
  kCommit,
  kAbort,
  kHashTokens,
  kStats,
  kHostSegment,
  kProbe,
};
inline constexpr size_t kNumRpcMethods = 9;
// "open_namespace", "acquire", ..., "host_segment" (the Prometheus label).
const char* RpcMethodName(RpcMethod m);

// Why a request was refused for its tenant (docs/security.md).
enum class TenantRefusal : uint8_t {
  kUnknownPeer = 0,  // no tenant has the peer's uid or gid
  kBadToken,         // the token matches no tenant
  kNoNamespace,      // hostSegment/hbmSegment before opening a namespace
  kTenantSwitch,     // a connection opening a namespace of a second tenant
};
inline constexpr size_t kNumTenantRefusals = 4;
const char* TenantRefusalName(TenantRefusal r);

// Why the daemon refused a client something: a connection, a message, a
// call, or an admin request. Each is a label of kvtier_refused_total.
enum class Refusal : uint8_t {
  kConnections = 0,     // --max-connections reached
  kConnectionsPerUid,   // --max-connections-per-uid reached
  kFdExhausted,         // accept() failed for want of fds (EMFILE/ENFILE)
  kMessageTooLarge,     // a frame header announced more than --max-message
  kMalformed,           // a frame or RPC message that does not parse
  kMemory,              // --max-connection-memory or --max-uid-memory exceeded
  kFds,                 // fds sent to the daemon (no method takes one), closed on arrival
  kQuestions,           // --max-questions unfinished calls on one connection
  kLeases,              // --max-leases (per connection or per uid)
  kTxns,                // --max-txns uncommitted reservations (per connection or per uid)
  kUncommittedBlocks,   // --max-uncommitted-blocks (per connection or per uid)
  kRanges,              // --max-priority-ranges in one reserve
  kHandshakeTimeout,    // no whole first message within --handshake-timeout
  kFrameTimeout,        // a message begun and not finished within --io-timeout
  kStalled,             // answers left unread for --io-timeout
  kIdleTimeout,         // holding nothing, silent for --idle-timeout
  kAdminConnections,    // --admin-max-connections reached
  kAdminTimeout,        // an admin request not received within --admin-timeout
  kAdminBadRequest,     // an admin request that does not parse or is too large
};
inline constexpr size_t kNumRefusals = 19;
// "connections", "connections_per_uid", ... (the Prometheus label).
const char* RefusalName(Refusal r);

// Counts of refusals, shared by the RPC server, the RPC service and the
// admin endpoint. Thread-safe; relaxed atomics.
struct RefusalMetrics {
  std::array<std::atomic<uint64_t>, kNumRefusals> counts{};
  void Count(Refusal r, uint64_t n = 1) noexcept {
    counts[static_cast<size_t>(r)].fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t Get(Refusal r) const noexcept {
    return counts[static_cast<size_t>(r)].load(std::memory_order_relaxed);
  }
};

struct RpcMetrics {
  struct alignas(64) Method {
    LatencyHistogram latency;        // every call, failed ones too
    std::atomic<uint64_t> errors{0};  // calls that returned an error
  };
  std::array<Method, kNumRpcMethods> methods;

  // Gauges are signed so that a decrement racing ahead of its increment
  // never shows as 2^64.
  alignas(64) std::atomic<int64_t> connections_open{0};
  std::atomic<uint64_t> connections_total{0};
  alignas(64) std::atomic<int64_t> leases_open{0};
  alignas(64) std::atomic<int64_t> txns_open{0};
  std::array<std::atomic<uint64_t>, kNumTenantRefusals> tenant_refusals{};
  // Commits answered with an error because a block's bytes did not match
  // its checksum (--verify-checksums commit).
  std::atomic<uint64_t> commit_checksum_refusals{0};
  void Refuse(TenantRefusal r) {
    tenant_refusals[static_cast<size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  }

  // Refusals of clients (limits hit), by reason.
  RefusalMetrics refused;
  // RPC worker threads whose event loop has not turned for over 5 s (a
  // request hogging it); set by the RPC server, shown by /healthz.
  std::atomic<int64_t> workers_stalled{0};

  Method& method(RpcMethod m) { return methods[static_cast<size_t>(m)]; }
  const Method& method(RpcMethod m) const { return methods[static_cast<size_t>(m)]; }

  void Record(RpcMethod m, uint64_t ns, bool ok) noexcept {
    Method& x = method(m);
    x.latency.Record(ns);
    if (!ok) x.errors.fetch_add(1, std::memory_order_relaxed);
  }
};

// Times one RPC from construction to destruction and records it. The call is
// an error when Fail() was called or when the scope is left by an exception
// (RPC handlers report errors by throwing). `metrics` may be null (nothing is
// recorded).
class RpcTimer {
 public:
  RpcTimer(RpcMetrics* metrics, RpcMethod method) noexcept
      : metrics_(metrics),
        method_(method),
        exceptions_(std::uncaught_exceptions()),
        start_(std::chrono::steady_clock::now()) {}
  ~RpcTimer() {
    if (metrics_ == nullptr) return;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::steady_clock::now() - start_)
                  .count();
    const bool threw = std::uncaught_exceptions() > exceptions_;
    metrics_->Record(method_, static_cast<uint64_t>(ns), ok_ && !threw);
  }
  RpcTimer(const RpcTimer&) = delete;
  RpcTimer& operator=(const RpcTimer&) = delete;

  void Fail() noexcept { ok_ = false; }

 private:
  RpcMetrics* metrics_;
  RpcMethod method_;
  bool ok_ = true;
  int exceptions_;
  std::chrono::steady_clock::time_point start_;
};

// What /metrics exposes. Null pointers leave their families out.
struct MetricsInput {
  const CacheStats* cache = nullptr;
  const RpcMetrics* rpc = nullptr;
  std::string_view version;
  double uptime_seconds = 0;
  bool ready = true;     // kvtier_ready: /readyz answers 200
  bool degraded = false; // kvtier_degraded: serving with a part down (reason in /healthz)
};

// Prometheus text format 0.0.4: "# HELP" and "# TYPE" before each family's
// samples. Families and meanings are listed in docs/operations.md.
std::string RenderPrometheus(const MetricsInput& in);

// Shortest round-trip text of a double as Prometheus reads it ("1e-06",
// "0.5", "+Inf", "NaN").
std::string PrometheusDouble(double v);

}  // namespace kvtier
