#include "bench/sim_command.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "bench/sim_belady.h"
#include "bench/sim_replay.h"
#include "bench/trace_reader.h"
#include "eviction/admission.h"
#include "eviction/policy.h"
#include "server/cli.h"
#include "tiers/json_string.h"

namespace kvtier::bench {

namespace {

// Policies run by `--policy all`, in report order.
const char* const kAllPolicies[] = {"lru", "priority-lru", "prefix-lru", "s3fifo", "adaptive-2q"};

struct CapacitySpec {
  std::string text;
  uint64_t blocks = 0;
};

// "5%", "1200", "64GiB", "500MB", "1073741824B".
std::optional<uint64_t> ParseCapacity(const std::string& text, uint64_t unique_blocks,
                                      uint64_t block_bytes, std::string* error) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  std::string unit(end);
  if (end == text.c_str() || !(v >= 0) || !std::isfinite(v)) {
    *error = "bad capacity '" + text + "'";
    return std::nullopt;
  }
  if (unit == "%") return static_cast<uint64_t>(std::llround(v / 100.0 * double(unique_blocks)));
  if (unit.empty()) {
    if (v != std::floor(v)) {
      *error = "capacity '" + text + "': a block count is a whole number";
      return std::nullopt;
    }
    return static_cast<uint64_t>(v);
  }
  static const std::map<std::string, double> kUnits = {
      {"B", 1.0},           {"KB", 1e3},          {"MB", 1e6},           {"GB", 1e9},
      {"TB", 1e12},         {"KiB", 1024.0},      {"MiB", 1048576.0},    {"GiB", 1073741824.0},
      {"TiB", 1099511627776.0}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) {
    *error = "capacity '" + text + "': unknown unit '" + unit + "' (use %, B, KiB..TiB, KB..TB)";
    return std::nullopt;
  }
  if (block_bytes == 0) {
    *error = "capacity '" + text + "' is in bytes: give --block-bytes";
    return std::nullopt;
  }
  return static_cast<uint64_t>(std::floor(v * it->second / double(block_bytes)));
}

struct Job {
  bool belady = false;
  ReplayOptions replay;
  std::string tier1_text, tier2_text;
  // Results.
  PrefixHitCounts hits;
  ReplayResult result;
  Status status;
  double seconds = 0;
};

std::string Fmt(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string JsonString(const std::string& s) { return JsonQuoted(s); }

std::string HumanCount(double v) {
  char buf[32];
  if (v >= 1e9) {
    std::snprintf(buf, sizeof(buf), "%.2fG", v / 1e9);
  } else if (v >= 1e6) {
    std::snprintf(buf, sizeof(buf), "%.2fM", v / 1e6);
  } else if (v >= 1e3) {
    std::snprintf(buf, sizeof(buf), "%.1fk", v / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  }
  return buf;
}

int Fail(const std::string& msg, int code = 2) {
  std::fprintf(stderr, "kvtier-bench sim: %s%s\n", msg.c_str(),
               code == 2 ? " (see kvtier-bench sim --help)" : "");
  return code;
}

}  // namespace

int RunSim(int argc, char** argv) {
  if (IsMultiModelSim(argc, argv)) return RunMultiSim(argc, argv);
  std::string trace_path, json_path, csv_path, format = "auto";
  std::string policy_list = "priority-lru", tier1_list = "5%,10%", tier2_list;
  std::string tier2_policy = "lru", admission = "always";
  uint64_t admission_window = uint64_t{1} << 20, block_bytes = 0, jobs_n = 0;
  double progress_s = 5;
  bool no_belady = false;
  TraceReadOptions ro;

  CLI::App app("offline replay of a trace (Mooncake JSONL, agentic sessions) through the real "
               "cache, eviction and admission code: prefix hit rates per policy and capacity, "
               "with Belady's MIN as the reference",
               "kvtier-bench sim");
  // Two or more --model flags select the multi-model replay (bench/sim_multi.cc).
  app.footer("Models of other block sizes replayed together: --model NAME=TRACE:BLOCK, two or more\n"
             "(kvtier-bench sim --model ... --help).");
  auto known_policy = [](const std::string& p) -> std::string {
    auto r = NewEvictionPolicy(p);
    return r.ok() ? "" : r.status().message();
  };
  // Capacities are checked for syntax here; "%" needs the trace, so a
  // capacity of 0 blocks is found after reading it.
  auto capacity = [&block_bytes](const std::string& c) -> std::string {
    std::string err;
    return ParseCapacity(c, 1000000, block_bytes, &err) ? "" : err;
  };
  app.add_option("--trace", trace_path,
                 "Mooncake .jsonl, or agentic sessions: a tar archive (.tar.xz, .tar.gz, ...), a "
                 "directory of .json files, or one .json")
      ->required();
  app.add_option("--format", format, "auto (.jsonl is Mooncake), mooncake, agentic")
      ->capture_default_str()->check(CLI::IsMember({"auto", "mooncake", "agentic"}));
  app.add_option("--name", ro.name, "trace label in reports (default: file name)");
  app.add_option("--max-sessions", ro.max_sessions, "agentic: read only the first N sessions (0: all)");
  app.add_option("--max-requests", ro.max_requests, "replay only the first N requests (0: all)");
  app.add_option("--session-stagger", ro.session_stagger_s, "agentic: session k starts at k*S seconds")
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--block-tokens", ro.block_tokens, "tokens per hash id (default: the trace's)")
      ->check(CLI::Range(1u, 4096u));
  app.add_option("--policy", policy_list, "tier-1 eviction policies, comma-separated, or 'all'")
      ->capture_default_str()
      ->check(cli::EachItem([&](const std::string& p) { return p == "all" ? "" : known_policy(p); }, "LIST"));
  app.add_option("--tier1-capacity", tier1_list,
                 "capacities: N blocks, P% of the trace's unique blocks, or bytes (e.g. 64GiB) with "
                 "--block-bytes")
      ->capture_default_str();
  app.add_option("--tier2-capacity", tier2_list, "second tier (NVMe model) capacities (default: none)");
  app.add_option("--tier2-policy", tier2_policy, "eviction policy of tier 2")
      ->capture_default_str()->check(CLI::Validator(
          [&](std::string& p) { return known_policy(p); }, "NAME"));
  app.add_option("--admission", admission, "admission into tier 2: always, second-sighting")
      ->capture_default_str()->check(CLI::Validator(
          [](std::string& a) {
            auto r = NewAdmissionPolicy(a);
            return r.ok() ? std::string() : r.status().message();
          },
          "NAME"));
  app.add_option("--admission-window", admission_window, "second-sighting window")
      ->capture_default_str()->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));
  app.add_option("--block-bytes", block_bytes, "bytes per block, for byte capacities")
      ->check(CLI::Range(uint64_t{1}, uint64_t{0xFFFFFFFF}));
  app.add_flag("--no-belady", no_belady, "skip Belady's MIN");
  app.add_option("--jobs", jobs_n, "replays run in parallel (default: hardware threads)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{256}));
  app.add_option("--json-out", json_path, "write results as JSON to PATH (as kvtier-bench engine --json-out)");
  app.add_option("--csv", csv_path, "write results as CSV (one row per run) to PATH");
  app.add_option("--progress", progress_s, "progress on stderr every S seconds (0: off)")
      ->capture_default_str()->check(CLI::Range(0.0, 1e6));
  if (int rc = cli::Parse(app, argc - 1, argv + 1); rc >= 0) return rc;
  // Checks that need more than one flag, still before the trace is read.
  for (const std::string* list : {&tier1_list, &tier2_list}) {
    for (const std::string& c : SplitList(*list)) {
      if (std::string e = capacity(c); !e.empty()) return Fail(e);
    }
  }
  ro.format = format == "mooncake" ? TraceFormat::kMooncake
              : format == "agentic" ? TraceFormat::kAgentic
                                    : TraceFormat::kAuto;
  std::vector<std::string> policies = SplitList(policy_list);
  if (policies.size() == 1 && policies[0] == "all")
    policies.assign(std::begin(kAllPolicies), std::end(kAllPolicies));
  const std::vector<std::string> tier1_caps = SplitList(tier1_list), tier2_caps = SplitList(tier2_list);
  if (tier1_caps.empty()) return Fail("--tier1-capacity needs values");
  const bool belady = !no_belady;

  // ---- Read the trace.
  const auto t_read = std::chrono::steady_clock::now();
  auto trace_or = ReadTrace(trace_path, ro);
  if (!trace_or.ok()) return Fail(trace_or.status().ToString(), 1);
  const Trace& trace = *trace_or;
  const double read_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_read).count();
  const PrefixHitCounts ideal = IdealPrefixHits(trace);
  std::printf("trace %s: %zu requests, %u sessions, %zu block refs, %u unique blocks of %u tokens "
              "(read in %.1f s)\n",
              trace.name.c_str(), trace.requests.size(), trace.num_sessions, trace.refs.size(),
              trace.num_unique_blocks, trace.block_tokens, read_s);
  std::printf("infinite cache: %.4f of blocks, %.4f of tokens\n", ideal.block_rate(),
              ideal.token_rate());
  std::fflush(stdout);

  // ---- Jobs: Belady per total capacity, one replay per policy x capacity.
  const uint64_t bb = block_bytes != 0 ? block_bytes : 4096;
  std::vector<CapacitySpec> t1, t2;
  std::string err;
  for (const auto& c : tier1_caps) {
    auto b = ParseCapacity(c, trace.num_unique_blocks, block_bytes, &err);
    if (!b) return Fail(err);
    if (*b == 0) return Fail("tier-1 capacity '" + c + "' is 0 blocks");
    t1.push_back({c, *b});
  }
  for (const auto& c : tier2_caps) {
    auto b = ParseCapacity(c, trace.num_unique_blocks, block_bytes, &err);
    if (!b) return Fail(err);
    t2.push_back({c, *b});
  }
  if (t2.empty()) t2.push_back({"0", 0});
  std::vector<Job> jobs;
  std::vector<uint64_t> belady_caps;
  for (const auto& c1 : t1) {
    for (const auto& c2 : t2) {
      const uint64_t total = c1.blocks + c2.blocks;
      if (belady && std::find(belady_caps.begin(), belady_caps.end(), total) == belady_caps.end()) {
        belady_caps.push_back(total);
        Job j;
        j.belady = true;
        j.replay.policy = "belady";
        j.replay.tier1_blocks = total;
        j.tier1_text = c2.blocks == 0 ? c1.text : c1.text + "+" + c2.text;
        jobs.push_back(std::move(j));
      }
      for (const auto& p : policies) {
        Job j;
        j.replay.policy = p;
        j.replay.tier1_blocks = c1.blocks;
        j.replay.tier2_blocks = c2.blocks;
        j.replay.tier2_policy = tier2_policy;
        j.replay.admission = admission;
        j.replay.admission_window = admission_window;
        j.replay.block_bytes = bb;
        j.tier1_text = c1.text;
        j.tier2_text = c2.blocks == 0 ? "" : c2.text;
        jobs.push_back(std::move(j));
      }
    }
  }

  // ---- Run them.
  std::vector<uint32_t> next_use;
  if (!belady_caps.empty()) next_use = NextUses(trace);
  std::atomic<uint64_t> done_requests{0};
  std::atomic<size_t> next_job{0}, done_jobs{0};
  const size_t workers = std::min<size_t>(
      jobs.size(), jobs_n != 0 ? jobs_n : std::max(1u, std::thread::hardware_concurrency()));
  const auto t_run = std::chrono::steady_clock::now();
  auto work = [&] {
    for (size_t k; (k = next_job.fetch_add(1)) < jobs.size();) {
      Job& j = jobs[k];
      const auto t0 = std::chrono::steady_clock::now();
      if (j.belady) {
        j.hits = SimulateBelady(trace, next_use, j.replay.tier1_blocks, &done_requests);
      } else {
        auto r = Replay(trace, j.replay, &done_requests);
        if (r.ok()) {
          j.result = *r;
          j.hits = r->hits;
        } else {
          j.status = r.status();
          done_requests.fetch_add(trace.requests.size());  // keep the ETA honest
        }
      }
      j.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      done_jobs.fetch_add(1);
    }
  };
  std::vector<std::thread> threads;
  for (size_t i = 0; i < workers; ++i) threads.emplace_back(work);
  {
    const uint64_t total = uint64_t{trace.requests.size()} * jobs.size();
    auto last = std::chrono::steady_clock::now();
    while (done_jobs.load() < jobs.size()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const auto now = std::chrono::steady_clock::now();
      if (progress_s <= 0 || std::chrono::duration<double>(now - last).count() < progress_s)
        continue;
      last = now;
      const double el = std::chrono::duration<double>(now - t_run).count();
      const uint64_t d = std::min(done_requests.load(), total);
      const double rate = d / std::max(el, 1e-9);
      std::fprintf(stderr, "sim %s: %zu/%zu runs, %s/%s requests (%.1f%%), %s req/s, ETA %.0f s\n",
                   trace.name.c_str(), done_jobs.load(), jobs.size(), HumanCount(d).c_str(),
                   HumanCount(total).c_str(), 100.0 * d / std::max<uint64_t>(total, 1),
                   HumanCount(rate).c_str(), rate > 0 ? (total - d) / rate : 0.0);
    }
  }
  for (auto& th : threads) th.join();
  const double run_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();

  // ---- Report.
  int rc = 0;
  for (const Job& j : jobs)
    if (!j.status.ok()) {
      std::fprintf(stderr, "kvtier-bench sim: %s at %s: %s\n", j.replay.policy.c_str(),
                   j.tier1_text.c_str(), j.status.ToString().c_str());
      rc = 1;
    }
  auto find_belady = [&](const Job& j) -> const Job* {
    for (const Job& b : jobs)
      if (b.belady && b.replay.tier1_blocks == j.replay.tier1_blocks + j.replay.tier2_blocks)
        return &b;
    return nullptr;
  };
  auto find_lru = [&](const Job& j) -> const Job* {
    for (const Job& b : jobs)
      if (!b.belady && b.status.ok() && b.replay.policy == "lru" &&
          b.replay.tier1_blocks == j.replay.tier1_blocks &&
          b.replay.tier2_blocks == j.replay.tier2_blocks)
        return &b;
    return nullptr;
  };
  const double unique = std::max<double>(trace.num_unique_blocks, 1);
  std::printf("\n%-10s %9s %-14s %8s %8s %8s %7s %9s %9s %9s %9s %7s\n", "capacity", "blocks",
              "policy", "hit-blk", "hit-tok", "belady", "gap", "t1-hits", "t2-hits", "promoted",
              "demoted", "secs");
  for (const Job& j : jobs) {
    if (!j.status.ok()) continue;
    const Job* b = j.belady ? nullptr : find_belady(j);
    const Job* l = j.belady ? nullptr : find_lru(j);
    std::string gap = "-";
    if (b != nullptr && l != nullptr && b->hits.block_rate() > l->hits.block_rate() + 1e-12)
      gap = Fmt((j.hits.block_rate() - l->hits.block_rate()) /
                    (b->hits.block_rate() - l->hits.block_rate()), 3);
    std::string cap = j.tier1_text + (j.tier2_text.empty() ? "" : "+" + j.tier2_text);
    std::printf("%-10s %9llu %-14s %8s %8s %8s %7s %9llu %9llu %9llu %9llu %7.2f\n", cap.c_str(),
                static_cast<unsigned long long>(j.replay.tier1_blocks + j.replay.tier2_blocks),
                j.replay.policy.c_str(), Fmt(j.hits.block_rate()).c_str(),
                Fmt(j.hits.token_rate()).c_str(), b ? Fmt(b->hits.block_rate()).c_str() : "-",
                gap.c_str(), static_cast<unsigned long long>(j.result.tier_hits[0]),
                static_cast<unsigned long long>(j.result.tier_hits[1]),
                static_cast<unsigned long long>(j.result.promotions),
                static_cast<unsigned long long>(j.result.demotions), j.seconds);
  }
  std::printf("%zu runs in %.1f s on %zu threads\n", jobs.size(), run_s, workers);

  auto row_fields = [&](const Job& j, bool json) {
    const Job* b = j.belady ? nullptr : find_belady(j);
    const Job* l = j.belady ? nullptr : find_lru(j);
    std::vector<std::pair<std::string, std::string>> f;
    auto s = [&](const std::string& v) { return json ? JsonString(v) : v; };
    auto u = [](uint64_t v) { return std::to_string(v); };
    f.push_back({"trace", s(trace.name)});
    f.push_back({"policy", s(j.replay.policy)});
    f.push_back({"tier1_capacity", s(j.tier1_text)});
    f.push_back({"tier1_blocks", u(j.replay.tier1_blocks)});  // Belady: the total
    f.push_back({"tier1_fraction", Fmt(j.replay.tier1_blocks / unique, 6)});
    f.push_back({"tier2_capacity", s(j.tier2_text)});
    f.push_back({"tier2_blocks", u(j.replay.tier2_blocks)});
    f.push_back({"tier2_policy", s(j.belady || j.replay.tier2_blocks == 0 ? "" : j.replay.tier2_policy)});
    f.push_back({"admission", s(j.belady || j.replay.tier2_blocks == 0 ? "" : j.replay.admission)});
    f.push_back({"total_fraction",
                 Fmt((j.replay.tier1_blocks + j.replay.tier2_blocks) / unique, 6)});
    f.push_back({"requests", u(j.hits.requests)});
    f.push_back({"block_refs", u(j.hits.blocks)});
    f.push_back({"hit_blocks", u(j.hits.hit_blocks)});
    f.push_back({"input_tokens", u(j.hits.input_tokens)});
    f.push_back({"hit_tokens", u(j.hits.hit_tokens)});
    f.push_back({"block_hit_rate", Fmt(j.hits.block_rate(), 6)});
    f.push_back({"token_hit_rate", Fmt(j.hits.token_rate(), 6)});
    f.push_back({"belady_block_hit_rate", b ? Fmt(b->hits.block_rate(), 6) : (json ? "null" : "")});
    f.push_back({"belady_token_hit_rate", b ? Fmt(b->hits.token_rate(), 6) : (json ? "null" : "")});
    std::string gap = json ? "null" : "";
    if (b != nullptr && l != nullptr && b->hits.block_rate() > l->hits.block_rate() + 1e-12)
      gap = Fmt((j.hits.block_rate() - l->hits.block_rate()) /
                    (b->hits.block_rate() - l->hits.block_rate()), 6);
    f.push_back({"gap_closed_vs_lru", gap});
    f.push_back({"tier1_hits", u(j.belady ? j.hits.hit_blocks : j.result.tier_hits[0])});
    f.push_back({"tier2_hits", u(j.result.tier_hits[1])});
    // Per tier: hit blocks (tokens) served from that tier over all referenced
    // blocks (input tokens); the two add up to the overall rates.
    const double refs = static_cast<double>(std::max<uint64_t>(j.hits.blocks, 1));
    const double toks = static_cast<double>(std::max<uint64_t>(j.hits.input_tokens, 1));
    f.push_back({"tier1_block_hit_rate",
                 Fmt((j.belady ? j.hits.hit_blocks : j.result.tier_hits[0]) / refs, 6)});
    f.push_back({"tier2_block_hit_rate", Fmt(j.result.tier_hits[1] / refs, 6)});
    f.push_back({"tier1_token_hit_rate",
                 Fmt((j.belady ? j.hits.hit_tokens : j.result.tier_hit_tokens[0]) / toks, 6)});
    f.push_back({"tier2_token_hit_rate", Fmt(j.result.tier_hit_tokens[1] / toks, 6)});
    f.push_back({"promotions", u(j.result.promotions)});
    f.push_back({"demotions", u(j.result.demotions)});
    f.push_back({"admission_refused", u(j.result.admission_refused)});
    f.push_back({"tier1_evictions", u(j.result.tier1_evictions)});
    f.push_back({"tier2_evictions", u(j.result.tier2_evictions)});
    f.push_back({"stored_blocks", u(j.result.stored_blocks)});
    f.push_back({"no_space_blocks", u(j.result.no_space_blocks)});
    f.push_back({"policy_memory_bytes", u(j.result.policy_memory)});
    f.push_back({"seconds", Fmt(j.seconds, 3)});
    return f;
  };

  if (!json_path.empty()) {
    FILE* out = std::fopen(json_path.c_str(), "w");
    if (out == nullptr) return Fail("cannot write " + json_path, 1);
    std::fprintf(out, "{\n  \"trace\": {\"name\": %s, \"format\": %s, \"requests\": %zu, "
                 "\"sessions\": %u, \"block_refs\": %zu, \"unique_blocks\": %u, "
                 "\"block_tokens\": %u, \"input_tokens\": %llu, \"ideal_block_hit_rate\": %s, "
                 "\"ideal_token_hit_rate\": %s, \"read_seconds\": %s},\n  \"runs\": [",
                 JsonString(trace.name).c_str(), JsonString(format).c_str(), trace.requests.size(),
                 trace.num_sessions, trace.refs.size(), trace.num_unique_blocks, trace.block_tokens,
                 static_cast<unsigned long long>(trace.total_input_tokens),
                 Fmt(ideal.block_rate(), 6).c_str(), Fmt(ideal.token_rate(), 6).c_str(),
                 Fmt(read_s, 3).c_str());
    bool first = true;
    for (const Job& j : jobs) {
      if (!j.status.ok()) continue;
      std::fprintf(out, "%s\n    {", first ? "" : ",");
      first = false;
      bool ff = true;
      for (const auto& [k, v] : row_fields(j, true)) {
        std::fprintf(out, "%s\"%s\": %s", ff ? "" : ", ", k.c_str(), v.c_str());
        ff = false;
      }
      std::fputc('}', out);
    }
    std::fprintf(out, "\n  ]\n}\n");
    if (std::fclose(out) != 0) return Fail("cannot write " + json_path, 1);
  }
  if (!csv_path.empty()) {
    FILE* out = std::fopen(csv_path.c_str(), "w");
    if (out == nullptr) return Fail("cannot write " + csv_path, 1);
    bool header = true;
    for (const Job& j : jobs) {
      if (!j.status.ok()) continue;
      const auto f = row_fields(j, false);
      if (header) {
        for (size_t i = 0; i < f.size(); ++i) std::fprintf(out, "%s%s", i ? "," : "", f[i].first.c_str());
        std::fputc('\n', out);
        header = false;
      }
      for (size_t i = 0; i < f.size(); ++i) std::fprintf(out, "%s%s", i ? "," : "", f[i].second.c_str());
      std::fputc('\n', out);
    }
    if (std::fclose(out) != 0) return Fail("cannot write " + csv_path, 1);
  }
  return rc;
}

}  // namespace kvtier::bench
