// Status and Result<T>: the error type of every kvtier library.
//
// A Status is either OK (costs one pointer-sized word, no allocation) or a code
// with a message. Result<T> holds either a T or a non-OK Status. Both are
// [[nodiscard]]: an ignored error is a compile-time warning.
//
// This header sits in tiers/, the lowest library, so that every other library
// (eviction, loader, cache, server, engine_adapter) can use it without a
// dependency pointing upwards. Thread safety: values, no shared state.
#pragma once

#include <cassert>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace kvtier {

enum class StatusCode : unsigned char {
  kOk = 0,
  kNotFound,
  kInvalidArgument,
  kResourceExhausted,  // a tier is full and nothing can be evicted
  kRejected,           // refused by policy (admission, duplicate, state)
  kRetry,              // transient: try again later (block in flight)
  kIOError,            // device or system call failed
  kCorruption,         // checksum or header mismatch
  kUnavailable,        // service or device not present (e.g. no GPU)
  kInternal,           // a bug: an invariant did not hold
  kPermissionDenied,   // the caller's tenant may not do or see this
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string_view msg)
      : rep_(code == StatusCode::kOk ? nullptr
                                     : std::make_unique<Rep>(Rep{code, std::string(msg)})) {}
  Status(const Status& o) : rep_(o.rep_ ? std::make_unique<Rep>(*o.rep_) : nullptr) {}
  Status& operator=(const Status& o) {
    if (this != &o) rep_ = o.rep_ ? std::make_unique<Rep>(*o.rep_) : nullptr;
    return *this;
  }
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view m) { return {StatusCode::kNotFound, m}; }
  static Status InvalidArgument(std::string_view m) { return {StatusCode::kInvalidArgument, m}; }
  static Status ResourceExhausted(std::string_view m) { return {StatusCode::kResourceExhausted, m}; }
  static Status Rejected(std::string_view m) { return {StatusCode::kRejected, m}; }
  static Status Retry(std::string_view m) { return {StatusCode::kRetry, m}; }
  static Status IOError(std::string_view m) { return {StatusCode::kIOError, m}; }
  static Status Corruption(std::string_view m) { return {StatusCode::kCorruption, m}; }
  static Status Unavailable(std::string_view m) { return {StatusCode::kUnavailable, m}; }
  static Status Internal(std::string_view m) { return {StatusCode::kInternal, m}; }
  static Status PermissionDenied(std::string_view m) {
    return {StatusCode::kPermissionDenied, m};
  }

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  const std::string& message() const {
    static const std::string kEmpty;
    return rep_ ? rep_->msg : kEmpty;
  }
  bool IsNotFound() const { return code() == StatusCode::kNotFound; }
  bool IsPermissionDenied() const { return code() == StatusCode::kPermissionDenied; }
  bool IsInvalidArgument() const { return code() == StatusCode::kInvalidArgument; }
  bool IsResourceExhausted() const { return code() == StatusCode::kResourceExhausted; }
  bool IsCorruption() const { return code() == StatusCode::kCorruption; }

  // "InvalidArgument: sizes[3] = 12 does not match the layout's 4096".
  std::string ToString() const;

 private:
  struct Rep {
    StatusCode code;
    std::string msg;
  };
  std::unique_ptr<Rep> rep_;
};

inline const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kResourceExhausted: return "ResourceExhausted";
    case StatusCode::kRejected: return "Rejected";
    case StatusCode::kRetry: return "Retry";
    case StatusCode::kIOError: return "IOError";
    case StatusCode::kCorruption: return "Corruption";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kInternal: return "Internal";
    case StatusCode::kPermissionDenied: return "PermissionDenied";
  }
  return "Unknown";
}

inline std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s = StatusCodeName(rep_->code);
  if (!rep_->msg.empty()) {
    s += ": ";
    s += rep_->msg;
  }
  return s;
}

// Result<T>: a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result built from an OK Status");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kvtier

#define KVTIER_RETURN_IF_ERROR(expr)      \
  do {                                    \
    ::kvtier::Status _st = (expr);        \
    if (!_st.ok()) return _st;            \
  } while (0)

#define KVTIER_CONCAT_INNER(a, b) a##b
#define KVTIER_CONCAT(a, b) KVTIER_CONCAT_INNER(a, b)
#define KVTIER_ASSIGN_OR_RETURN(lhs, expr)                         \
  auto KVTIER_CONCAT(_res_, __LINE__) = (expr);                    \
  if (!KVTIER_CONCAT(_res_, __LINE__).ok())                        \
    return KVTIER_CONCAT(_res_, __LINE__).status();                \
  lhs = std::move(KVTIER_CONCAT(_res_, __LINE__)).value()
