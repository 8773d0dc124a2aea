// The built-in NVMe admission policies.
#include "eviction/admission.h"

#include <string>

#include "eviction/fingerprint_fifo.h"

namespace kvtier {
namespace {

class AlwaysAdmit final : public AdmissionPolicy {
 public:
  std::string_view name() const override { return "always"; }
  bool Admit(uint64_t /*fingerprint*/) override { return true; }
  size_t MemoryUsage() const override { return sizeof(*this); }
};

// Admits a fingerprint seen within the last `window` sightings. Each sighting
// (re)inserts it as the newest, so a block that keeps coming back stays
// admitted; one that was seen once is forgotten after `window` others.
class SecondSighting final : public AdmissionPolicy {
 public:
  explicit SecondSighting(size_t window) : seen_(window) {}
  std::string_view name() const override { return "second-sighting"; }
  bool Admit(uint64_t fingerprint) override {
    if (fingerprint == 0) return true;
    const bool seen_before = seen_.Contains(fingerprint);
    seen_.Insert(fingerprint);
    return seen_before;
  }
  size_t MemoryUsage() const override { return sizeof(*this) + seen_.MemoryUsage(); }

 private:
  FingerprintFifo seen_;
};

}  // namespace

Result<std::unique_ptr<AdmissionPolicy>> NewAdmissionPolicy(std::string_view name,
                                                            const AdmissionOptions& options) {
  if (name == "always") return std::unique_ptr<AdmissionPolicy>(new AlwaysAdmit());
  if (name == "second-sighting") {
    if (options.window == 0 || options.window >= (size_t{1} << 31)) {
      return Status::InvalidArgument("second-sighting window must be in [1, 2^31), got " +
                                     std::to_string(options.window));
    }
    return std::unique_ptr<AdmissionPolicy>(new SecondSighting(options.window));
  }
  return Status::InvalidArgument("unknown admission policy '" + std::string(name) +
                                 "'; known: always, second-sighting");
}

}  // namespace kvtier
