// The admin endpoint's namespace views: GET /v1/namespaces (JSON, or a text
// table with ?format=text), POST /v1/namespaces/ID/evict, and the status
// page's namespace table. Pure functions of Cache::Namespaces() and
// Cache::EvictNamespace() results; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "cache/cache.h"

namespace kvtier {

// {"namespaces":[{"id":0,"model_id":"...","model_revision":"","layout":"...",
//   "tp_rank":0,"tp_size":1,"hash":"xxh3-128","salted":false,"blocks":10,
//   "bytes":...,"hits":...,"pinned":0,"tiers":[{"name":"host","blocks":10,"bytes":...}]}]}
// The tenant salt itself is never shown.
std::string NamespacesJson(const std::vector<NamespaceUsage>& namespaces);
// One line per namespace: id, model, revision, TP, hash, blocks, bytes, hits.
std::string NamespacesText(const std::vector<NamespaceUsage>& namespaces);
// An HTML table (strings escaped), or a line saying there are none.
std::string NamespacesHtml(const std::vector<NamespaceUsage>& namespaces);

// {"namespace":3,"evicted_blocks":..,"evicted_bytes":..,"kept_pinned":..,"evicted_nvme_blocks":..}
std::string EvictionJson(NamespaceId ns, const NamespaceEviction& e);
std::string EvictionText(NamespaceId ns, const NamespaceEviction& e);

// True for a peer address on the loopback interface (127.0.0.0/8, ::1,
// ::ffff:127.x.y.z): who may evict.
bool IsLoopbackPeer(const std::string& remote_addr);

}  // namespace kvtier
