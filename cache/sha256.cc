#include "cache/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>

namespace kvtier {

namespace {

// Fetched once: EVP_DigestInit_ex2 with a name or the implicit EVP_sha256()
// would look the provider up on every call, which costs more than hashing a
// 16-token chain message.
const EVP_MD* Md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (md == nullptr) std::abort();  // libcrypto without SHA-256: nothing can work
  return md;
}

void Check(int ok) {
  if (ok != 1) std::abort();  // only fails on allocation failure or a broken provider
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) std::abort();
  Reset();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Reset() { Check(EVP_DigestInit_ex2(ctx_, Md(), nullptr)); }

void Sha256::Update(const void* data, size_t n) { Check(EVP_DigestUpdate(ctx_, data, n)); }

Sha256Bytes Sha256::Finish() {
  Sha256Bytes d;
  unsigned int len = 0;
  Check(EVP_DigestFinal_ex(ctx_, d.data(), &len));
  return d;
}

Sha256Bytes Sha256Digest(const void* data, size_t n) {
  thread_local Sha256 h;
  h.Reset();
  h.Update(data, n);
  return h.Finish();
}

}  // namespace kvtier
