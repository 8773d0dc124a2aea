// RpcServer: kvtierd's Unix-socket listener and its RPC worker threads.
//
// Start() binds the socket (refusing to steal it from a live daemon, removing
// a stale one), then runs `threads` workers. Each worker owns a kj event loop,
// accepts connections from the shared listening socket, and serves each with
// a Cap'n Proto two-party RPC system whose bootstrap capability comes from
// RpcService::NewBootstrap(). Connections stay on the worker that accepted
// them. Incoming messages are bounded (traversal limit = max_message_bytes,
// nesting limit 64); at most one fd per incoming message, and none is used.
//
// Limits (the service's ConnectionLimits, docs/security.md): connections in
// all and per peer uid (SO_PEERCRED), refused with a Cap'n Proto Abort
// message naming the limit; fd exhaustion (a reserve fd lets the server
// accept and refuse the waiting clients instead of leaving them queued);
// per connection and per uid memory (input buffer, answers not finished),
// unfinished questions, unread answers (backpressure), and the handshake,
// io and idle timeouts, checked by each worker four times a second. Every
// refusal is counted in RpcMetrics::refused and logged (at most once a
// second per worker).
//
// Thread safety: Start/Stop from one controlling thread. Stop() (also run by
// the destructor) closes the listener and every connection, which releases
// all leases and aborts all open transactions, then joins the workers.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "server/rpc_service.h"
#include "tiers/status.h"

namespace kvtier {

struct RpcServerOptions {
  std::string socket_path;
  int threads = 2;
  uint64_t max_message_bytes = 64ull << 20;
  // Called with the socket's path after bind and before listen: the socket
  // is created 0600, and whatever this sets (mode, group: kvtierd's
  // SecureSocket) is in place before the first client can connect. An error
  // fails Start().
  std::function<Status(const std::string& socket_path)> before_listen;
};

class RpcServer {
 public:
  // Errors: InvalidArgument (empty or over-long path, threads out of range),
  // Rejected (another daemon answers on the socket), IOError (bind/listen).
  static Result<std::unique_ptr<RpcServer>> Start(const RpcServerOptions& options,
                                                  RpcService* service);
  ~RpcServer();
  void Stop();

  const std::string& socket_path() const { return options_.socket_path; }
  // Worker threads whose event loop has not turned for over `for_at_least`
  // (a request hogging it). Thread-safe.
  int StalledWorkers(std::chrono::milliseconds for_at_least = std::chrono::seconds(5)) const;

 private:
  struct Worker;
  RpcServer(RpcServerOptions options, RpcService* service, int listen_fd);
  void WorkerMain(Worker* w);
  // accept() failed for want of fds: accepts one waiting client on the
  // reserve fd and refuses it. Returns whether one was refused.
  bool RefuseForWantOfFds();

  RpcServerOptions options_;
  RpcService* service_;
  int listen_fd_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<uint32_t> connections_{0};
  UidTable uids_;
  std::mutex reserve_mu_;
  int reserve_fd_ = -1;  // /dev/null, closed to make room for one accept()
  bool stopped_ = false;
};

}  // namespace kvtier
