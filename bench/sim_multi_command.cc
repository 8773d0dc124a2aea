// kvtier-bench sim --model NAME=TRACE:BLOCK ... : several models, each a
// trace with its own block size, replayed together (bench/sim_multi.h).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/sim_command.h"
#include "bench/sim_multi.h"
#include "bench/trace_reader.h"

namespace kvtier::bench {

namespace {

const char* kMultiUsage =
    "sim with several models (two or more --model):\n"
    "  --model NAME=TRACE:BLOCK  a model: its trace (.jsonl or agentic) and block size\n"
    "                            (bytes, or with KiB/MiB/GiB); repeat per model\n"
    "  --capacity LIST           total bytes of the memory tier: P% of all models'\n"
    "                            distinct bytes (distinct blocks x block size) or\n"
    "                            bytes (e.g. 8GiB)\n"
    "                            default 5%,10%\n"
    "  --policy NAME             eviction policy (default adaptive-2q)\n"
    "  --region BYTES            slab region (default 64MiB)\n"
    "  --max-requests N          replay only each trace's first N requests\n"
    "Each capacity is replayed three ways: shared (one tier, regions move between\n"
    "sizes), static (a tier of capacity/models per model), proportional (a tier\n"
    "per model sized by its share of the bytes referenced).\n";

int Fail(const std::string& msg) {
  std::fprintf(stderr, "kvtier-bench sim: %s\n", msg.c_str());
  return 2;
}

bool ParseBytes(const std::string& s, uint64_t* out) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || !(v > 0) || !std::isfinite(v)) return false;
  const std::string unit(end);
  double mult = 1;
  if (unit == "KiB" || unit == "K") {
    mult = 1024.0;
  } else if (unit == "MiB" || unit == "M") {
    mult = 1024.0 * 1024;
  } else if (unit == "GiB" || unit == "G") {
    mult = 1024.0 * 1024 * 1024;
  } else if (!unit.empty() && unit != "B") {
    return false;
  }
  *out = static_cast<uint64_t>(v * mult);
  return *out > 0;
}

}  // namespace

bool IsMultiModelSim(int argc, char** argv) {
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) == "--model") return true;
  return false;
}

int RunMultiSim(int argc, char** argv) {
  struct ModelArg {
    std::string name, path;
    uint64_t block_bytes = 0;
  };
  std::vector<ModelArg> args;
  std::vector<std::string> caps = {"5%", "10%"};
  MultiReplayOptions mo;
  uint64_t max_requests = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--help" || f == "-h") {
      std::fputs(kMultiUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) return Fail("flag " + f + " needs a value");
    const std::string v = argv[++i];
    if (f == "--model") {
      const size_t eq = v.find('='), colon = v.rfind(':');
      ModelArg m;
      if (eq == std::string::npos || colon == std::string::npos || colon < eq ||
          !ParseBytes(v.substr(colon + 1), &m.block_bytes))
        return Fail("--model is NAME=TRACE:BLOCK_BYTES, not '" + v + "'");
      m.name = v.substr(0, eq);
      m.path = v.substr(eq + 1, colon - eq - 1);
      args.push_back(m);
    } else if (f == "--capacity") {
      caps = SplitList(v);
    } else if (f == "--policy") {
      mo.policy = v;
    } else if (f == "--region") {
      if (!ParseBytes(v, &mo.region_bytes)) return Fail("bad --region '" + v + "'");
    } else if (f == "--max-requests") {
      max_requests = std::strtoull(v.c_str(), nullptr, 10);
    } else {
      return Fail("unknown flag " + f + "\n" + kMultiUsage);
    }
  }
  if (args.size() < 2) return Fail("give two or more --model");
  std::vector<std::unique_ptr<Trace>> traces;
  std::vector<SimModel> models;
  uint64_t demand = 0;
  for (const ModelArg& a : args) {
    TraceReadOptions ro;
    ro.max_requests = max_requests;
    ro.name = a.name;
    auto t = ReadTrace(a.path, ro);
    if (!t.ok()) return Fail(a.path + ": " + t.status().ToString());
    traces.push_back(std::make_unique<Trace>(std::move(t).value()));
    models.push_back(SimModel{a.name, traces.back().get(), a.block_bytes});
    const uint64_t distinct = uint64_t{traces.back()->num_unique_blocks} * a.block_bytes;
    demand += distinct;
    std::printf("model %-8s %-50s block %8lu B, %5zu requests, %6u distinct blocks (%.2f GiB), "
                "%.2f GiB referenced\n",
                a.name.c_str(), a.path.c_str(), a.block_bytes, traces.back()->requests.size(),
                traces.back()->num_unique_blocks, static_cast<double>(distinct) / (1ull << 30),
                static_cast<double>(DemandBytes(models.back())) / (1ull << 30));
  }
  std::printf("policy %s, region %lu MiB; hit rate = hit blocks / referenced blocks\n\n",
              mo.policy.c_str(), mo.region_bytes >> 20);
  std::printf("%-10s %-13s", "capacity", "layout");
  for (const SimModel& m : models) std::printf(" %12s", m.name.c_str());
  std::printf(" %9s %9s %8s %7s\n", "overall", "no-space", "regions", "sec");
  for (const std::string& c : caps) {
    uint64_t bytes = 0;
    if (!c.empty() && c.back() == '%') {
      bytes = static_cast<uint64_t>(std::strtod(c.c_str(), nullptr) / 100.0 *
                                    static_cast<double>(demand));
    } else if (!ParseBytes(c, &bytes)) {
      return Fail("bad capacity '" + c + "'");
    }
    mo.capacity_bytes = bytes;
    for (MultiLayout l : {MultiLayout::kShared, MultiLayout::kStatic, MultiLayout::kProportional}) {
      mo.layout = l;
      auto r = ReplayModels(models, mo);
      if (!r.ok()) return Fail(r.status().ToString());
      std::printf("%-10s %-13s", c.c_str(), MultiLayoutName(l));
      for (const PrefixHitCounts& h : r->models) std::printf(" %12.4f", h.block_rate());
      std::printf(" %9.4f %9lu %8lu %7.1f\n", r->overall.block_rate(), r->no_space_blocks,
                  r->regions_moved, r->seconds);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace kvtier::bench
