// The admin endpoint's HTTP server (server/http_server.h): the request
// parser on good and bad heads, and a live server's bounds (a whole request
// within the timeout, a connection cap with the probes' own slots).
#include "server/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace kvtier {
namespace {

HttpParse Parse(const std::string& in, HttpRequest* req) {
  size_t head = 0, body = 0;
  return ParseHttpRequest(in, req, &head, &body);
}

TEST(HttpServerTest, ParsesRequestLineQueryAndHeaders) {
  HttpRequest r;
  ASSERT_EQ(Parse("GET /v1/namespaces?format=text&x=a%20b+c HTTP/1.1\r\nHost: h\r\n"
                  "X-Thing:  spaced  \r\n\r\n", &r),
            HttpParse::kOk);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/v1/namespaces");
  EXPECT_EQ(r.param("format"), "text");
  EXPECT_EQ(r.param("x"), "a b c");
  EXPECT_EQ(r.headers.at("host"), "h");
  EXPECT_EQ(r.headers.at("x-thing"), "spaced");
  size_t head = 0, body = 0;
  EXPECT_EQ(ParseHttpRequest("POST /e HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", &r, &head, &body),
            HttpParse::kOk);
  EXPECT_EQ(body, 3u);
  EXPECT_EQ(head, std::string("POST /e HTTP/1.0\r\nContent-Length: 3\r\n\r\n").size());
}

TEST(HttpServerTest, RefusesMalformedAndOversizedRequests) {
  HttpRequest r;
  EXPECT_EQ(Parse("GET /healthz HTTP/1.1\r\nHost: h\r\n", &r), HttpParse::kIncomplete);
  for (const char* bad : {"GET\r\n\r\n", "GET /x\r\n\r\n", "GET x HTTP/1.1\r\n\r\n",
                          "GET /x HTTP/2\r\n\r\n", "G(T /x HTTP/1.1\r\n\r\n",
                          "GET /%zz HTTP/1.1\r\n\r\n", "GET /x HTTP/1.1\r\nNoColon\r\n\r\n",
                          "GET /x HTTP/1.1\r\n: v\r\n\r\n", "GET /x HTTP/1.1\r\nA: b\x01\r\n\r\n",
                          "GET /x HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"})
    EXPECT_EQ(Parse(bad, &r), HttpParse::kBad) << bad;
  EXPECT_EQ(Parse("GET /x HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n", &r),
            HttpParse::kHeadTooLarge);
  EXPECT_EQ(Parse("GET /x HTTP/1.1\r\nX: " + std::string(9000, 'a'), &r),
            HttpParse::kHeadTooLarge);  // too large before it ends
  std::string many = "GET /x HTTP/1.1\r\n";
  for (int i = 0; i < 65; ++i) {
    many += "A";  // (built piecewise: GCC 12 warns on "A" + std::string)
    many += std::to_string(i);
    many += ": b\r\n";
  }
  EXPECT_EQ(Parse(many + "\r\n", &r), HttpParse::kHeadTooLarge);
  EXPECT_EQ(Parse("POST /x HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", &r), HttpParse::kBodyTooLarge);
  EXPECT_EQ(Parse("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r),
            HttpParse::kBodyTooLarge);
}

TEST(HttpServerTest, HeadAnswersWithoutBody) {
  HttpResponse res{200, "text/plain", "hello"};
  const std::string head = SerializeHttpResponse(res, true);
  EXPECT_NE(head.find("Content-Length: 5\r\n"), std::string::npos);
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n");
  EXPECT_EQ(SerializeHttpResponse(res, false).substr(head.size()), "hello");
}

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  return fd;
}

TEST(HttpServerTest, SlowClientsAreCutAndTheProbesKeepTheirSlots) {
  RefusalMetrics refused;
  HttpServer::Options o;
  o.max_connections = 2;
  o.probe_connections = 1;
  o.timeout = std::chrono::milliseconds(800);
  o.refused = &refused;
  auto s = HttpServer::Start("127.0.0.1", 0, o, [](const HttpRequest& r) {
    return HttpResponse{200, "text/plain", "path " + r.path + "\n"};
  });
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const int port = (*s)->port();
  // Two silent clients take both slots.
  std::vector<int> silent = {Connect(port), Connect(port)};
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  httplib::Client http("127.0.0.1", port);
  auto probe = http.Get("/healthz");  // the probes' slot
  ASSERT_TRUE(probe);
  EXPECT_EQ(probe->status, 200);
  EXPECT_EQ(probe->body, "path /healthz\n");
  auto other = http.Get("/metrics");  // the probes' slot serves probes only
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 503);
  // The silent ones are answered 408 and closed at the timeout.
  for (int fd : silent) {
    char buf[256];
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    ASSERT_GT(n, 0);
    buf[n] = '\0';
    EXPECT_EQ(std::string(buf).rfind("HTTP/1.1 408", 0), 0u) << buf;
    close(fd);
  }
  EXPECT_EQ(refused.Get(Refusal::kAdminTimeout), 2u);
  EXPECT_GE(refused.Get(Refusal::kAdminConnections), 1u);
  auto after = http.Get("/metrics");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
  (*s)->Stop();
}

}  // namespace
}  // namespace kvtier
