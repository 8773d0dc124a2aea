// Fuzzes the admin endpoint (server/http_server.h, server/admin_http.h):
// the request parser on any bytes, and every handler on whatever parses,
// over sources backed by a real cache; then the same bytes through
// HttpServer::ServeConnection on a socket pair, as a connection thread
// serves them. A malformed request must get a 4xx, never a crash.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "server/admin_http.h"
#include "tests/cache/cache_test_util.h"

namespace {

struct World {
  std::unique_ptr<kvtier::Cache> cache = kvtier::testing::MakeCache(8 << 20, 1 << 20);
  kvtier::RpcMetrics rpc;
  std::unique_ptr<kvtier::AdminServer> admin;
  std::unique_ptr<kvtier::HttpServer> http;
  World() {
    kvtier::AdminSources src;
    kvtier::Cache* c = cache.get();
    src.cache_stats = [c] { return c->Stats(); };
    src.namespaces = [c] { return c->Namespaces(); };
    src.evict_namespace = [c](kvtier::NamespaceId ns) { return c->EvictNamespace(ns); };
    src.rpc = &rpc;
    src.version = "fuzz";
    admin = kvtier::AdminServer::ForHandling(std::move(src));
    kvtier::HttpServer::Options o;
    o.timeout = std::chrono::milliseconds(50);
    o.refused = &rpc.refused;
    auto s = kvtier::HttpServer::Start("127.0.0.1", 0, o, [this](const kvtier::HttpRequest& r) {
      return admin->Handle(r);
    });
    http = std::move(s).value();
    kvtier::NamespaceSpec spec;
    spec.model_id = "fuzz";
    spec.layout = kvtier::KvLayout{1, 1, 64, 16, kvtier::DType::kBF16, 2};
    (void)cache->OpenNamespace(spec, false);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* w = new World();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  kvtier::HttpRequest req;
  size_t head = 0, body = 0;
  if (kvtier::ParseHttpRequest(in, &req, &head, &body) == kvtier::HttpParse::kOk) {
    if (head + body > in.size() + kvtier::kHttpMaxBodyBytes) __builtin_trap();
    req.remote_addr = (size & 1) ? "127.0.0.1" : "10.0.0.1";
    kvtier::HttpResponse r = w->admin->Handle(req);
    if (r.status < 200 || r.status > 599) __builtin_trap();
    (void)kvtier::SerializeHttpResponse(r, req.method == "HEAD");
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  (void)!write(sv[1], data, std::min<size_t>(size, 100000));
  shutdown(sv[1], SHUT_WR);
  w->http->ServeConnection(sv[0], (size & 2) != 0);
  close(sv[0]);
  close(sv[1]);
  return 0;
}
