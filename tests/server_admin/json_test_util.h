// A strict little JSON parser for the admin tests: it checks that the
// daemon's JSON (stats, log lines) really parses and lets tests read fields by
// path. Not for production use: recursion depth and sizes are unbounded.
#pragma once

#include <cctype>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvtier::testing {

struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Json> arr;
  std::map<std::string, Json> obj;

  bool has(const std::string& k) const { return type == Type::kObject && obj.count(k) != 0; }
  const Json& operator[](const std::string& k) const {
    static const Json kNullJson;
    auto it = obj.find(k);
    return it == obj.end() ? kNullJson : it->second;
  }
  const Json& operator[](size_t i) const { return arr.at(i); }
};

class JsonParser {
 public:
  // nullopt when `text` is not exactly one JSON value (whitespace around it
  // allowed).
  static std::optional<Json> Parse(std::string_view text) {
    JsonParser p(text);
    Json v;
    if (!p.Value(&v)) return std::nullopt;
    p.Ws();
    if (p.i_ != text.size()) return std::nullopt;
    return v;
  }

 private:
  explicit JsonParser(std::string_view t) : t_(t) {}

  void Ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\n' || t_[i_] == '\t' || t_[i_] == '\r'))
      ++i_;
  }
  bool Lit(std::string_view w) {
    if (t_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  bool Value(Json* v) {
    Ws();
    if (i_ >= t_.size()) return false;
    char c = t_[i_];
    if (c == '{') return Object(v);
    if (c == '[') return Array(v);
    if (c == '"') {
      v->type = Json::Type::kString;
      return String(&v->str);
    }
    if (Lit("true")) {
      v->type = Json::Type::kBool;
      v->b = true;
      return true;
    }
    if (Lit("false")) {
      v->type = Json::Type::kBool;
      return true;
    }
    if (Lit("null")) return true;
    return Number(v);
  }
  bool Number(Json* v) {
    size_t start = i_;
    if (i_ < t_.size() && t_[i_] == '-') ++i_;
    size_t digits = 0;
    while (i_ < t_.size() && isdigit(static_cast<unsigned char>(t_[i_]))) ++i_, ++digits;
    if (digits == 0) return false;
    if (i_ < t_.size() && t_[i_] == '.') {
      ++i_;
      size_t f = 0;
      while (i_ < t_.size() && isdigit(static_cast<unsigned char>(t_[i_]))) ++i_, ++f;
      if (f == 0) return false;
    }
    if (i_ < t_.size() && (t_[i_] == 'e' || t_[i_] == 'E')) {
      ++i_;
      if (i_ < t_.size() && (t_[i_] == '+' || t_[i_] == '-')) ++i_;
      size_t e = 0;
      while (i_ < t_.size() && isdigit(static_cast<unsigned char>(t_[i_]))) ++i_, ++e;
      if (e == 0) return false;
    }
    v->type = Json::Type::kNumber;
    v->num = std::strtod(std::string(t_.substr(start, i_ - start)).c_str(), nullptr);
    return true;
  }
  static void PutUtf8(unsigned cp, std::string* out) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xC0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *out += static_cast<char>(0xE0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  bool String(std::string* out) {
    if (!Lit("\"")) return false;
    while (i_ < t_.size()) {
      unsigned char c = static_cast<unsigned char>(t_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;  // raw control characters are not JSON
      if (c != '\\') {
        *out += static_cast<char>(c);
        continue;
      }
      if (i_ >= t_.size()) return false;
      char e = t_[i_++];
      switch (e) {
        case '"': *out += '"'; break;
        case '\\': *out += '\\'; break;
        case '/': *out += '/'; break;
        case 'b': *out += '\b'; break;
        case 'f': *out += '\f'; break;
        case 'n': *out += '\n'; break;
        case 'r': *out += '\r'; break;
        case 't': *out += '\t'; break;
        case 'u': {
          if (i_ + 4 > t_.size()) return false;
          unsigned cp = static_cast<unsigned>(
              std::strtoul(std::string(t_.substr(i_, 4)).c_str(), nullptr, 16));
          i_ += 4;
          PutUtf8(cp, out);
          break;
        }
        default: return false;
      }
    }
    return false;
  }
  bool Array(Json* v) {
    v->type = Json::Type::kArray;
    ++i_;
    Ws();
    if (Lit("]")) return true;
    while (true) {
      Json e;
      if (!Value(&e)) return false;
      v->arr.push_back(std::move(e));
      Ws();
      if (Lit("]")) return true;
      if (!Lit(",")) return false;
    }
  }
  bool Object(Json* v) {
    v->type = Json::Type::kObject;
    ++i_;
    Ws();
    if (Lit("}")) return true;
    while (true) {
      Ws();
      std::string k;
      if (!String(&k)) return false;
      Ws();
      if (!Lit(":")) return false;
      Json e;
      if (!Value(&e)) return false;
      if (v->obj.count(k)) return false;  // duplicate keys: our writer never makes them
      v->obj.emplace(std::move(k), std::move(e));
      Ws();
      if (Lit("}")) return true;
      if (!Lit(",")) return false;
    }
  }

  std::string_view t_;
  size_t i_ = 0;
};

}  // namespace kvtier::testing
