// kvtier: command-line client of a running kvtierd.
//
//   kvtier health                       is the daemon up and serving?
//   kvtier stats [--json]               cache and tier statistics
//   kvtier lookup --model M ... --tokens 1,2,3 | --tokens-file F
//                                       how much of a prompt is cached
//   kvtier demo [--prompts N] [--blocks N]
//                                       store prompts' KV blocks, load them
//                                       back byte-exact, print the stats
//
// Common flags: --socket PATH (default: $KVTIER_SOCKET, else
// $XDG_RUNTIME_DIR/kvtier.sock, else ./kvtier-data/kvtier.sock — the
// daemon's own default). Exit codes: 0 ok, 1 failure, 2 bad usage.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine_adapter/client.h"
#include "tiers/checksum.h"

namespace kvtier {
namespace {

const char* kUsage =
    "usage: kvtier <command> [flags]\n"
    "\n"
    "commands:\n"
    "  health              ping the daemon; exit 0 when it serves\n"
    "  stats [--json]      cache, tier and connection statistics\n"
    "  namespaces          live namespaces: blocks, bytes, hits, evictions\n"
    "  lookup              how many leading blocks of a token sequence are cached\n"
    "  demo                store prompts' KV blocks, load them back, verify, print stats\n"
    "\n"
    "common flags:\n"
    "  --socket PATH       daemon socket (default: $KVTIER_SOCKET, else\n"
    "                      $XDG_RUNTIME_DIR/kvtier.sock, else ./kvtier-data/kvtier.sock)\n"
    "\n"
    "namespace flags (lookup, demo):\n"
    "  --model ID          model id (default: demo/llama-3-8b)\n"
    "  --revision REV      model revision (default: empty)\n"
    "  --layers N          KV layers (default 32)\n"
    "  --kv-heads N        KV heads (default 8)\n"
    "  --head-dim N        head dimension (default 128)\n"
    "  --block-tokens N    tokens per block (default 16)\n"
    "  --dtype T           bf16, fp16 or fp8 (default bf16)\n"
    "  --tp-rank N --tp-size N   tensor-parallel shard (default 0 of 1)\n"
    "  --salt S            tenant salt (default none)\n"
    "  --hash MODE         xxh3-128 or sha256 (default xxh3-128)\n"
    "\n"
    "lookup flags:\n"
    "  --tokens LIST       comma-separated token ids\n"
    "  --tokens-file F     token ids separated by whitespace or commas\n"
    "\n"
    "demo flags:\n"
    "  --prompts N         prompts to store (default 4)\n"
    "  --blocks N          blocks per prompt (default 32)\n";

std::string DefaultSocket() {
  if (const char* s = std::getenv("KVTIER_SOCKET"); s != nullptr && *s) return s;
  if (const char* r = std::getenv("XDG_RUNTIME_DIR"); r != nullptr && *r && access(r, W_OK) == 0)
    return std::string(r) + "/kvtier.sock";
  return "./kvtier-data/kvtier.sock";
}

struct Args {
  std::string command;
  std::map<std::string, std::string> flags;
  bool json = false;
};

Result<Args> ParseArgs(int argc, char** argv) {
  Args a;
  if (argc < 2) return Status::InvalidArgument("missing command");
  a.command = argv[1];
  static const char* kValued[] = {"socket", "model", "revision", "layers", "kv-heads", "head-dim",
                                  "block-tokens", "dtype", "tp-rank", "tp-size", "salt", "hash",
                                  "tokens", "tokens-file", "prompts", "blocks"};
  for (int i = 2; i < argc; ++i) {
    std::string f = argv[i];
    if (f == "--json") {
      a.json = true;
      continue;
    }
    if (f == "--help" || f == "-h") return Status::InvalidArgument("help");
    if (f.rfind("--", 0) != 0) return Status::InvalidArgument("unexpected argument '" + f + "'");
    std::string name = f.substr(2), value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      if (i + 1 >= argc) return Status::InvalidArgument("flag --" + name + " needs a value");
      value = argv[++i];
    }
    bool known = false;
    for (const char* k : kValued) known |= name == k;
    if (!known) return Status::InvalidArgument("unknown flag --" + name);
    a.flags[name] = value;
  }
  return a;
}

Result<uint32_t> FlagU32(const Args& a, const std::string& name, uint32_t def) {
  auto it = a.flags.find(name);
  if (it == a.flags.end()) return def;
  char* end = nullptr;
  unsigned long v = std::strtoul(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || v > 0xFFFFFFFFul)
    return Status::InvalidArgument("--" + name + " = '" + it->second + "' is not a number");
  return static_cast<uint32_t>(v);
}

std::string Flag(const Args& a, const std::string& name, const std::string& def) {
  auto it = a.flags.find(name);
  return it == a.flags.end() ? def : it->second;
}

Result<NamespaceSpec> SpecFromArgs(const Args& a) {
  NamespaceSpec s;
  s.model_id = Flag(a, "model", "demo/llama-3-8b");
  s.model_revision = Flag(a, "revision", "");
  s.tenant_salt = Flag(a, "salt", "");
  KVTIER_ASSIGN_OR_RETURN(s.layout.num_layers, FlagU32(a, "layers", 32));
  KVTIER_ASSIGN_OR_RETURN(s.layout.num_kv_heads, FlagU32(a, "kv-heads", 8));
  KVTIER_ASSIGN_OR_RETURN(s.layout.head_dim, FlagU32(a, "head-dim", 128));
  KVTIER_ASSIGN_OR_RETURN(s.layout.tokens_per_block, FlagU32(a, "block-tokens", 16));
  KVTIER_ASSIGN_OR_RETURN(s.layout.dtype, ParseDType(Flag(a, "dtype", "bf16")));
  KVTIER_ASSIGN_OR_RETURN(s.tp_rank, FlagU32(a, "tp-rank", 0));
  KVTIER_ASSIGN_OR_RETURN(s.tp_size, FlagU32(a, "tp-size", 1));
  KVTIER_ASSIGN_OR_RETURN(s.hash_mode, ParseHashMode(Flag(a, "hash", "xxh3-128")));
  KVTIER_RETURN_IF_ERROR(s.Validate());
  return s;
}

Result<std::vector<uint32_t>> ParseTokens(const std::string& text) {
  std::vector<uint32_t> out;
  std::string cur;
  auto flush = [&]() -> Status {
    if (cur.empty()) return Status::OK();
    char* end = nullptr;
    unsigned long v = std::strtoul(cur.c_str(), &end, 10);
    if (*end != '\0' || v > 0xFFFFFFFFul)
      return Status::InvalidArgument("'" + cur + "' is not a token id");
    out.push_back(static_cast<uint32_t>(v));
    cur.clear();
    return Status::OK();
  };
  for (char c : text) {
    if (c == ',' || std::isspace(static_cast<unsigned char>(c))) {
      KVTIER_RETURN_IF_ERROR(flush());
    } else {
      cur.push_back(c);
    }
  }
  KVTIER_RETURN_IF_ERROR(flush());
  return out;
}

void PrintStats(const RemoteStats& s, bool json) {
  if (json) {
    std::printf("{\"blocks_ready\":%lu,\"blocks_writing\":%lu,\"pinned_blocks\":%lu,"
                "\"acquires\":%lu,\"blocks_hit\":%lu,\"blocks_missed\":%lu,\"commits\":%lu,"
                "\"aborts\":%lu,\"leases_open\":%lu,\"txns_open\":%lu,\"connections_open\":%lu,"
                "\"tiers\":[",
                s.blocks_ready, s.blocks_writing, s.pinned_blocks, s.acquires, s.blocks_hit,
                s.blocks_missed, s.commits, s.aborts, s.leases_open, s.txns_open,
                s.connections_open);
    for (size_t i = 0; i < s.tiers.size(); ++i) {
      const auto& t = s.tiers[i];
      std::printf("%s{\"name\":\"%s\",\"capacity_bytes\":%lu,\"used_bytes\":%lu,\"blocks\":%lu,"
                  "\"hits\":%lu,\"evictions\":%lu}",
                  i ? "," : "", t.name.c_str(), t.capacity_bytes, t.used_bytes, t.blocks, t.hits,
                  t.evictions);
    }
    std::printf("]}\n");
    return;
  }
  double req = static_cast<double>(s.blocks_hit + s.blocks_missed);
  std::printf("blocks ready %lu, writing %lu, pinned %lu\n", s.blocks_ready, s.blocks_writing,
              s.pinned_blocks);
  std::printf("acquires %lu: %lu blocks hit, %lu missed (hit rate %.1f%%)\n", s.acquires,
              s.blocks_hit, s.blocks_missed, req > 0 ? 100.0 * s.blocks_hit / req : 0.0);
  std::printf("commits %lu, aborts %lu; open: %lu leases, %lu transactions, %lu connections\n",
              s.commits, s.aborts, s.leases_open, s.txns_open, s.connections_open);
  for (const auto& t : s.tiers)
    std::printf("tier %-5s %8.1f / %8.1f MiB used (%5.1f%%), %lu blocks, %lu hits, %lu evictions\n",
                t.name.c_str(), t.used_bytes / 1048576.0, t.capacity_bytes / 1048576.0,
                t.capacity_bytes ? 100.0 * t.used_bytes / t.capacity_bytes : 0.0, t.blocks, t.hits,
                t.evictions);
}

int Fail(const Status& st) {
  std::fprintf(stderr, "kvtier: %s\n", st.ToString().c_str());
  return 1;
}

int Demo(Client& client, const Args& a) {
  auto spec = SpecFromArgs(a);
  if (!spec.ok()) return Fail(spec.status());
  auto prompts = FlagU32(a, "prompts", 4);
  auto blocks = FlagU32(a, "blocks", 32);
  if (!prompts.ok()) return Fail(prompts.status());
  if (!blocks.ok()) return Fail(blocks.status());
  auto ns = client.OpenNamespace(*spec);
  if (!ns.ok()) return Fail(ns.status());
  ClientNamespace& n = **ns;
  const uint64_t bytes = n.block_bytes();
  std::printf("namespace %u: %s, %s, block %.2f MiB\n", n.id(), spec->model_id.c_str(),
              spec->layout.ToString().c_str(), bytes / 1048576.0);
  std::vector<uint8_t> payload(bytes);
  for (uint32_t p = 0; p < *prompts; ++p) {
    // A shared system prompt (first half) and a per-prompt tail.
    std::vector<uint32_t> tokens(static_cast<size_t>(*blocks) * spec->layout.tokens_per_block);
    for (size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = static_cast<uint32_t>(i < tokens.size() / 2 ? i : i * 31 + p * 7919);
    auto keys = n.HashTokens(tokens);
    auto before = n.Lookup(keys);
    if (!before.ok()) return Fail(before.status());
    size_t cached = before->size();
    (void)before->Release();
    auto t0 = std::chrono::steady_clock::now();
    // Store the uncached suffix in one reserve/write/commit.
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<const uint8_t*> ptrs;
    for (size_t i = cached; i < keys.size(); ++i) {
      bufs.emplace_back(bytes);
      for (size_t j = 0; j < bytes; ++j)
        bufs.back()[j] = static_cast<uint8_t>((keys[i].lo >> (j % 8)) + j);
    }
    for (auto& b : bufs) ptrs.push_back(b.data());
    StoreOptions so;
    so.first_parent = cached == 0 ? BlockKey{} : keys[cached - 1];
    size_t stored = 0;
    if (!ptrs.empty()) {
      auto r = n.Store(std::span(keys).subspan(cached), ptrs, so);
      if (!r.ok()) return Fail(r.status());
      stored = r->stored;
    }
    auto lease = n.Lookup(keys);
    if (!lease.ok()) return Fail(lease.status());
    // Load every block back and compare with what was written.
    std::vector<std::vector<uint8_t>> out(lease->size(), std::vector<uint8_t>(bytes));
    std::vector<uint8_t*> dst;
    for (auto& o : out) dst.push_back(o.data());
    Status ls = n.Load(*lease, dst);
    if (!ls.ok()) return Fail(ls);
    for (size_t i = 0; i < out.size(); ++i) {
      for (size_t j = 0; j < bytes; ++j) payload[j] = static_cast<uint8_t>((keys[i].lo >> (j % 8)) + j);
      if (out[i] != payload) return Fail(Status::Corruption("block " + std::to_string(i) + " differs"));
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("prompt %u: %zu blocks, %zu already cached, %zu stored, %zu loaded and verified (%.1f ms)\n",
                p, keys.size(), cached, stored, lease->size(), ms);
  }
  auto st = client.Stats();
  if (!st.ok()) return Fail(st.status());
  std::printf("\n");
  PrintStats(*st, false);
  return 0;
}

int Main(int argc, char** argv) {
  auto args = ParseArgs(argc, argv);
  if (!args.ok()) {
    if (args.status().message() == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "kvtier: %s\n\n%s", args.status().message().c_str(), kUsage);
    return 2;
  }
  const std::string& cmd = args->command;
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (cmd != "health" && cmd != "stats" && cmd != "namespaces" && cmd != "lookup" &&
      cmd != "demo") {
    std::fprintf(stderr, "kvtier: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  }
  std::string socket = Flag(*args, "socket", DefaultSocket());
  auto client = Client::Connect(socket);
  if (!client.ok()) return Fail(client.status());
  if (cmd == "health") {
    Status st = (*client)->Ping();
    if (!st.ok()) return Fail(st);
    std::printf("ok: kvtierd serving on %s\n", socket.c_str());
    return 0;
  }
  if (cmd == "stats") {
    auto st = (*client)->Stats();
    if (!st.ok()) return Fail(st.status());
    PrintStats(*st, args->json);
    return 0;
  }
  if (cmd == "namespaces") {
    auto st = (*client)->Stats();
    if (!st.ok()) return Fail(st.status());
    std::printf("%6s  %-40s %4s %10s %10s %12s %10s %10s\n", "id", "model", "tp", "block", "blocks",
                "MiB", "hits", "evictions");
    for (const auto& n : st->namespaces)
      std::printf("%6u  %-40s %4u %10lu %10lu %12.1f %10lu %10lu%s\n", n.id, n.model_id.c_str(),
                  n.tp_rank, n.block_bytes, n.blocks, n.bytes / 1048576.0, n.hits, n.evictions,
                  n.salted ? "  (tenant)" : "");
    return 0;
  }
  if (cmd == "demo") return Demo(**client, *args);
  // lookup
  auto spec = SpecFromArgs(*args);
  if (!spec.ok()) return Fail(spec.status());
  std::string text;
  if (auto it = args->flags.find("tokens"); it != args->flags.end()) {
    text = it->second;
  } else if (auto f = args->flags.find("tokens-file"); f != args->flags.end()) {
    std::ifstream in(f->second);
    if (!in) return Fail(Status::InvalidArgument("cannot read --tokens-file '" + f->second + "'"));
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  } else {
    std::fprintf(stderr, "kvtier: lookup needs --tokens or --tokens-file\n");
    return 2;
  }
  auto tokens = ParseTokens(text);
  if (!tokens.ok()) return Fail(tokens.status());
  auto ns = (*client)->OpenNamespace(*spec);
  if (!ns.ok()) return Fail(ns.status());
  auto keys = (*ns)->HashTokens(*tokens);
  auto lease = (*ns)->Lookup(keys);
  if (!lease.ok()) return Fail(lease.status());
  size_t tpb = spec->layout.tokens_per_block;
  std::printf("%zu tokens, %zu full blocks; cached prefix: %zu blocks (%zu tokens)\n",
              tokens->size(), keys.size(), lease->size(), lease->size() * tpb);
  for (size_t i = 0; i < lease->size(); ++i) {
    const auto& b = lease->blocks()[i];
    std::printf("  %4zu %s %s offset %lu size %u\n", i, b.key.ToHex().c_str(), TierKindName(b.tier),
                b.offset, b.size);
  }
  return 0;
}

}  // namespace
}  // namespace kvtier

int main(int argc, char** argv) { return kvtier::Main(argc, argv); }
