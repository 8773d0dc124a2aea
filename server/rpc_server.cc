#include "server/rpc_server.h"

#include "server/rpc_peek.h"
#include "server/socket_message_stream.h"

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <sys/resource.h>
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
#include <unordered_map>

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

using Clock = std::chrono::steady_clock;

// File descriptors kept free of connections (see accept_one).
constexpr rlim_t kFdHeadroom = 32;

// Tells a client why it is refused (a Cap'n Proto Abort message, which its
// RPC system reports as the error of its calls) and closes the socket.
void RefuseSocket(int fd, const std::string& reason) {
  capnp::MallocMessageBuilder b(64);
  auto ex = b.initRoot<capnp::rpc::Message>().initAbort();
  ex.setReason(reason);
  ex.setType(capnp::rpc::Exception::Type::OVERLOADED);
  auto flat = capnp::messageToFlatArray(b);
  auto bytes = flat.asBytes();
  (void)send(fd, bytes.begin(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  shutdown(fd, SHUT_WR);
  char drain[4096];  // what the client sent already: closing over unread data resets
  (void)recv(fd, drain, sizeof(drain), MSG_DONTWAIT);
  close(fd);
}

// Logs a refusal at most once a second per caller; counts the rest.
class RefusalLog {
 public:
  template <typename... Args>
  void Warn(fmt::format_string<Args...> f, Args&&... args) {
    const auto now = Clock::now();
    if (now - last_ < std::chrono::seconds(1)) {
      ++suppressed_;
      return;
    }
    std::string msg = fmt::format(f, std::forward<Args>(args)...);
    if (suppressed_ > 0) msg += fmt::format(" ({} more refusals in the last second)", suppressed_);
    spdlog::warn("{}", msg);
    last_ = now;
    suppressed_ = 0;
  }

 private:
  Clock::time_point last_{};
  uint64_t suppressed_ = 0;
};

}  // namespace

struct RpcServer::Worker {
  std::thread thread;
  std::promise<const kj::Executor*> ready;
  const kj::Executor* executor = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> stop;  // touched only on the worker's loop
  std::atomic<int64_t> heartbeat_ns{0};      // steady clock, set by the worker's timer
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
  // Created 0600 (the daemon's user only); before_listen widens it (group,
  // tenants) before any client can connect: connect() is refused until listen.
  mode_t old = umask(0177);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (rc != 0) {
    Status s = Errno("bind '" + o.socket_path + "'");
    close(fd);
    return s;
  }
  if (o.before_listen) {
    if (Status s = o.before_listen(o.socket_path); !s.ok()) {
      close(fd);
      unlink(o.socket_path.c_str());
      return s;
    }
  }
  if (listen(fd, 1024) != 0) {
    Status s = Errno("listen");
    close(fd);
    unlink(o.socket_path.c_str());
    return s;
  }
  // Every connection is an fd: take the hard limit, and say when the
  // connection limit cannot be reached under it.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  const ConnectionLimits& lim = svc->options().limits;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
      nofile.rlim_cur < uint64_t{lim.max_connections} + 256)
    spdlog::warn("the fd limit ({}) is below --max-connections {} plus the daemon's own fds: "
                 "connections past the fds will be refused (fd_exhausted); raise LimitNOFILE",
                 nofile.rlim_cur, lim.max_connections);
  std::unique_ptr<RpcServer> server(new RpcServer(o, svc, fd));
  server->reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
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
  if (reserve_fd_ >= 0) close(reserve_fd_);
  unlink(options_.socket_path.c_str());
}

namespace {

// The accounting of one connection's transport: memory (input buffer,
// answers the client has not finished) and unfinished questions, read from
// the Cap'n Proto RPC messages as they pass (Call and Bootstrap open a
// question, the client's Finish closes it, a Return's size is held until then).
class ConnectionGuard final : public StreamObserver {
 public:
  ConnectionGuard(std::shared_ptr<ConnectionUsage> usage, RefusalMetrics* refused)
      : usage_(std::move(usage)), refused_(refused) {}
  ~ConnectionGuard() { usage_->ChargeMemory(-static_cast<int64_t>(answer_bytes_)); }
  void set_stream(SocketMessageStream* s) { stream_ = s; }

