// RawConnection: Cap'n Proto straight over kvtierd's socket, for tests that
// send what the C++ client never would (calls out of order, bad arguments,
// another tenant's token).
#pragma once

#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <string>

#include "server/kvtier.capnp.h"

namespace kvtier::testing {

class RawConnection {
 public:
  explicit RawConnection(const std::string& path) : io_(kj::setupAsyncIo()) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    stream_ = io_.lowLevelProvider->wrapUnixSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    rpc_ = kj::heap<capnp::TwoPartyClient>(*stream_, 2);
    boot_ = rpc_->bootstrap().castAs<rpc::KvTier>();
  }
  kj::WaitScope& ws() { return io_.waitScope; }
  rpc::KvTier::Client& boot() { return boot_; }

  // openNamespace of the tests' demo model (4 layers, 2 KV heads x 64, bf16),
  // with `token` when it is not empty; throws what the daemon answers.
  rpc::Namespace::Client Open(const std::string& token = "") {
    return OpenRequest(token).send().wait(ws()).getNs();
  }
  // The same, answering the error's description, or "" (and *ns set).
  std::string TryOpen(const std::string& token, rpc::Namespace::Client* ns = nullptr) {
    try {
      rpc::Namespace::Client got = Open(token);
      if (ns != nullptr) *ns = got;
      return "";
    } catch (const kj::Exception& e) {
      return e.getDescription().cStr();
    }
  }

  // The error description of a failed call, or "" when it succeeded.
  template <typename Req>
  std::string Error(Req&& req) {
    try {
      req.send().wait(ws());
      return "";
    } catch (const kj::Exception& e) {
      return e.getDescription().cStr();
    }
  }

 private:
  capnp::Request<rpc::KvTier::OpenNamespaceParams, rpc::KvTier::OpenNamespaceResults> OpenRequest(
      const std::string& token) {
    auto req = boot_.openNamespaceRequest();
    auto s = req.initSpec();
    s.setModelId("test/llama-mini");
    s.setNumLayers(4);
    s.setNumKvHeads(2);
    s.setHeadDim(64);
    s.setTokensPerBlock(16);
    s.setDtype(rpc::DType::BF16);
    if (!token.empty()) req.setToken(token);
    return req;
  }

  kj::AsyncIoContext io_;
  kj::Own<kj::AsyncCapabilityStream> stream_;
  kj::Own<capnp::TwoPartyClient> rpc_;
  rpc::KvTier::Client boot_ = nullptr;
};

}  // namespace kvtier::testing
