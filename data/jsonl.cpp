// The "text" field of a JSONL line, read by nlohmann/json's SAX parser (Debian's
// nlohmann-json3-dev): the whole line is validated, only the top-level "text" string is kept,
// and nesting is cut off at kMaxDepth levels (a line nested a million levels deep is one error,
// not a stack overflow).
#include "data/jsonl.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace rt {

namespace {

constexpr int kMaxDepth = 256;

using json = nlohmann::json;

// The column (1-based byte offset) of the first bracket that opens level kMaxDepth + 1: the
// parser got there, so the line is valid JSON up to it and strings are well formed.
size_t column_of_depth_limit(std::string_view line) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxDepth) return i + 1;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return line.size();
}

class TextField : public nlohmann::json_sax<json> {
 public:
  std::optional<std::string> text;
  std::string text_kind;  // what "text" held when it was not a string
  std::string error;      // set when the parse stops

  bool null() override { return scalar("null"); }
  bool boolean(bool) override { return scalar("a boolean"); }
  bool number_integer(number_integer_t) override { return scalar("a number"); }
  bool number_unsigned(number_unsigned_t) override { return scalar("a number"); }
  bool number_float(number_float_t, const string_t&) override { return scalar("a number"); }
  bool string(string_t& value) override {
    if (depth_ == 0) return top_level("a string");
    if (at_text()) {
      text = std::move(value);
      text_kind.clear();
    }
    expecting_text_ = false;
    return true;
  }
  bool binary(binary_t&) override { return scalar("binary data"); }
  bool start_object(std::size_t) override { return open("an object"); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override {
    if (depth_ == 0) return top_level("a list");
    return open("a list");
  }
  bool end_array() override { return close(); }
  bool key(string_t& name) override {
    expecting_text_ = depth_ == 1 && name == "text";
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    // nlohmann's message: "[json.exception.parse_error.101] parse error at line 1, column 14:
    // syntax error while parsing object - unexpected end of input; expected '}'". Kept: what
    // is wrong, and the column.
    std::string what = e.what();
    if (what.rfind("[json.exception.", 0) == 0 && what.find("] ") != std::string::npos)
      what = what.substr(what.find("] ") + 2);
    if (what.rfind("parse error", 0) == 0 && what.find(": ") != std::string::npos)
      what = what.substr(what.find(": ") + 2);
    error = what + " at column " + std::to_string(position);
    return false;
  }

  bool depth_exceeded = false;

 private:
  bool at_text() const { return depth_ == 1 && expecting_text_; }
  bool scalar(const char* kind) {
    if (depth_ == 0) return top_level(kind);
    if (at_text()) {
      text.reset();
      text_kind = kind;
    }
    expecting_text_ = false;
    return true;
  }
  bool top_level(const char* kind) {
    error = std::string("the line is ") + kind + ", expected a JSON object at column 1";
    return false;
  }
  bool open(const char* kind) {
    if (at_text()) {
      text.reset();
      text_kind = kind;
    }
    expecting_text_ = false;
    if (++depth_ > kMaxDepth) {
      depth_exceeded = true;
      return false;
    }
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }

  int depth_ = 0;
  bool expecting_text_ = false;
};

}  // namespace

std::optional<std::string> jsonl_text_field(std::string_view line, std::string& error) {
  TextField sax;
  const bool ok = json::sax_parse(line.begin(), line.end(), &sax, json::input_format_t::json,
                                  /*strict=*/true, /*ignore_comments=*/false);
  if (sax.depth_exceeded) {
    error = "nested deeper than " + std::to_string(kMaxDepth) + " levels at column " +
            std::to_string(column_of_depth_limit(line));
    return std::nullopt;
  }
  if (!ok) {
    error = sax.error.empty() ? std::string("invalid JSON") : sax.error;
    return std::nullopt;
  }
  if (!sax.text && !sax.text_kind.empty()) {
    error = "\"text\" is " + sax.text_kind + ", expected a string";
    return std::nullopt;
  }
  if (!sax.text) {
    error = "no \"text\" key";
    return std::nullopt;
  }
  return sax.text;
}

}  // namespace rt
