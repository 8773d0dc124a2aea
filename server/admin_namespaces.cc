#include "server/admin_namespaces.h"

#include "server/config.h"
#include "tiers/json_string.h"

namespace kvtier {

namespace {

std::string HtmlText(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string Tp(const NamespaceSpec& s) {
  return std::to_string(s.tp_rank) + "/" + std::to_string(s.tp_size);
}

}  // namespace

std::string NamespacesJson(const std::vector<NamespaceUsage>& namespaces) {
  std::string o = "{\"namespaces\":[";
  for (size_t i = 0; i < namespaces.size(); ++i) {
    const NamespaceUsage& u = namespaces[i];
    if (i) o += ',';
    o += "{\"id\":" + std::to_string(u.id) + ",\"model_id\":" + JsonQuoted(u.spec.model_id) +
         ",\"model_revision\":" + JsonQuoted(u.spec.model_revision) +
         ",\"layout\":" + JsonQuoted(u.spec.layout.ToString()) +
         ",\"block_bytes\":" + std::to_string(u.spec.layout.BlockBytes()) +
         ",\"tp_rank\":" + std::to_string(u.spec.tp_rank) +
         ",\"tp_size\":" + std::to_string(u.spec.tp_size) + ",\"hash\":\"" +
         HashModeName(u.spec.hash_mode) + "\",\"salted\":" +
         (u.spec.tenant_salt.empty() ? "false" : "true") + ",\"blocks\":" + std::to_string(u.blocks) +
         ",\"bytes\":" + std::to_string(u.bytes) + ",\"hits\":" + std::to_string(u.hits) +
         ",\"pinned\":" + std::to_string(u.pinned) + ",\"evictions\":" + std::to_string(u.evictions) +
         ",\"holders\":" + std::to_string(u.holders) + ",\"tiers\":[";
    for (size_t t = 0; t < u.tiers.size(); ++t) {
      if (t) o += ',';
      o += "{\"name\":" + JsonQuoted(u.tiers[t].name) + ",\"blocks\":" + std::to_string(u.tiers[t].blocks) +
           ",\"bytes\":" + std::to_string(u.tiers[t].bytes) + "}";
    }
    o += "]}";
  }
  return o + "]}\n";
}

std::string NamespacesText(const std::vector<NamespaceUsage>& namespaces) {
  if (namespaces.empty()) return "no namespaces\n";
  std::string o;
  char buf[200];
  std::snprintf(buf, sizeof(buf), "%4s  %-10s %10s %10s %10s %10s %10s  %-6s %-8s  %s\n", "id", "hash",
                "block", "blocks", "bytes", "hits", "evictions", "tp", "pinned", "model (revision) / tiers");
  o += buf;
  for (const NamespaceUsage& u : namespaces) {
    std::snprintf(buf, sizeof(buf), "%4u  %-10s %10s %10llu %10s %10llu %10llu  %-6s %-8llu  ", u.id,
                  HashModeName(u.spec.hash_mode), FormatSize(u.spec.layout.BlockBytes()).c_str(),
                  static_cast<unsigned long long>(u.blocks), FormatSize(u.bytes).c_str(),
                  static_cast<unsigned long long>(u.hits), static_cast<unsigned long long>(u.evictions),
                  Tp(u.spec).c_str(), static_cast<unsigned long long>(u.pinned));
    o += buf;
    o += u.spec.model_id;
    if (!u.spec.model_revision.empty()) o += " (" + u.spec.model_revision + ")";
    if (!u.spec.tenant_salt.empty()) o += " [salted]";
    std::string tiers;
    for (const auto& t : u.tiers)
      if (t.blocks != 0) tiers += (tiers.empty() ? "" : ", ") + t.name + " " + std::to_string(t.blocks);
    if (!tiers.empty()) o += " / " + tiers;
    o += '\n';
  }
  return o;
}

std::string NamespacesHtml(const std::vector<NamespaceUsage>& namespaces) {
  if (namespaces.empty()) return "<p>No namespace registered yet.</p>\n";
  std::string h =
      "<table><tr><th>id</th><th>model</th><th>revision</th><th>TP</th><th>hash</th>"
      "<th>blocks</th><th>bytes</th><th>hits</th><th>pinned</th><th>by tier</th></tr>\n";
  for (const NamespaceUsage& u : namespaces) {
    std::string tiers;
    for (const auto& t : u.tiers)
      if (t.blocks != 0) tiers += (tiers.empty() ? "" : ", ") + HtmlText(t.name) + " " + std::to_string(t.blocks);
    h += "<tr><td>" + std::to_string(u.id) + "</td><td>" + HtmlText(u.spec.model_id) +
         (u.spec.tenant_salt.empty() ? "" : " (salted)") + "</td><td>" + HtmlText(u.spec.model_revision) +
         "</td><td>" + Tp(u.spec) + "</td><td>" + HashModeName(u.spec.hash_mode) + "</td><td>" +
         std::to_string(u.blocks) + "</td><td>" + FormatSize(u.bytes) + "</td><td>" +
         std::to_string(u.hits) + "</td><td>" + std::to_string(u.pinned) + "</td><td>" + tiers +
         "</td></tr>\n";
  }
  return h + "</table>\n";
}

std::string EvictionJson(NamespaceId ns, const NamespaceEviction& e) {
  return "{\"namespace\":" + std::to_string(ns) + ",\"evicted_blocks\":" + std::to_string(e.blocks) +
         ",\"evicted_bytes\":" + std::to_string(e.bytes) + ",\"kept_pinned\":" +
         std::to_string(e.kept_pinned) + ",\"evicted_nvme_blocks\":" + std::to_string(e.nvme_blocks) +
         "}\n";
}

std::string EvictionText(NamespaceId ns, const NamespaceEviction& e) {
  return "namespace " + std::to_string(ns) + ": evicted " + std::to_string(e.blocks) + " blocks (" +
         FormatSize(e.bytes) + ") from the memory tiers and " + std::to_string(e.nvme_blocks) +
         " from NVMe; kept " + std::to_string(e.kept_pinned) +
         " in use (pinned, being written or moved)\n";
}

bool IsLoopbackPeer(const std::string& a) {
  return a == "::1" || a.rfind("127.", 0) == 0 || a.rfind("::ffff:127.", 0) == 0;
}

}  // namespace kvtier
