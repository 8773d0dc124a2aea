// kvtier: command-line client of a running kvtierd.
//
//   kvtier health [--json]              is the daemon up and serving?
//   kvtier stats [--json]               cache and tier statistics
//   kvtier lookup --model M ... --tokens 1,2,3 | --tokens-file F [--json]
//                                       how much of a prompt is cached
//   kvtier demo [--prompts N] [--blocks N]
//                                       store prompts' KV blocks, load them
//                                       back byte-exact, print the stats
//   kvtier hash --model M ... --tokens 1,2,3 [--json]
//                                       the block keys of a token sequence
//                                       (docs/hashing.md; no daemon needed)
//   kvtier namespaces [--admin HOST:PORT] [--json]
//                                       the daemon's namespaces: blocks,
//                                       bytes and hits per tier
//   kvtier evict --namespace ID [--admin HOST:PORT] [--json]
//                                       drop a namespace's blocks from the
//                                       memory tiers (privileged: see below)
//
// namespaces and evict talk to the daemon's admin endpoint (default
// 127.0.0.1:9477), not its socket: the daemon serves evict only to a peer on
// the loopback interface (POST /v1/namespaces/ID/evict), so it may be called
// by whoever can log in to the host (or exec into the daemon's pod), never
// from another host even when --admin listens on 0.0.0.0 for scrapers.
//
// Flags follow server/cli.h (CLI11): --flag VALUE or --flag=VALUE, booleans
// bare or --json=false, `kvtier COMMAND --help` per command. Common flag:
// --socket PATH (default: $KVTIER_SOCKET, else $XDG_RUNTIME_DIR/kvtier.sock,
// else ./kvtier-data/kvtier.sock — the daemon's own default). Exit codes: 0
// ok, 1 failure, 2 bad usage (one line on stderr, before anything is sent).
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

#include <httplib.h>

#include "engine_adapter/client.h"
#include "server/cli.h"
#include "tiers/checksum.h"
#include "tiers/json_string.h"

namespace kvtier {
namespace {

std::string DefaultSocket() {
  if (const char* s = std::getenv("KVTIER_SOCKET"); s != nullptr && *s) return s;
  if (const char* r = std::getenv("XDG_RUNTIME_DIR"); r != nullptr && *r && access(r, W_OK) == 0)
    return std::string(r) + "/kvtier.sock";
  return "./kvtier-data/kvtier.sock";
}

// The namespace flags of lookup and demo (and their defaults).
struct NamespaceFlags {
  std::string model = "demo/llama-3-8b";
  std::string revision;
  uint32_t layers = 32, kv_heads = 8, head_dim = 128, block_tokens = 16;
  std::string dtype = "bf16";
  uint32_t tp_rank = 0, tp_size = 1;
  std::string salt;
  std::string hash = "xxh3-128";

  void AddTo(CLI::App* cmd) {
    cmd->add_option("--model", model, "model id")->capture_default_str();
    cmd->add_option("--revision", revision, "model revision (default: empty)");
    cmd->add_option("--layers", layers, "KV layers")->capture_default_str()->check(CLI::Range(1u, 4096u));
    cmd->add_option("--kv-heads", kv_heads, "KV heads")->capture_default_str()->check(CLI::Range(1u, 4096u));
    cmd->add_option("--head-dim", head_dim, "head dimension")->capture_default_str()->check(CLI::Range(1u, 65536u));
    cmd->add_option("--block-tokens", block_tokens, "tokens per block")
        ->capture_default_str()->check(CLI::Range(1u, 1u << 20));
    cmd->add_option("--dtype", dtype, "KV dtype")->capture_default_str()->check(CLI::IsMember({"bf16", "fp16", "fp8"}));
    cmd->add_option("--tp-rank", tp_rank, "tensor-parallel rank")->capture_default_str();
    cmd->add_option("--tp-size", tp_size, "tensor-parallel size")->capture_default_str()->check(CLI::Range(1u, 1024u));
    cmd->add_option("--salt", salt, "tenant salt (default: none)");
    cmd->add_option("--hash", hash, "key hash")->capture_default_str()->check(CLI::IsMember({"xxh3-128", "sha256"}));
  }

