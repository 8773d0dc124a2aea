// kvtier-bench rpc: acquire + release latency and throughput against a live
// kvtierd over its Unix socket.
#include "bench/rpc_bench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "bench/daemon_process.h"
#include "engine_adapter/client.h"
#include "tiers/checksum.h"

namespace kvtier::bench {

namespace {

NamespaceSpec BenchSpec() {
  NamespaceSpec s;
  s.model_id = "bench/rpc";
  s.layout = KvLayout{2, 2, 64, 16, DType::kBF16, 2};  // 16 KiB blocks
  return s;
}

std::vector<BlockKey> ChainKeys(const ClientNamespace& ns, size_t n, uint32_t salt) {
  std::vector<uint32_t> tokens(n * ns.spec().layout.tokens_per_block);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i * 13 + salt);
  return ns.HashTokens(tokens);
}

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1));
  return v[i];
}

Status StoreChain(ClientNamespace& ns, const std::vector<BlockKey>& keys) {
  std::vector<uint8_t> payload(ns.block_bytes(), 0x5A);
  std::vector<const uint8_t*> ptrs(keys.size(), payload.data());
  auto r = ns.Store(keys, ptrs);
  if (!r.ok()) return r.status();
  if (r->stored + r->present != keys.size())
    return Status::ResourceExhausted("could not store the whole chain");
  return Status::OK();
}

// Every failure says what failed, on one line (exit 1).
int Fail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "kvtier-bench rpc: %s: %s\n", what.c_str(), st.ToString().c_str());
  return 1;
}

// A lease of the wrong size is a failure too: the daemon lost blocks.
template <typename LeaseResult>
Status LeaseOf(const LeaseResult& lease, size_t want) {
  if (!lease.ok()) return lease.status();
  if (lease->size() != want)
    return Status::Internal("the daemon returned " + std::to_string(lease->size()) + " of " +
                            std::to_string(want) + " blocks");
  return Status::OK();
}

}  // namespace

