#include "server/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace kvtier {
namespace {

using Clock = std::chrono::steady_clock;

bool IsToken(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding ("+" is a space in a query); false on a bad escape.
bool Decode(std::string_view in, bool query, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && query) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

const char* Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
  }
  return "Unknown";
}

// Writes all of `data` before `deadline`; false when it could not.
bool WriteAll(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
  }
  return true;
}

void SendStatus(int fd, int status, const std::string& body) {
  HttpResponse r;
  r.status = status;
  r.body = body;
  WriteAll(fd, SerializeHttpResponse(r, false), Clock::now() + std::chrono::milliseconds(100));
}

std::string PeerAddress(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "";
  char host[NI_MAXHOST] = "";
  if (getnameinfo(reinterpret_cast<sockaddr*>(&a), len, host, sizeof(host), nullptr, 0,
                  NI_NUMERICHOST) != 0)
    return "";
  return host;
}

}  // namespace

HttpParse ParseHttpRequest(std::string_view data, HttpRequest* req, size_t* head_bytes,
                           size_t* body_bytes) {
  const size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (data.size() > kHttpMaxHeadBytes) return HttpParse::kHeadTooLarge;
    return HttpParse::kIncomplete;
  }
  if (end + 4 > kHttpMaxHeadBytes) return HttpParse::kHeadTooLarge;
  std::string_view head = data.substr(0, end + 2);  // each line ends with \r\n
  *req = HttpRequest();

  // Request line: METHOD SP TARGET SP HTTP/1.x
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  head.remove_prefix(eol + 2);
  const size_t sp1 = line.find(' ');
  if (sp1 == 0 || sp1 == std::string_view::npos) return HttpParse::kBad;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return HttpParse::kBad;
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                   version = line.substr(sp2 + 1);
  for (char c : method)
    if (!IsToken(c)) return HttpParse::kBad;
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return HttpParse::kBad;
  if (target.empty() || target[0] != '/') return HttpParse::kBad;
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return HttpParse::kBad;
  req->method = std::string(method);
  const size_t q = target.find('?');
  if (!Decode(target.substr(0, q), false, &req->path)) return HttpParse::kBad;
  if (q != std::string_view::npos) {
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
      const size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (pair.empty()) continue;
      const size_t eq = pair.find('=');
      std::string k, v;
      if (!Decode(pair.substr(0, eq), true, &k)) return HttpParse::kBad;
      if (eq != std::string_view::npos && !Decode(pair.substr(eq + 1), true, &v))
        return HttpParse::kBad;
      req->params.emplace(std::move(k), std::move(v));
    }
  }

  // Header lines: NAME ":" OWS VALUE OWS
  size_t lines = 0;
  while (!head.empty()) {
    if (++lines > kHttpMaxHeaderLines) return HttpParse::kHeadTooLarge;
    eol = head.find("\r\n");
    line = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    const size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return HttpParse::kBad;
    std::string name(line.substr(0, colon));
    for (char& c : name) {
      if (!IsToken(c)) return HttpParse::kBad;
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    for (char c : value)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return HttpParse::kBad;
    req->headers[name] = std::string(value);
  }

  *body_bytes = 0;
  if (auto te = req->headers.find("transfer-encoding"); te != req->headers.end())
    return HttpParse::kBodyTooLarge;  // no endpoint takes a body; chunked ones are refused
  if (auto cl = req->headers.find("content-length"); cl != req->headers.end()) {
    const std::string& v = cl->second;
    if (v.empty() || v.size() > 9) return v.size() > 9 ? HttpParse::kBodyTooLarge : HttpParse::kBad;
    size_t n = 0;
    for (char c : v) {
      if (c < '0' || c > '9') return HttpParse::kBad;
      n = n * 10 + static_cast<size_t>(c - '0');
    }
    if (n > kHttpMaxBodyBytes) return HttpParse::kBodyTooLarge;
    *body_bytes = n;
  }
  *head_bytes = end + 4;
  return HttpParse::kOk;
}

