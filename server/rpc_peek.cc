#include "server/rpc_peek.h"

#include <capnp/rpc.capnp.h>

#include <cstring>

namespace kvtier {

bool PeekRpc(kj::ArrayPtr<const capnp::word> seg, uint16_t* tag, uint32_t* id) {
  auto word = [&](int64_t i) {
    uint64_t w;
    std::memcpy(&w, seg.begin() + i, 8);
    return w;
  };
  // A struct pointer at word `at`: where its data starts, and its sizes.
  auto follow = [&](int64_t at, int64_t* start, uint32_t* data, uint32_t* ptrs) {
    const uint64_t p = word(at);
    if (p == 0) {
      *data = *ptrs = 0;  // null: the default struct
      *start = at;
      return true;
    }
    if ((p & 3) != 0) return false;  // not a struct pointer
    const int64_t off = static_cast<int32_t>(static_cast<uint32_t>(p)) >> 2;
    *data = static_cast<uint32_t>((p >> 32) & 0xffff);
    *ptrs = static_cast<uint32_t>(p >> 48);
    *start = at + 1 + off;
    return *start >= 0 && *start + *data + *ptrs <= static_cast<int64_t>(seg.size());
  };
  if (seg.size() < 1) return false;
  int64_t start;
  uint32_t data, ptrs;
  if (!follow(0, &start, &data, &ptrs)) return false;
  *tag = data >= 1 ? static_cast<uint16_t>(word(start)) : 0;
  *id = 0;
  if (*tag != kRpcTagCall && *tag != kRpcTagReturn && *tag != kRpcTagFinish && *tag != kRpcTagBootstrap)
    return true;
  if (ptrs < 1) return true;  // a null member: id 0
  int64_t member;
  uint32_t mdata, mptrs;
  if (!follow(start + data, &member, &mdata, &mptrs)) return false;
  if (mdata >= 1) *id = static_cast<uint32_t>(word(member));
  return true;
}

void ReadRpc(capnp::MessageReader& r, uint16_t* tag, uint32_t* id) {
  auto m = r.getRoot<capnp::rpc::Message>();
  *tag = static_cast<uint16_t>(m.which());
  *id = 0;
  switch (m.which()) {
    case capnp::rpc::Message::CALL: *id = m.getCall().getQuestionId(); break;
    case capnp::rpc::Message::RETURN: *id = m.getReturn().getAnswerId(); break;
    case capnp::rpc::Message::FINISH: *id = m.getFinish().getQuestionId(); break;
    case capnp::rpc::Message::BOOTSTRAP: *id = m.getBootstrap().getQuestionId(); break;
    default: break;
  }
}

}  // namespace kvtier
