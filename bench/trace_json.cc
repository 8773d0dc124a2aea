#include "bench/trace_json.h"

#include <charconv>

namespace kvtier::bench {

bool JsonCursor::String(std::string_view* out) {
  if (!Consume('"')) return false;
  const char* s = p_;
  while (p_ != end_ && *p_ != '"') {
    if (*p_ == '\\') {
      if (++p_ == end_) return false;
    }
    ++p_;
  }
  if (p_ == end_) return false;
  *out = std::string_view(s, static_cast<size_t>(p_ - s));
  ++p_;
  return true;
}

bool JsonCursor::Uint(uint64_t* out) {
  SkipWs();
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(p_, end_, v);
  if (ec != std::errc() || ptr == p_) return false;
  if (ptr != end_ && (*ptr == '.' || *ptr == 'e' || *ptr == 'E')) return false;
  p_ = ptr;
  *out = v;
  return true;
}

bool JsonCursor::Number(double* out) {
  SkipWs();
  const char* s = p_;
  if (p_ != end_ && *p_ == '-') ++p_;  // from_chars takes '-' but not '+'
  auto [ptr, ec] = std::from_chars(s, end_, *out);
  if (ec != std::errc() || ptr == s) {
    p_ = s;
    return false;
  }
  p_ = ptr;
  return true;
}

JsonCursor::Step JsonCursor::ObjectNext(bool* first, std::string_view* key) {
  if (Consume('}')) return Step::kEnd;
  if (!*first && !Consume(',')) return Step::kError;
  *first = false;
  if (!String(key) || !Consume(':')) return Step::kError;
  return Step::kItem;
}

JsonCursor::Step JsonCursor::ArrayNext(bool* first) {
  if (Consume(']')) return Step::kEnd;
  if (!*first && !Consume(',')) return Step::kError;
  *first = false;
  return Step::kItem;
}

bool JsonCursor::SkipValue() {
  const char c = Peek();
  if (c == '"') {
    std::string_view s;
    return String(&s);
  }
  if (c == '{') {
    BeginObject();
    bool first = true;
    std::string_view key;
    for (;;) {
      Step st = ObjectNext(&first, &key);
      if (st == Step::kEnd) return true;
      if (st == Step::kError || !SkipValue()) return false;
    }
  }
  if (c == '[') {
    BeginArray();
    bool first = true;
    for (;;) {
      Step st = ArrayNext(&first);
      if (st == Step::kEnd) return true;
      if (st == Step::kError || !SkipValue()) return false;
    }
  }
  for (std::string_view lit : {"true", "false", "null"}) {
    if (static_cast<size_t>(end_ - p_) >= lit.size() && std::string_view(p_, lit.size()) == lit) {
      p_ += lit.size();
      return true;
    }
  }
  double d;
  return Number(&d);
}

}  // namespace kvtier::bench
