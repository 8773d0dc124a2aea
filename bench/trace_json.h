// JsonCursor: a minimal pull parser over JSON text, for reading traces fast.
//
// It walks a buffer it does not own: skip whitespace, read a string, a
// number, an array or object one element at a time, or skip any value. It
// builds no document, so a 441 MiB trace costs one pass and no allocation
// beyond what the caller keeps. Strings are returned as views into the
// buffer, escapes left as they are (trace keys and values need none).
//
// Errors: every method returns false on malformed input and leaves the
// cursor where the error was found (offset() tells where).
// Thread safety: none; one cursor per thread. The buffer must outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kvtier::bench {

class JsonCursor {
 public:
  explicit JsonCursor(std::string_view text)
      : p_(text.data()), begin_(text.data()), end_(text.data() + text.size()) {}

  size_t offset() const { return static_cast<size_t>(p_ - begin_); }
  bool AtEnd() {
    SkipWs();
    return p_ == end_;
  }
  // The next non-space character, or '\0' at the end.
  char Peek() {
    SkipWs();
    return p_ == end_ ? '\0' : *p_;
  }
  // Consumes `c` (after whitespace) if it is next.
  bool Consume(char c) {
    SkipWs();
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }

  // A string's raw contents (between the quotes).
  bool String(std::string_view* out);
  // A number as double (any JSON number).
  bool Number(double* out);
  // A non-negative integer; false for signs, fractions and exponents.
  bool Uint(uint64_t* out);
  // Skips any value (nested arrays and objects included).
  bool SkipValue();

  // Iteration: BeginObject() / BeginArray(), then call ObjectNext() /
  // ArrayNext() with a `first` flag initialised to true until it answers
  // kEnd; after each kItem read or skip exactly one value.
  enum class Step { kItem, kEnd, kError };
  bool BeginObject() { return Consume('{'); }
  bool BeginArray() { return Consume('['); }
  Step ObjectNext(bool* first, std::string_view* key);
  Step ArrayNext(bool* first);

 private:
  void SkipWs() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  const char* p_;
  const char* begin_;
  const char* end_;
};

}  // namespace kvtier::bench