  bool OnInputBuffer(size_t old_bytes, size_t new_bytes) override {
    const int64_t delta = static_cast<int64_t>(new_bytes) - static_cast<int64_t>(old_bytes);
    if (usage_->ChargeMemory(delta)) return true;
    refused_->Count(Refusal::kMemory);
    return false;
  }
  void OnMessageIn(kj::ArrayPtr<const capnp::word> words) override {
    // The stream checked the segment table: segment 0 follows it.
    uint32_t count, seg0;
    std::memcpy(&count, words.begin(), 4);
    std::memcpy(&seg0, reinterpret_cast<const uint8_t*>(words.begin()) + 4, 4);
    const size_t table = (4ull * (count + 2) + 7) / 8;
    uint16_t tag;
    uint32_t id;
    if (!PeekRpc(words.slice(table, std::min<size_t>(words.size(), table + seg0)), &tag, &id)) {
      try {
        capnp::ReaderOptions ro;
        ro.traversalLimitInWords = 1 << 20;  // the root's header only
        capnp::FlatArrayMessageReader r(words, ro);
        ReadRpc(r, &tag, &id);
      } catch (const kj::Exception&) {
        refused_->Count(Refusal::kMalformed);
        throw;
      }
    }
    if (tag == kRpcTagCall || tag == kRpcTagBootstrap) Open(id);
    if (tag == kRpcTagFinish) Close(id);
  }
  void OnMessageOut(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override {
    uint16_t tag;
    uint32_t id;
    if (!PeekRpc(segments[0], &tag, &id)) {
      capnp::SegmentArrayMessageReader r(segments);
      ReadRpc(r, &tag, &id);
    }
    if (tag != kRpcTagReturn) return;
    uint64_t* held = Find(id);
    if (held == nullptr) return;  // finished already
    size_t bytes = 0;
    for (auto s : segments) bytes += s.size() * sizeof(capnp::word);
    if (!usage_->ChargeMemory(static_cast<int64_t>(bytes))) {
      refused_->Count(Refusal::kMemory);
      if (stream_ != nullptr)
        stream_->Abort(KJ_EXCEPTION(DISCONNECTED,
                                    "ResourceExhausted: answers the client has not finished "
                                    "pass this connection's memory limit "
                                    "(--max-connection-memory / --max-uid-memory)"));
      return;
    }
    *held += bytes;
    answer_bytes_ += bytes;
  }
  void OnFdsDropped(size_t count) override { refused_->Count(Refusal::kFds, count); }
  void OnBadFrame(bool too_large) override {
    refused_->Count(too_large ? Refusal::kMessageTooLarge : Refusal::kMalformed);
  }

 private:
  // Open questions: their answers' bytes (+1, 0 = not open), in a vector
  // for the small ids Cap'n Proto clients use (it reuses the lowest free
  // id), in a map for the others.
  static constexpr uint32_t kSmallIds = 4096;
  uint64_t* Find(uint32_t id) {
    if (id < kSmallIds) return id < small_.size() && small_[id] != 0 ? &small_[id] : nullptr;
    auto it = large_.find(id);
    return it == large_.end() ? nullptr : &it->second;
  }

  void Open(uint32_t id) {
    if (open_ >= usage_->limits().max_questions) {
      refused_->Count(Refusal::kQuestions);
      kj::throwFatalException(KJ_EXCEPTION(
          OVERLOADED, "ResourceExhausted: too many unfinished calls on this connection "
                      "(--max-questions)",
          usage_->limits().max_questions));
    }
    if (Find(id) != nullptr) return;  // a reused id (a broken client): counted once
    if (id < kSmallIds) {
      if (id >= small_.size()) small_.resize(id + 1, 0);
      small_[id] = 1;
    } else {
      large_.emplace(id, 1);
    }
    ++open_;
  }
  void Close(uint32_t id) {
    uint64_t* held = Find(id);
    if (held == nullptr) return;
    const uint64_t bytes = *held - 1;
    usage_->ChargeMemory(-static_cast<int64_t>(bytes));
    answer_bytes_ -= bytes;
    if (id < kSmallIds) {
      small_[id] = 0;
    } else {
      large_.erase(id);
    }
    --open_;
  }

  std::shared_ptr<ConnectionUsage> usage_;
  RefusalMetrics* refused_;
  SocketMessageStream* stream_ = nullptr;
  std::vector<uint64_t> small_;
  std::unordered_map<uint32_t, uint64_t> large_;
  uint32_t open_ = 0;           // questions open
  uint64_t answer_bytes_ = 0;   // bytes of their answers, charged to the usage
};

SocketMessageStream::Options StreamOptions(uint64_t max_message_bytes, const ConnectionLimits& l,
                                           StreamObserver* observer) {
  SocketMessageStream::Options o;
  o.max_message_bytes = max_message_bytes;
  o.max_buffered_output = l.max_unread_answers;
  o.pause_reading_above = l.max_unread_answers;
  o.max_pending_fds = 1;  // no method takes an fd: one per message is read and closed
  o.max_buffered_fd_messages = 16;
  o.observer = observer;
  return o;
}

// One client connection: its accounting, stream, vat network and RPC system.
struct Connection {
  Connection(kj::UnixEventPort& port, int fd, uint64_t max_message_bytes,
             std::shared_ptr<ConnectionUsage> usage_in, RefusalMetrics* refused,
             capnp::Capability::Client bootstrap, capnp::ReaderOptions ro)
      : usage(std::move(usage_in)),
        guard(usage, refused),
        stream(port, fd, StreamOptions(max_message_bytes, usage->limits(), &guard)),
        // Cap'n Proto 0.9.2 attaches outgoing fds (the host segment's) only
        // on a network built with a non-zero limit; one incoming fd per
        // message is accepted and, as no method takes one, closed unused.
        network(stream, /*maxFdsPerMessage=*/1, capnp::rpc::twoparty::Side::SERVER, ro),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))),
        accepted(Clock::now()) {
    guard.set_stream(&stream);
    // Calls in progress (not yet returned) are bounded by their size: half
    // the connection's memory limit; past it the connection is not read.
    const uint64_t words = usage->limits().max_connection_memory / 16;
    rpc.setFlowLimit(words == 0 ? 1 : static_cast<size_t>(std::min<uint64_t>(words, SIZE_MAX)));
  }
  ~Connection() { guard.set_stream(nullptr); }
  std::shared_ptr<ConnectionUsage> usage;
  ConnectionGuard guard;  // before the stream: outlives it
  SocketMessageStream stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  Clock::time_point accepted;
  bool aborted = false;
};

