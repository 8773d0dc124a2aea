// Python exceptions that carry a kvtier Status.
//
// kvtier.Error is the base of every error the module raises for a kvtier
// status; each status code has its subclass, named like the code
// (kvtier.InvalidArgument, kvtier.Unavailable, kvtier.Corruption, ...), with
// `status` (the code's name, e.g. "InvalidArgument") and `message` on the
// instance. InvalidArgument also derives from ValueError, NotFound from
// LookupError and IOError from OSError, so generic handlers catch them too.
//
// C++ code anywhere in the binding throws StatusError; a translator turns it
// into the Python exception when it crosses into Python (with the GIL).
#pragma once

#include <pybind11/pybind11.h>

#include <exception>
#include <string>

#include "tiers/status.h"

namespace kvtier::py {

struct StatusError : std::exception {
  explicit StatusError(Status s) : status(std::move(s)), text(status.ToString()) {}
  const char* what() const noexcept override { return text.c_str(); }
  Status status;
  std::string text;
};

[[noreturn]] inline void Raise(Status s) { throw StatusError(std::move(s)); }
[[noreturn]] inline void RaiseInvalid(const std::string& msg) {
  throw StatusError(Status::InvalidArgument(msg));
}
inline void Check(Status s) {
  if (!s.ok()) throw StatusError(std::move(s));
}
template <typename T>
T Take(Result<T> r) {
  if (!r.ok()) throw StatusError(r.status());
  return std::move(r).value();
}

// Creates kvtier.Error and its subclasses in `m` and registers the translator.
void RegisterErrors(pybind11::module_& m);

}  // namespace kvtier::py