  Result<NamespaceSpec> Spec() const {
    NamespaceSpec s;
    s.model_id = model;
    s.model_revision = revision;
    s.tenant_salt = salt;
    s.layout.num_layers = layers;
    s.layout.num_kv_heads = kv_heads;
    s.layout.head_dim = head_dim;
    s.layout.tokens_per_block = block_tokens;
    KVTIER_ASSIGN_OR_RETURN(s.layout.dtype, ParseDType(dtype));
    s.tp_rank = tp_rank;
    s.tp_size = tp_size;
    KVTIER_ASSIGN_OR_RETURN(s.hash_mode, ParseHashMode(hash));
    KVTIER_RETURN_IF_ERROR(s.Validate());
    return s;
  }
};

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

std::string StatsJson(const RemoteStats& s) {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "{\"blocks_ready\":%lu,\"blocks_writing\":%lu,\"pinned_blocks\":%lu,"
                "\"acquires\":%lu,\"blocks_hit\":%lu,\"blocks_missed\":%lu,\"commits\":%lu,"
                "\"aborts\":%lu,\"leases_open\":%lu,\"txns_open\":%lu,\"connections_open\":%lu,"
                "\"tiers\":[",
                s.blocks_ready, s.blocks_writing, s.pinned_blocks, s.acquires, s.blocks_hit,
                s.blocks_missed, s.commits, s.aborts, s.leases_open, s.txns_open, s.connections_open);
  std::string out = buf;
  for (size_t i = 0; i < s.tiers.size(); ++i) {
    const auto& t = s.tiers[i];
    std::snprintf(buf, sizeof(buf),
                  ",\"capacity_bytes\":%lu,\"used_bytes\":%lu,\"blocks\":%lu,\"hits\":%lu,"
                  "\"evictions\":%lu}",
                  t.capacity_bytes, t.used_bytes, t.blocks, t.hits, t.evictions);
    out += std::string(i ? "," : "") + "{\"name\":" + JsonQuoted(t.name) + buf;
  }
  return out + "]}";
}

void PrintStats(const RemoteStats& s, bool json) {
  if (json) {
    std::printf("%s\n", StatsJson(s).c_str());
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

int Demo(Client& client, const NamespaceFlags& flags, uint32_t prompts, uint32_t blocks, bool json) {
  auto spec = flags.Spec();
  if (!spec.ok()) return Fail(spec.status());
  std::string records;  // --json: one object per prompt
  auto ns = client.OpenNamespace(*spec);
  if (!ns.ok()) return Fail(ns.status());
  ClientNamespace& n = **ns;
  const uint64_t bytes = n.block_bytes();
  if (!json)
    std::printf("namespace %u: %s, %s, block %.2f MiB\n", n.id(), spec->model_id.c_str(),
                spec->layout.ToString().c_str(), bytes / 1048576.0);
  std::vector<uint8_t> payload(bytes);
  for (uint32_t p = 0; p < prompts; ++p) {
    // A shared system prompt (first half) and a per-prompt tail.
    std::vector<uint32_t> tokens(static_cast<size_t>(blocks) * spec->layout.tokens_per_block);
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
    if (json) {
      char buf[256];
      std::snprintf(buf, sizeof(buf),
                    "%s{\"prompt\":%u,\"blocks\":%zu,\"cached\":%zu,\"stored\":%zu,"
                    "\"verified\":%zu,\"ms\":%.3f}",
                    p ? "," : "", p, keys.size(), cached, stored, lease->size(), ms);
      records += buf;
    } else {
      std::printf("prompt %u: %zu blocks, %zu already cached, %zu stored, %zu loaded and verified (%.1f ms)\n",
                  p, keys.size(), cached, stored, lease->size(), ms);
    }
  }
  auto st = client.Stats();
  if (!st.ok()) return Fail(st.status());
  if (json) {
    std::printf("{\"namespace\":%u,\"prompts\":[%s],\"stats\":%s}\n", n.id(), records.c_str(),
                StatsJson(*st).c_str());
    return 0;
  }
  std::printf("\n");
  PrintStats(*st, false);
  return 0;
}

Result<std::string> ReadTokensText(const std::string& text, const std::string& file) {
  if (file.empty()) return text;
  std::ifstream in(file);
  if (!in) return Status::InvalidArgument("cannot read --tokens-file '" + file + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// kvtier hash: what an engine's own implementation of docs/hashing.md must
// print for the same namespace and tokens.
int Hash(const NamespaceSpec& spec, const std::string& tokens_text, const std::string& tokens_file,
         bool json) {
  auto text = ReadTokensText(tokens_text, tokens_file);
  if (!text.ok()) return Fail(text.status());
  auto tokens = ParseTokens(*text);
  if (!tokens.ok()) return Fail(tokens.status());
  KeyHasher h(spec);
  std::vector<BlockKey> keys;
  h.Hash(*tokens, &keys);
  const size_t tpb = spec.layout.tokens_per_block;
  if (json) {
    std::string out = "{\"hash\":\"" + std::string(HashModeName(spec.hash_mode)) + "\",\"seed\":\"" +
                      h.seed().ToHex() + "\",\"tokens\":" + std::to_string(tokens->size()) +
                      ",\"tokens_per_block\":" + std::to_string(tpb) + ",\"keys\":[";
    for (size_t i = 0; i < keys.size(); ++i) out += std::string(i ? "," : "") + "\"" + keys[i].ToHex() + "\"";
    std::printf("%s]}\n", out.c_str());
    return 0;
  }
  std::printf("%s seed %s\n", HashModeName(spec.hash_mode), h.seed().ToHex().c_str());
  std::printf("%zu tokens, %zu full blocks of %zu (a partial last block has no key)\n", tokens->size(),
              keys.size(), tpb);
  for (size_t i = 0; i < keys.size(); ++i)
    std::printf("  %4zu tokens %zu..%zu %s\n", i, i * tpb, (i + 1) * tpb - 1, keys[i].ToHex().c_str());
  return 0;
}

// GET or POST on the admin endpoint; the body of a 200 answer.
Result<std::string> AdminCall(const std::string& admin, const std::string& method, const std::string& path) {
  std::string host = admin;
  int port = 9477;
  if (const size_t colon = admin.rfind(':'); colon != std::string::npos) {
    host = admin.substr(0, colon);
    port = std::atoi(admin.c_str() + colon + 1);
  }
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  httplib::Client cli(host, port);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(60);
  auto res = method == "POST" ? cli.Post(path.c_str()) : cli.Get(path.c_str());
  if (!res)
    return Status::Unavailable("no admin endpoint at " + admin + " (" + httplib::to_string(res.error()) +
                               "); is kvtierd running with --admin " + admin + "?");
  if (res->status != 200) {
    std::string body = res->body;
    while (!body.empty() && body.back() == '\n') body.pop_back();
    return res->status == 403 ? Status::Rejected(body) : res->status == 404 ? Status::NotFound(body)
                                                                             : Status::Internal(body);
  }
  return res->body;
}

int Namespaces(const std::string& admin, bool json) {
  auto body = AdminCall(admin, "GET", "/v1/namespaces");
  if (!body.ok()) return Fail(body.status());
  if (json) {
    std::fputs(body->c_str(), stdout);
    return 0;
  }
  // The text form is the daemon's own table (GET /v1/namespaces?format=text).
  auto text = AdminCall(admin, "GET", "/v1/namespaces?format=text");
  if (!text.ok()) return Fail(text.status());
  std::fputs(text->c_str(), stdout);
  return 0;
}

int Evict(const std::string& admin, uint32_t ns, bool json) {
  auto body = AdminCall(admin, "POST", "/v1/namespaces/" + std::to_string(ns) + "/evict" +
                                           (json ? "" : "?format=text"));
  if (!body.ok()) return Fail(body.status());
  std::fputs(body->c_str(), stdout);
  return 0;
}

int Main(int argc, char** argv) {
  CLI::App app("kvtier: command-line client of a running kvtierd", "kvtier");
  app.require_subcommand(1);
  std::string socket = DefaultSocket();
  bool json = false;
  // Flags every command takes, after its name.
  auto common = [&](CLI::App* cmd) {
    cmd->add_option("--socket", socket, "daemon socket ($KVTIER_SOCKET, else $XDG_RUNTIME_DIR/"
                                        "kvtier.sock, else ./kvtier-data/kvtier.sock)")
        ->capture_default_str();
    cmd->add_flag("--json", json, "print one JSON object instead of text");
  };
  CLI::App* health = app.add_subcommand("health", "ping the daemon; exit 0 when it serves");
  common(health);
  CLI::App* stats = app.add_subcommand("stats", "cache, tier and connection statistics");
  common(stats);

  NamespaceFlags ns_flags;
  CLI::App* lookup = app.add_subcommand("lookup", "how many leading blocks of a token sequence are cached");
  common(lookup);
  ns_flags.AddTo(lookup);
  std::string tokens_text, tokens_file;
  auto* tok = lookup->add_option("--tokens", tokens_text, "comma-separated token ids");
  auto* tokf = lookup->add_option("--tokens-file", tokens_file, "token ids separated by whitespace or commas")
                   ->check(CLI::ExistingFile);
  tok->excludes(tokf);

  CLI::App* demo = app.add_subcommand("demo", "store prompts' KV blocks, load them back, verify, print stats");
  common(demo);
  ns_flags.AddTo(demo);
  uint32_t prompts = 4, blocks = 32;
  demo->add_option("--prompts", prompts, "prompts to store")->capture_default_str()->check(CLI::Range(1u, 100000u));
  demo->add_option("--blocks", blocks, "blocks per prompt")->capture_default_str()->check(CLI::Range(1u, 100000u));

  CLI::App* hash = app.add_subcommand("hash", "the block keys of a token sequence (no daemon needed)");
  hash->add_flag("--json", json, "print one JSON object instead of text");
  ns_flags.AddTo(hash);
  hash->add_option("--tokens", tokens_text, "comma-separated token ids");
  hash->add_option("--tokens-file", tokens_file, "token ids separated by whitespace or commas")
      ->check(CLI::ExistingFile);

  std::string admin = "127.0.0.1:9477";
  auto admin_flags = [&](CLI::App* cmd) {
    cmd->add_option("--admin", admin, "the daemon's admin endpoint")->capture_default_str();
    cmd->add_flag("--json", json, "print one JSON object instead of text");
  };
  CLI::App* namespaces = app.add_subcommand("namespaces", "the daemon's namespaces: blocks, bytes, hits");
  admin_flags(namespaces);
  CLI::App* evict = app.add_subcommand(
      "evict", "drop a namespace's blocks from the memory tiers (from the daemon's host only)");
  admin_flags(evict);
  uint32_t evict_ns = 0;
  evict->add_option("--namespace", evict_ns, "namespace id (kvtier namespaces)")->required();

  if (int rc = cli::Parse(app, argc, argv); rc >= 0) return rc;
  const CLI::App* cmd = cli::Selected(&app);
  if ((lookup->parsed() || hash->parsed()) && tokens_text.empty() && tokens_file.empty()) {
    std::fprintf(stderr, "kvtier %s: give --tokens or --tokens-file (see kvtier %s --help)\n",
                 cmd->get_name().c_str(), cmd->get_name().c_str());
    return cli::kUsageError;
  }
  if (hash->parsed() && !tokens_text.empty() && !tokens_file.empty()) {
    std::fprintf(stderr, "kvtier hash: give --tokens or --tokens-file, not both\n");
    return cli::kUsageError;
  }
  // Namespace flags are checked as a whole before connecting.
  Result<NamespaceSpec> spec = ns_flags.Spec();
  if ((lookup->parsed() || demo->parsed() || hash->parsed()) && !spec.ok()) {
    std::fprintf(stderr, "kvtier %s: %s\n", cmd->get_name().c_str(), spec.status().ToString().c_str());
    return cli::kUsageError;
  }
  if (hash->parsed()) return Hash(*spec, tokens_text, tokens_file, json);
  if (namespaces->parsed()) return Namespaces(admin, json);
  if (evict->parsed()) return Evict(admin, evict_ns, json);

  auto client = Client::Connect(socket);
  if (!client.ok()) return Fail(client.status());
  if (health->parsed()) {
    Status st = (*client)->Ping();
    if (!st.ok()) return Fail(st);
    if (json) {
      std::printf("{\"ok\":true,\"socket\":%s}\n", JsonQuoted(socket).c_str());
    } else {
      std::printf("ok: kvtierd serving on %s\n", socket.c_str());
    }
    return 0;
  }
  if (stats->parsed()) {
    auto st = (*client)->Stats();
    if (!st.ok()) return Fail(st.status());
    PrintStats(*st, json);
    return 0;
  }
  if (demo->parsed()) return Demo(**client, ns_flags, prompts, blocks, json);
  // lookup
  auto text = ReadTokensText(tokens_text, tokens_file);
  if (!text.ok()) return Fail(text.status());
  auto tokens = ParseTokens(*text);
  if (!tokens.ok()) return Fail(tokens.status());
  auto ns = (*client)->OpenNamespace(*spec);
  if (!ns.ok()) return Fail(ns.status());
  auto keys = (*ns)->HashTokens(*tokens);
  auto lease = (*ns)->Lookup(keys);
  if (!lease.ok()) return Fail(lease.status());
  size_t tpb = spec->layout.tokens_per_block;
  if (json) {
    std::string out = "{\"tokens\":" + std::to_string(tokens->size()) +
                      ",\"blocks\":" + std::to_string(keys.size()) +
                      ",\"cached_blocks\":" + std::to_string(lease->size()) +
                      ",\"cached_tokens\":" + std::to_string(lease->size() * tpb) + ",\"cached\":[";
    for (size_t i = 0; i < lease->size(); ++i) {
      const auto& b = lease->blocks()[i];
      out += std::string(i ? "," : "") + "{\"key\":\"" + b.key.ToHex() + "\",\"tier\":\"" +
             TierKindName(b.tier) + "\",\"offset\":" + std::to_string(b.offset) +
             ",\"size\":" + std::to_string(b.size) + "}";
    }
    std::printf("%s]}\n", out.c_str());
    return 0;
  }
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
