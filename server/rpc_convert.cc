#include "server/rpc_convert.h"

#include <string_view>

namespace kvtier::rpcconv {

Status StatusFromException(const kj::Exception& e) {
  std::string_view d(e.getDescription().cStr());
  constexpr std::string_view kRemote = "remote exception: ";
  if (d.substr(0, kRemote.size()) == kRemote) d.remove_prefix(kRemote.size());
  static const StatusCode kCodes[] = {
      StatusCode::kNotFound, StatusCode::kInvalidArgument, StatusCode::kResourceExhausted,
      StatusCode::kRejected, StatusCode::kRetry,          StatusCode::kIOError,
      StatusCode::kCorruption, StatusCode::kUnavailable,  StatusCode::kInternal,
      StatusCode::kPermissionDenied};
  for (StatusCode c : kCodes) {
    std::string_view name = StatusCodeName(c);
    if (d.size() > name.size() && d.substr(0, name.size()) == name && d[name.size()] == ':') {
      std::string_view msg = d.substr(name.size() + 1);
      if (!msg.empty() && msg[0] == ' ') msg.remove_prefix(1);
      return Status(c, msg);
    }
  }
  if (e.getType() == kj::Exception::Type::DISCONNECTED)
    return Status::Unavailable("connection to kvtierd lost: " + std::string(d));
  if (e.getType() == kj::Exception::Type::OVERLOADED)
    return Status::Retry("kvtierd overloaded: " + std::string(d));
  return Status::Internal(std::string(d));
}

Status SpecFromRpc(rpc::NamespaceSpec::Reader r, NamespaceSpec* out) {
  NamespaceSpec s;
  // Every byte of the Text, an embedded NUL included, so that Validate()
  // refuses it instead of the string ending there.
  auto bytes = [](capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); };
  s.model_id = bytes(r.getModelId());
  s.model_revision = bytes(r.getModelRevision());
  s.layout.num_layers = r.getNumLayers();
  s.layout.num_kv_heads = r.getNumKvHeads();
  s.layout.head_dim = r.getHeadDim();
  s.layout.tokens_per_block = r.getTokensPerBlock();
  switch (r.getDtype()) {
    case rpc::DType::BF16: s.layout.dtype = DType::kBF16; break;
    case rpc::DType::FP16: s.layout.dtype = DType::kFP16; break;
    case rpc::DType::FP8: s.layout.dtype = DType::kFP8; break;
    default: return Status::InvalidArgument("namespace.dtype is unknown (expected bf16, fp16 or fp8)");
  }
  s.layout.planes = r.getPlanes();
  s.tp_rank = r.getTpRank();
  s.tp_size = r.getTpSize();
  s.tenant_salt = bytes(r.getTenantSalt());
  switch (r.getHashMode()) {
    case rpc::HashMode::XXH3128: s.hash_mode = HashMode::kXxh3_128; break;
    case rpc::HashMode::SHA256: s.hash_mode = HashMode::kSha256; break;
    default: return Status::InvalidArgument("namespace.hash_mode is unknown");
  }
  KVTIER_RETURN_IF_ERROR(s.Validate());
  *out = std::move(s);
  return Status::OK();
}

void SpecToRpc(const NamespaceSpec& s, rpc::NamespaceSpec::Builder b) {
  b.setModelId(s.model_id);
  b.setModelRevision(s.model_revision);
  b.setNumLayers(s.layout.num_layers);
  b.setNumKvHeads(s.layout.num_kv_heads);
  b.setHeadDim(s.layout.head_dim);
  b.setTokensPerBlock(s.layout.tokens_per_block);
  switch (s.layout.dtype) {
    case DType::kBF16: b.setDtype(rpc::DType::BF16); break;
    case DType::kFP16: b.setDtype(rpc::DType::FP16); break;
    case DType::kFP8: b.setDtype(rpc::DType::FP8); break;
  }
  b.setPlanes(s.layout.planes);
  b.setTpRank(s.tp_rank);
  b.setTpSize(s.tp_size);
  b.setTenantSalt(s.tenant_salt);
  b.setHashMode(s.hash_mode == HashMode::kSha256 ? rpc::HashMode::SHA256 : rpc::HashMode::XXH3128);
}

}  // namespace kvtier::rpcconv
