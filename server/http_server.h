// HttpServer: the small HTTP/1.1 server under kvtierd's admin endpoint, and
// its request parser.
//
// Why not cpp-httplib's server (Debian 12 ships 0.11.4): its timeouts are
// per read, so a client that trickles a byte a second holds a pool thread
// for as long as it likes (8 KiB lines, any number of header lines), and it
// has no connection cap and no hook at accept; four slow clients kept
// /healthz from answering. This server bounds everything a client can hold:
//
//  - one request per connection (answers say "Connection: close");
//  - the whole request must arrive within `timeout` of the accept, and the
//    answer leave within `timeout` more; a client that is late is cut off
//    (counted as admin_timeout);
//  - a request head is at most 8 KiB and 64 header lines, a body at most
//    64 KiB (the admin endpoint takes none): more is answered 431 or 413
//    (admin_bad_request);
//  - at most `max_connections` connections are served at once, each on its
//    own thread; past that, up to `probe_connections` more are served for
//    /healthz and /readyz only, with a one-second deadline, so that the
//    probes answer while slow clients hold every slot; past that, a
//    connection is answered 503 at once and closed (admin_connections).
//
// ParseHttpRequest is a pure function (fuzzed: fuzz/admin_http_fuzz.cc).
// Thread safety: Start, port and Stop from one thread; the handler is called
// from the connection threads concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "server/metrics.h"
#include "tiers/status.h"

namespace kvtier {

struct HttpRequest {
  std::string method;  // "GET", "POST", ... as sent
  std::string path;    // percent-decoded, without the query
  std::map<std::string, std::string> params;  // the query's key=value pairs, decoded
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string remote_addr;                     // numeric peer address
  // The value of query parameter `key`, or "".
  std::string param(const std::string& key) const {
    auto it = params.find(key);
    return it == params.end() ? std::string() : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

inline constexpr size_t kHttpMaxHeadBytes = 8192;
inline constexpr size_t kHttpMaxHeaderLines = 64;
inline constexpr size_t kHttpMaxBodyBytes = 64 * 1024;

enum class HttpParse {
  kIncomplete,  // the head has not all arrived
  kOk,          // *request filled; *head_bytes and *body_bytes set
  kBad,         // malformed (400)
  kHeadTooLarge,  // over kHttpMaxHeadBytes or kHttpMaxHeaderLines (431)
  kBodyTooLarge,  // Content-Length over kHttpMaxBodyBytes, or chunked (413)
};
// Parses the head of a request at the start of `data`.
HttpParse ParseHttpRequest(std::string_view data, HttpRequest* request, size_t* head_bytes,
                           size_t* body_bytes);
// "HTTP/1.1 200 OK\r\nContent-Type: ...\r\nContent-Length: N\r\nConnection: close\r\n\r\nBODY"
// (no body for HEAD requests).
std::string SerializeHttpResponse(const HttpResponse& response, bool head_only);

class HttpServer {
 public:
  struct Options {
    uint32_t max_connections = 32;
    uint32_t probe_connections = 4;  // extra slots for /healthz and /readyz
    std::chrono::milliseconds timeout{5000};
    RefusalMetrics* refused = nullptr;  // counts refusals when set
  };
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  // Binds host:port (port 0 picks one). Errors: InvalidArgument (host does
  // not resolve), IOError (socket, bind, listen), each naming host:port.
  static Result<std::unique_ptr<HttpServer>> Start(const std::string& host, int port,
                                                   Options options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  // Stops accepting, cuts open connections, joins every thread. Idempotent.
  void Stop();

  // Serves one connected socket on the calling thread, as a connection
  // thread does (the caller closes it): for tests and the fuzzer.
  void ServeConnection(int fd, bool probe_only);

 private:
  HttpServer(Options options, Handler handler) : options_(options), handler_(std::move(handler)) {}
  void AcceptLoop();
  void Count(Refusal r) {
    if (options_.refused != nullptr) options_.refused->Count(r);
  }

  Options options_;
  Handler handler_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable done_;
  std::set<int> open_;   // sockets being served
  uint32_t normal_ = 0, probes_ = 0;  // connection threads running
  bool stopping_ = false;
};

}  // namespace kvtier
