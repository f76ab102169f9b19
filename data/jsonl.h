// The one thing corpus import needs from JSON: the "text" string of a one-line object.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace rt {

// Parses `line` as a JSON object and returns the decoded value of its top-level "text" key.
// On failure returns nullopt and sets `error` to what is wrong (e.g. "expected ':' at column
// 12", "no \"text\" key", "\"text\" is a number, expected a string").
std::optional<std::string> jsonl_text_field(std::string_view line, std::string& error);

}  // namespace rt