std::string SerializeHttpResponse(const HttpResponse& r, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + Reason(r.status) +
                    "\r\nContent-Type: " + r.content_type +
                    "\r\nContent-Length: " + std::to_string(r.body.size()) +
                    "\r\nConnection: close\r\n\r\n";
  if (!head_only) out += r.body;
  return out;
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& host, int port,
                                                      Options options, Handler handler) {
  const std::string where = (host.find(':') != std::string::npos ? "[" + host + "]" : host) +
                            ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0)
    return Status::InvalidArgument("'" + where + "': cannot resolve host '" + host +
                                   "': " + gai_strerror(rc));
  std::unique_ptr<HttpServer> s(new HttpServer(options, std::move(handler)));
  std::string error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    // SO_REUSEADDR (a restart may bind while old connections sit in
    // TIME_WAIT), never SO_REUSEPORT (a second daemon must fail to bind).
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
      error = std::strerror(errno);
      close(fd);
      continue;
    }
    s->listen_fd_ = fd;
    break;
  }
  freeaddrinfo(found);
  if (s->listen_fd_ < 0) return Status::IOError("'" + where + "': cannot bind: " + error);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(s->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  s->port_ = ntohs(bound.ss_family == AF_INET6
                       ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                       : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (pipe2(s->wake_, O_CLOEXEC | O_NONBLOCK) != 0)
    return Status::IOError("'" + where + "': pipe: " + std::strerror(errno));
  s->acceptor_ = std::thread([p = s.get()] { p->AcceptLoop(); });
  return s;
}

HttpServer::~HttpServer() {
  Stop();
  if (listen_fd_ >= 0) close(listen_fd_);
  for (int f : wake_)
    if (f >= 0) close(f);
}

void HttpServer::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
    stopping_ = true;
    for (int fd : open_) shutdown(fd, SHUT_RDWR);  // wakes their polls
  }
  if (wake_[1] >= 0) (void)!write(wake_[1], "x", 1);
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) close(listen_fd_);  // new clients are refused, not left waiting
  listen_fd_ = -1;
  std::unique_lock<std::mutex> l(mu_);
  done_.wait(l, [this] { return normal_ == 0 && probes_ == 0; });
}

void HttpServer::AcceptLoop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) return;
    if (p[1].revents != 0) return;
    if ((p[0].revents & POLLIN) == 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    bool probe = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) {
        close(fd);
        return;
      }
      if (normal_ < options_.max_connections) {
        ++normal_;
      } else if (probes_ < options_.probe_connections) {
        ++probes_;
        probe = true;
      } else {
        fd = -fd - 1;  // refused below, outside the lock
      }
      if (fd >= 0) open_.insert(fd);
    }
    if (fd < 0) {
      fd = -fd - 1;
      Count(Refusal::kAdminConnections);
      SendStatus(fd, 503, "too many admin connections\n");
      close(fd);
      continue;
    }
    try {
      std::thread([this, fd, probe] {
        ServeConnection(fd, probe);
        std::lock_guard<std::mutex> l(mu_);
        open_.erase(fd);
        close(fd);
        --(probe ? probes_ : normal_);
        done_.notify_all();
      }).detach();
    } catch (const std::system_error&) {  // no thread to be had: refuse, never crash
      {
        std::lock_guard<std::mutex> l(mu_);
        open_.erase(fd);
        --(probe ? probes_ : normal_);
        done_.notify_all();
      }
      Count(Refusal::kAdminConnections);
      SendStatus(fd, 503, "too many admin connections\n");
      close(fd);
    }
  }
}

void HttpServer::ServeConnection(int fd, bool probe_only) {
  const auto deadline =
      Clock::now() + (probe_only ? std::chrono::milliseconds(1000) : options_.timeout);
  std::string data;
  HttpRequest req;
  size_t head = 0, body = 0;
  HttpParse parsed = HttpParse::kIncomplete;
  char buf[4096];
  for (;;) {
    parsed = ParseHttpRequest(data, &req, &head, &body);
    if (parsed == HttpParse::kOk && data.size() >= head + body) break;
    if (parsed != HttpParse::kOk && parsed != HttpParse::kIncomplete) break;
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
      return;  // the client left
    if (n < 0 && errno == EINTR) continue;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      Count(Refusal::kAdminTimeout);
      SendStatus(fd, 408, "request timeout: the whole request must arrive within the admin "
                          "timeout\n");
      return;
    }
  }
  HttpResponse res;
  if (parsed == HttpParse::kBad) {
    Count(Refusal::kAdminBadRequest);
    res.status = 400;
    res.body = "bad request\n";
  } else if (parsed == HttpParse::kHeadTooLarge) {
    Count(Refusal::kAdminBadRequest);
    res.status = 431;
    res.body = "request head too large (at most 8 KiB and 64 header lines)\n";
  } else if (parsed == HttpParse::kBodyTooLarge) {
    Count(Refusal::kAdminBadRequest);
    res.status = 413;
    res.body = "request body too large (at most 64 KiB)\n";
  } else {
    req.remote_addr = PeerAddress(fd);
    if (probe_only && req.path != "/healthz" && req.path != "/readyz") {
      Count(Refusal::kAdminConnections);
      res.status = 503;
      res.body = "too many admin connections\n";
    } else {
      try {
        res = handler_(req);
      } catch (const std::exception& e) {
        res = HttpResponse{500, "text/plain; charset=utf-8",
                           std::string("internal error: ") + e.what() + "\n"};
      }
    }
  }
  WriteAll(fd, SerializeHttpResponse(res, req.method == "HEAD"),
           Clock::now() + (probe_only ? std::chrono::milliseconds(1000) : options_.timeout));
}

}  // namespace kvtier