int RunRpcBench(const RpcBenchOptions& o) {
  std::unique_ptr<DaemonProcess> daemon;
  std::string socket = o.socket;
  if (socket.empty()) {
    auto d = DaemonProcess::Start(o.kvtierd_path, {"--host-capacity", "512M", "--host-region", "16M",
                                                    "--admin", "off", "--log-level", "warn",
                                                    "--rpc-threads", std::to_string(o.rpc_threads)});
    if (!d.ok()) {
      return Fail("starting kvtierd", d.status());
    }
    daemon = std::move(d).value();
    socket = daemon->socket();
  }
  auto client = Client::Connect(socket);
  if (!client.ok()) {
    return Fail("connecting to " + socket, client.status());
  }
  (*client)->set_reply_spin(std::chrono::microseconds(o.spin_us));
  auto ns = (*client)->OpenNamespace(BenchSpec());
  if (!ns.ok()) {
    return Fail("opening the namespace", ns.status());
  }
  std::printf("kvtier-bench rpc: socket %s, %d RPC threads on the daemon, %u CPUs here, "
              "clients poll %d us for a reply\n",
              socket.c_str(), o.rpc_threads, std::thread::hardware_concurrency(), o.spin_us);
  {
    std::vector<double> ping_us;
    for (int i = 0; i < o.calls + 50; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      if (Status st = (*client)->Ping(); !st.ok()) return Fail("ping", st);
      double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      if (i >= 50) ping_us.push_back(us);
    }
    double p50 = Percentile(ping_us, 0.5), p99 = Percentile(ping_us, 0.99);
    std::printf("ping round trip: p50 %.1f us, p99 %.1f us\n", p50, p99);
    // A lookup that misses returns no lease capability: the RPC alone.
    auto miss = ChainKeys(**ns, 1, 999999);
    std::vector<double> miss_us;
    for (int i = 0; i < o.calls + 50; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      auto lease = (*ns)->Lookup(miss);
      if (Status st = LeaseOf(lease, 0); !st.ok()) return Fail("acquire of a missing prefix", st);
      double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      if (i >= 50) miss_us.push_back(us);
    }
    std::printf("acquire miss (no lease): p50 %.1f us, p99 %.1f us\n", Percentile(miss_us, 0.5),
                Percentile(miss_us, 0.99));
    // The same hit, timing the acquire and the lease drop apart.
    auto hit = ChainKeys(**ns, 1, 4242);
    if (Status st = StoreChain(**ns, hit); !st.ok()) return Fail("storing 1 block", st);
    std::vector<double> acq_us, drop_us;
    for (int i = 0; i < o.calls + 50; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      auto lease = (*ns)->Lookup(hit);
      auto t1 = std::chrono::steady_clock::now();
      if (Status st = LeaseOf(lease, 1); !st.ok()) return Fail("acquire of 1 stored block", st);
      lease = ClientLease();
      auto t2 = std::chrono::steady_clock::now();
      if (i >= 50) {
        acq_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        drop_us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
      }
    }
    std::printf("acquire hit, 1 key: p50 %.1f us; lease drop: p50 %.1f us\n", Percentile(acq_us, 0.5),
                Percentile(drop_us, 0.5));
  }
  std::printf("\n%-8s %10s %12s %12s %12s %12s\n", "chain", "calls", "acq+rel p50", "acq+rel p99",
              "acq+drop p50", "acq+drop p99");
  for (size_t n : {size_t{1}, size_t{64}, size_t{2048}}) {
    auto keys = ChainKeys(**ns, n, static_cast<uint32_t>(n));
    Status st = StoreChain(**ns, keys);
    if (!st.ok()) {
      return Fail("storing " + std::to_string(n) + " blocks", st);
    }
    const int calls = n >= 2048 ? o.calls / 4 : o.calls;
    std::vector<double> explicit_us, drop_us;
    for (int pass = 0; pass < 2; ++pass) {
      for (int i = 0; i < calls + 50; ++i) {  // 50 warm-up calls
        auto t0 = std::chrono::steady_clock::now();
        auto lease = (*ns)->Lookup(keys);
        if (Status st = LeaseOf(lease, n); !st.ok())
          return Fail("acquire of " + std::to_string(n) + " stored blocks", st);
        if (pass == 0) {
          (void)lease->Release();  // a second round trip
        } else {
          lease = ClientLease();  // drop: the release message goes out unanswered
        }
        double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
        if (i >= 50) (pass == 0 ? explicit_us : drop_us).push_back(us);
      }
    }
    double p50 = Percentile(explicit_us, 0.5), p99 = Percentile(explicit_us, 0.99);
    double d50 = Percentile(drop_us, 0.5), d99 = Percentile(drop_us, 0.99);
    std::printf("%-8zu %10d %9.1f us %9.1f us %9.1f us %9.1f us\n", n, calls, p50, p99, d50, d99);
  }

  // Throughput: concurrent clients, each with its own connection and thread,
  // acquire of the 64-key chain, then the lease dropped (the library's
  // release: one message, no round trip).
  auto keys64 = ChainKeys(**ns, 64, 64);
  std::printf("\n%-8s %14s %14s %14s\n", "clients", "acquires/s", "keys/s", "mean us");
  for (int clients : o.client_counts) {
    std::atomic<bool> go{false}, stop{false};
    std::atomic<uint64_t> total{0};
    std::atomic<int> failed{0};
    std::mutex first_error_mu;
    Status first_error;
    auto client_failed = [&](const Status& st) {
      std::lock_guard<std::mutex> l(first_error_mu);
      if (first_error.ok()) first_error = st;
      ++failed;
    };
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&] {
        auto cl = Client::Connect(socket);
        if (!cl.ok()) {
          client_failed(cl.status());
          return;
        }
        (*cl)->set_reply_spin(std::chrono::microseconds(o.spin_us));
        auto n2 = (*cl)->OpenNamespace(BenchSpec());
        if (!n2.ok()) {
          client_failed(n2.status());
          return;
        }
        while (!go.load()) std::this_thread::yield();
        uint64_t done = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          auto lease = (*n2)->Lookup(keys64);
          if (Status st = LeaseOf(lease, 64); !st.ok()) {
            client_failed(st);
            return;
          }
          lease = ClientLease();  // drop: the release goes out without a round trip
          ++done;
        }
        total += done;
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    go = true;
    auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
    stop = true;
    for (auto& t : threads) t.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (failed.load() > 0) {
      std::lock_guard<std::mutex> l(first_error_mu);
      return Fail(std::to_string(failed.load()) + " of " + std::to_string(clients) + " clients failed; the first",
                  first_error);
    }
    double rate = static_cast<double>(total.load()) / secs;
    std::printf("%-8d %14.0f %14.0f %14.1f\n", clients, rate, rate * 64, clients * 1e6 / rate);
  }
  // Stores, last (they fill the tier, evicting the chains above): reserve,
  // then commit, each timed apart (the client's copy of the payloads and
  // their checksums in between is not); fresh keys every call, so every
  // block is reserved (and, once the tier is full, evicts one).
  std::printf("\n%-8s %10s %12s %12s %12s %12s\n", "store", "calls", "reserve p50", "reserve p99",
              "commit p50", "commit p99");
  uint32_t salt = 1u << 20;
  for (size_t n : {size_t{1}, size_t{64}}) {
    const int calls = n >= 64 ? o.calls / 4 : o.calls;
    std::vector<double> reserve_us, commit_us;
    std::vector<uint64_t> sums(n);
    for (int i = 0; i < calls + 50; ++i) {
      auto keys = ChainKeys(**ns, n, salt++);
      auto t0 = std::chrono::steady_clock::now();
      auto txn = (*ns)->Reserve(keys);
      auto t1 = std::chrono::steady_clock::now();
      if (!txn.ok()) return Fail("reserve of " + std::to_string(n) + " blocks", txn.status());
      if (txn->reserved() != n)
        return Fail("reserve of " + std::to_string(n) + " blocks",
                    Status::Internal(std::to_string(txn->reserved()) + " reserved"));
      for (size_t k = 0; k < n; ++k) {
        const auto& slot = txn->slots()[k];
        std::memset(slot.data, static_cast<int>((salt + k) & 0xFF), slot.size);
        sums[k] = checksum::Sum64(slot.data, slot.size);
      }
      auto t2 = std::chrono::steady_clock::now();
      if (Status st = txn->Commit(sums); !st.ok())
        return Fail("commit of " + std::to_string(n) + " blocks", st);
      auto t3 = std::chrono::steady_clock::now();
      if (i >= 50) {
        reserve_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        commit_us.push_back(std::chrono::duration<double, std::micro>(t3 - t2).count());
      }
    }
    std::printf("%-8zu %10d %9.1f us %9.1f us %9.1f us %9.1f us\n", n, calls,
                Percentile(reserve_us, 0.5), Percentile(reserve_us, 0.99),
                Percentile(commit_us, 0.5), Percentile(commit_us, 0.99));
  }
  return 0;
}

}  // namespace kvtier::bench
