// A small recursive-descent JSON reader: validates the whole line, decodes the "text" string
// (escapes, \u with surrogate pairs -> UTF-8) and skips every other value.
#include "data/jsonl.h"

#include <cstdint>

#include "kernels/check.h"

namespace rt {

namespace {

struct ParseError {
  std::string what;
};

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}

  std::optional<std::string> object_text_field() {
    skip_ws();
    expect('{');
    std::optional<std::string> text;
    std::string text_kind;
    skip_ws();
    if (peek() == '}') {
      ++pos_;
    } else {
      while (true) {
        skip_ws();
        std::string key = string();
        skip_ws();
        expect(':');
        skip_ws();
        if (key == "text") {
          if (peek() == '"') text = string();
          else text_kind = kind_of_value(), value();
        } else {
          value();
        }
        skip_ws();
        if (peek() == ',') { ++pos_; continue; }
        expect('}');
        break;
      }
    }
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after the object");
    if (!text && !text_kind.empty()) throw ParseError{"\"text\" is " + text_kind + ", expected a string"};
    if (!text) throw ParseError{"no \"text\" key"};
    return text;
  }

 private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  [[noreturn]] void fail(const std::string& what) const {
    throw ParseError{what + " at column " + std::to_string(pos_ + 1)};
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r' || s_[pos_] == '\n')) ++pos_;
  }
  std::string kind_of_value() const {
    switch (peek()) {
      case '{': return "an object";
      case '[': return "a list";
      case 't': case 'f': return "a boolean";
      case 'n': return "null";
      default: return "a number";
    }
  }

  void value() {
    switch (peek()) {
      case '"': string(); return;
      case '{': {
        ++pos_;
        skip_ws();
        if (peek() == '}') { ++pos_; return; }
        while (true) {
          skip_ws(); string(); skip_ws(); expect(':'); skip_ws(); value(); skip_ws();
          if (peek() == ',') { ++pos_; continue; }
          expect('}');
          return;
        }
      }
      case '[': {
        ++pos_;
        skip_ws();
        if (peek() == ']') { ++pos_; return; }
        while (true) {
          skip_ws(); value(); skip_ws();
          if (peek() == ',') { ++pos_; continue; }
          expect(']');
          return;
        }
      }
      case 't': literal("true"); return;
      case 'f': literal("false"); return;
      case 'n': literal("null"); return;
      default: number();
    }
  }

  void literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) fail("invalid literal");
    pos_ += word.size();
  }

  void number() {
    size_t start = pos_;
    if (peek() == '-') ++pos_;
    while (pos_ < s_.size() && std::string_view("0123456789.eE+-").find(s_[pos_]) != std::string_view::npos) ++pos_;
    if (pos_ == start) fail("expected a value");
  }

  uint32_t hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else fail("invalid \\u escape");
    }
    return v;
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated string");
      char e = s_[pos_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.substr(pos_, 2) == "\\u") {
            pos_ += 2;
            uint32_t low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail("invalid surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          put_utf8(out, cp);
          break;
        }
        default: fail("invalid escape");
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

std::optional<std::string> jsonl_text_field(std::string_view line, std::string& error) {
  try {
    return Reader(line).object_text_field();
  } catch (const ParseError& e) {
    error = e.what;
    return std::nullopt;
  }
}

}  // namespace rt
