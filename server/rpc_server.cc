#include "server/rpc_server.h"

#include "server/socket_message_stream.h"

#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <list>

#include <spdlog/spdlog.h>

namespace kvtier {

namespace {

Status Errno(const std::string& what) { return Status::IOError(what + ": " + std::strerror(errno)); }

// True when something accepts connections on `path`.
bool SocketIsLive(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool live = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return live;
}

}  // namespace

struct RpcServer::Worker {
  std::thread thread;
  std::promise<const kj::Executor*> ready;
  const kj::Executor* executor = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> stop;  // touched only on the worker's loop
};

Result<std::unique_ptr<RpcServer>> RpcServer::Start(const RpcServerOptions& o, RpcService* svc) {
  sockaddr_un addr{};
  if (o.socket_path.empty()) return Status::InvalidArgument("socket path is empty");
  if (o.socket_path.size() >= sizeof(addr.sun_path))
    return Status::InvalidArgument("socket path '" + o.socket_path + "' is longer than " +
                                   std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  if (o.threads < 1 || o.threads > 256)
    return Status::InvalidArgument("rpc threads must be 1..256, got " + std::to_string(o.threads));

  std::error_code ec;
  auto parent = std::filesystem::path(o.socket_path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  struct stat st;
  if (lstat(o.socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return Status::InvalidArgument("'" + o.socket_path + "' exists and is not a socket");
    if (SocketIsLive(o.socket_path))
      return Status::Rejected("another daemon is serving on '" + o.socket_path + "'");
    unlink(o.socket_path.c_str());  // stale socket of a daemon that died
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Errno("socket");
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, o.socket_path.c_str(), sizeof(addr.sun_path) - 1);
  mode_t old = umask(0117);  // socket mode 0660: the daemon's user and group
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (rc != 0) {
    Status s = Errno("bind '" + o.socket_path + "'");
    close(fd);
    return s;
  }
  if (listen(fd, 1024) != 0) {
    Status s = Errno("listen");
    close(fd);
    unlink(o.socket_path.c_str());
    return s;
  }
  std::unique_ptr<RpcServer> server(new RpcServer(o, svc, fd));
  for (int i = 0; i < o.threads; ++i) {
    auto w = std::make_unique<Worker>();
    Worker* wp = w.get();
    server->workers_.push_back(std::move(w));
    wp->thread = std::thread([s = server.get(), wp] { s->WorkerMain(wp); });
    wp->executor = wp->ready.get_future().get();
  }
  return server;
}

RpcServer::RpcServer(RpcServerOptions options, RpcService* service, int listen_fd)
    : options_(std::move(options)), service_(service), listen_fd_(listen_fd) {}

RpcServer::~RpcServer() { Stop(); }

void RpcServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& w : workers_) {
    w->executor->executeSync([w = w.get()] {
      if (w->stop) w->stop->fulfill();
    });
  }
  for (auto& w : workers_) w->thread.join();
  close(listen_fd_);
  unlink(options_.socket_path.c_str());
}

namespace {

// One client connection: its stream, its vat network and its RPC system.
struct Connection {
  Connection(kj::UnixEventPort& port, int fd, uint64_t max_message_bytes,
             capnp::Capability::Client bootstrap, capnp::ReaderOptions ro)
      : stream(port, fd, SocketMessageStream::Options{.max_message_bytes = max_message_bytes}),
        // Cap'n Proto 0.9.2 attaches outgoing fds (the host segment's) only
        // on a network built with a non-zero limit; one incoming fd per
        // message is accepted and, as no method takes one, closed unused.
        network(stream, /*maxFdsPerMessage=*/1, capnp::rpc::twoparty::Side::SERVER, ro),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
  SocketMessageStream stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

class TaskErrors : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    spdlog::warn("rpc connection task failed: {}", e.getDescription().cStr());
  }
};

}  // namespace

void RpcServer::WorkerMain(Worker* w) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  auto stop = kj::newPromiseAndFulfiller<void>();
  w->stop = kj::mv(stop.fulfiller);
  w->ready.set_value(&kj::getCurrentThreadExecutor());

  capnp::ReaderOptions ro;
  ro.traversalLimitInWords = options_.max_message_bytes / 8;
  ro.nestingLimit = 64;
  RpcMetrics* metrics = service_->metrics();

  std::list<kj::Own<Connection>> conns;
  TaskErrors errors;
  kj::TaskSet tasks(errors);
  kj::UnixEventPort::FdObserver observer(io.unixEventPort, listen_fd_,
                                         kj::UnixEventPort::FdObserver::OBSERVE_READ);

  auto accept_one = [&]() -> bool {
    int cfd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) return false;  // EAGAIN: another worker took it
    if (connections_.load() >= options_.max_connections) {
      close(cfd);
      spdlog::warn("refused a connection: {} connections open (max-connections)",
                   options_.max_connections);
      return true;
    }
    ++connections_;
    ++metrics->connections_open;
    ++metrics->connections_total;
    conns.push_back(kj::heap<Connection>(io.unixEventPort, cfd, options_.max_message_bytes,
                                         service_->NewBootstrap(ReadPeerCredentials(cfd)), ro));
    auto it = std::prev(conns.end());
    tasks.add((*it)->network.onDisconnect().then([&, it]() {
      conns.erase(it);  // drops every capability the client held
      --connections_;
      --metrics->connections_open;
    }));
    return true;
  };

  std::function<kj::Promise<void>()> loop = [&]() -> kj::Promise<void> {
    return observer.whenBecomesReadable().then([&]() {
      while (accept_one()) {
      }
      return loop();
    });
  };
  stop.promise.exclusiveJoin(loop()).wait(io.waitScope);
  size_t n = conns.size();
  conns.clear();
  connections_ -= static_cast<uint32_t>(n);
  metrics->connections_open -= n;
}

}  // namespace kvtier
