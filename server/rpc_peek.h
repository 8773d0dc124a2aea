// What the RPC server's accounting needs of each Cap'n Proto RPC message
// (server/rpc_server.cc): its kind and its question or answer id.
//
// PeekRpc reads them straight from the words of segment 0, as a reader
// would: a struct pointer at the root, a struct pointer to the member, each
// in bounds; a data section too short reads as zeros, a null member as its
// default (id 0). It answers false for anything else (a far pointer, say),
// and the caller then uses ReadRpc, a real reader. Every message passes
// here, so the common case costs a few loads instead of building a reader.
// fuzz/socket_framing_fuzz.cc checks that the two agree.
#pragma once

#include <capnp/message.h>

#include <cstdint>

namespace kvtier {

// rpc.capnp's Message union tags the accounting follows.
inline constexpr uint16_t kRpcTagCall = 2, kRpcTagReturn = 3, kRpcTagFinish = 4,
                          kRpcTagBootstrap = 8;

bool PeekRpc(kj::ArrayPtr<const capnp::word> segment0, uint16_t* tag, uint32_t* id);
// Throws (kj::Exception) on an invalid message.
void ReadRpc(capnp::MessageReader& message, uint16_t* tag, uint32_t* id);

}  // namespace kvtier