class TaskErrors : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    spdlog::warn("rpc connection task failed: {}", e.getDescription().cStr());
  }
};

}  // namespace

bool RpcServer::RefuseForWantOfFds() {
  std::lock_guard<std::mutex> l(reserve_mu_);
  if (reserve_fd_ < 0) reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd_ < 0) return false;
  close(reserve_fd_);
  reserve_fd_ = -1;
  int cfd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (cfd >= 0) {
    RefuseSocket(cfd, "ResourceExhausted: kvtierd is out of file descriptors; try again later");
    service_->metrics()->refused.Count(Refusal::kFdExhausted);
  }
  reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return cfd >= 0;
}

int RpcServer::StalledWorkers(std::chrono::milliseconds for_at_least) const {
  const int64_t now = Clock::now().time_since_epoch().count();
  const int64_t limit = std::chrono::duration_cast<Clock::duration>(for_at_least).count();
  int n = 0;
  for (const auto& w : workers_) {
    const int64_t beat = w->heartbeat_ns.load(std::memory_order_relaxed);
    if (beat != 0 && now - beat > limit) ++n;
  }
  return n;
}

void RpcServer::WorkerMain(Worker* w) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  auto stop = kj::newPromiseAndFulfiller<void>();
  w->stop = kj::mv(stop.fulfiller);
  w->heartbeat_ns.store(Clock::now().time_since_epoch().count());
  w->ready.set_value(&kj::getCurrentThreadExecutor());

  capnp::ReaderOptions ro;
  ro.traversalLimitInWords = options_.max_message_bytes / 8;
  ro.nestingLimit = 64;
  RpcMetrics* metrics = service_->metrics();
  RefusalMetrics& refused = metrics->refused;
  const ConnectionLimits& lim = service_->options().limits;
  RefusalLog log;

  std::list<kj::Own<Connection>> conns;
  TaskErrors errors;
  kj::TaskSet tasks(errors);
  kj::UnixEventPort::FdObserver observer(io.unixEventPort, listen_fd_,
                                         kj::UnixEventPort::FdObserver::OBSERVE_READ);

  auto accept_one = [&]() -> bool {
    int cfd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        // Out of fds: a waiting client would stay queued, and with an
        // edge-triggered listener nobody would tell it. Refuse it on the
        // reserve fd (and the timer below comes back for the rest).
        bool refused_one = RefuseForWantOfFds();
        log.Warn("refused a connection: out of file descriptors ({}; {} connections open)",
                 std::strerror(EMFILE), connections_.load());
        return refused_one;
      }
      return false;  // EAGAIN: another worker took it
    }
    // fds are allocated lowest first: an fd this close to the limit means
    // the table is nearly full. Keep the rest for what serving takes (the
    // memfd duplicated into answers, the socket's write watcher, RocksDB,
    // io_uring): a connection accepted into the last fds would fail there.
    rlimit nofile{};
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
        static_cast<rlim_t>(cfd) + kFdHeadroom >= nofile.rlim_cur) {
      refused.Count(Refusal::kFdExhausted);
      log.Warn("refused a connection: {} of {} file descriptors in use ({} connections open)",
               cfd + 1, nofile.rlim_cur, connections_.load());
      RefuseSocket(cfd, "ResourceExhausted: kvtierd is out of file descriptors; try again later");
      return true;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) cred = ucred{0, 0, 0};
    auto per_uid = uids_.Get(cred.uid);
    if (connections_.fetch_add(1) >= lim.max_connections) {
      --connections_;
      refused.Count(Refusal::kConnections);
      log.Warn("refused a connection of pid {} uid {}: {} connections open (--max-connections)",
               cred.pid, cred.uid, lim.max_connections);
      RefuseSocket(cfd, "ResourceExhausted: kvtierd serves its most connections (" +
                            std::to_string(lim.max_connections) + ", --max-connections)");
      return true;
    }
    if (per_uid->connections.fetch_add(1) >= lim.max_connections_per_uid) {
      --per_uid->connections;
      --connections_;
      refused.Count(Refusal::kConnectionsPerUid);
      log.Warn("refused a connection of pid {} uid {}: the uid has {} connections open "
               "(--max-connections-per-uid)",
               cred.pid, cred.uid, lim.max_connections_per_uid);
      RefuseSocket(cfd, "ResourceExhausted: uid " + std::to_string(cred.uid) + " has its most "
                            "connections open (" + std::to_string(lim.max_connections_per_uid) +
                            ", --max-connections-per-uid)");
      return true;
    }
    auto usage = std::make_shared<ConnectionUsage>(&lim, &refused, per_uid, cred.uid, cred.pid);
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
      conns.push_back(kj::heap<Connection>(io.unixEventPort, cfd, options_.max_message_bytes,
                                           usage, &refused,
                                           service_->NewBootstrap(ReadPeerCredentials(cfd), usage),
                                           ro));
    })) {
      // (The stream, built first, took the fd and closed it on the way out.)
      log.Warn("could not serve a connection of pid {}: {}", cred.pid, e->getDescription().cStr());
      --per_uid->connections;
      --connections_;
      return true;
    }
    ++metrics->connections_open;
    ++metrics->connections_total;
    auto it = std::prev(conns.end());
    tasks.add((*it)->network.onDisconnect().then([&, it, per_uid]() {
      conns.erase(it);  // drops every capability the client held
      --connections_;
      --per_uid->connections;
      --metrics->connections_open;
    }));
    return true;
  };

  // Four times a second: the heartbeat, a retry of accepts (after fd
  // exhaustion the listener's readiness edge may be spent), and timeouts.
  auto check = [&]() {
    const auto now = Clock::now();
    w->heartbeat_ns.store(now.time_since_epoch().count(), std::memory_order_relaxed);
    while (accept_one()) {
    }
    auto over = [&](Clock::time_point since, uint32_t seconds) {
      return seconds > 0 && now - since > std::chrono::seconds(seconds);
    };
    for (auto& c : conns) {
      if (c->aborted) continue;
      SocketMessageStream& st = c->stream;
      Refusal why;
      const char* what;
      if (st.messages_in() == 0 && over(c->accepted, lim.handshake_timeout_s)) {
        why = Refusal::kHandshakeTimeout;
        what = "no whole first message within --handshake-timeout";
      } else if (auto u = st.unsent_since(); u && over(*u, lim.io_timeout_s)) {
        why = Refusal::kStalled;
        what = "answers left unread for --io-timeout";
      } else if (auto p = st.partial_since();
                 p && !st.reading_paused() && over(*p, lim.io_timeout_s)) {
        // (While its answers are unread the daemon does not read the
        // connection: a message left half read then is not the client's.)
        why = Refusal::kFrameTimeout;
        what = "a message begun and not finished within --io-timeout";
      } else if (c->usage->holds_nothing() && over(st.last_activity(), lim.idle_timeout_s)) {
        why = Refusal::kIdleTimeout;
        what = "silent and holding nothing for --idle-timeout";
      } else {
        continue;
      }
      c->aborted = true;
      refused.Count(why);
      log.Warn("closed the connection of pid {} uid {}: {}", c->usage->pid(), c->usage->uid(),
               what);
      st.Abort(kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                             kj::str("kvtierd closed the connection: ", what)));
    }
  };
  std::function<kj::Promise<void>()> ticks = [&]() -> kj::Promise<void> {
    return io.provider->getTimer().afterDelay(250 * kj::MILLISECONDS).then([&]() {
      check();
      return ticks();
    });
  };

  std::function<kj::Promise<void>()> loop = [&]() -> kj::Promise<void> {
    return observer.whenBecomesReadable().then([&]() {
      while (accept_one()) {
      }
      return loop();
    });
  };
  stop.promise.exclusiveJoin(loop()).exclusiveJoin(ticks()).wait(io.waitScope);
  size_t n = conns.size();
  conns.clear();
  w->heartbeat_ns.store(0);  // stopped, not stalled
  connections_ -= static_cast<uint32_t>(n);
  metrics->connections_open -= n;
}

}  // namespace kvtier
