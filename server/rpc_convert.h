// Conversions between kvtier types and the Cap'n Proto schema, and the error
// convention of docs/rpc.md: an exception's description starts with the
// status name ("InvalidArgument: ..."). Shared by the server and the client;
// generated Cap'n Proto types stay inside server/ and the client's RPC layer.
#pragma once

#include <kj/exception.h>

#include <string>
#include <vector>

#include "cache/keys.h"
#include "server/kvtier.capnp.h"
#include "tiers/status.h"
#include "tiers/tier.h"

namespace kvtier::rpcconv {

inline BlockKey FromRpc(rpc::Key::Reader k) { return BlockKey{k.getLo(), k.getHi()}; }
inline void ToRpc(const BlockKey& k, rpc::Key::Builder b) {
  b.setLo(k.lo);
  b.setHi(k.hi);
}

inline std::vector<BlockKey> KeysFromRpc(capnp::List<rpc::Key>::Reader list) {
  std::vector<BlockKey> out;
  out.reserve(list.size());
  for (auto k : list) out.push_back(FromRpc(k));
  return out;
}

inline rpc::Tier TierToRpc(TierKind k) {
  switch (k) {
    case TierKind::kHbm: return rpc::Tier::HBM;
    case TierKind::kHost: return rpc::Tier::HOST;
    case TierKind::kNvme: return rpc::Tier::NVME;
  }
  return rpc::Tier::HOST;
}

// Throws the kj exception that carries `st` to the peer. REQUIRES: !st.ok().
[[noreturn]] inline void Throw(const Status& st) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str(st.ToString())));
}

// The Status a peer's exception carries (Internal when it names none).
Status StatusFromException(const kj::Exception& e);

Status SpecFromRpc(rpc::NamespaceSpec::Reader r, NamespaceSpec* out);
void SpecToRpc(const NamespaceSpec& s, rpc::NamespaceSpec::Builder b);

}  // namespace kvtier::rpcconv
