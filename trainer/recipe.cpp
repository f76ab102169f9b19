// Recipe loading. One table of keys (keys() below) drives parsing, emission and recipe_keys(),
// so a key added to recipe.h needs one new line here plus its value check.
//
// Order of work: YAML text -> document -> names checked against the table -> --set overrides
// written into the document -> typed values -> value checks -> derived values. Overrides go
// through the document so that they get exactly the type checks a file gets.
#include "trainer/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <type_traits>
#include <variant>

#include "core/check.h"
#include "model/layer_registry.h"

namespace rt {
namespace {

// ---- The key table ---------------------------------------------------------------------------

// A key whose values are an enumeration's names (core/enum_names.h), type-erased.
struct EnumField {
  void* field;
  std::string_view noun;
  std::span<const std::string_view> names;  // in the order of the enumerators (static)
  void (*assign)(void* field, size_t index);
  size_t (*index)(const void* field);
};

using FieldRef = std::variant<int64_t*, double*, bool*, std::string*, EnumField>;

template <class T>
FieldRef field_ref(T* field) {
  if constexpr (std::is_enum_v<T>) {
    return EnumField{field, EnumNames<T>::noun, EnumNames<T>::names,
                     [](void* f, size_t i) { *static_cast<T*>(f) = static_cast<T>(i); },
                     [](const void* f) { return static_cast<size_t>(*static_cast<const T*>(f)); }};
  } else {
    return field;
  }
}

struct KeyDef {
  std::string_view section;
  std::string_view name;
  FieldRef (*field)(Recipe&);

  std::string path() const { return cat(section, ".", name); }
};

// The YAML names are the C++ names, so one macro argument pair gives both.
// clang-format off
#define RT_KEY(section, member) \
  KeyDef { #section, #member, [](Recipe& r) -> FieldRef { return field_ref(&r.section.member); } }
// clang-format on

// In the order of recipe.h and model/config.h; sections must stay grouped.
const std::vector<KeyDef>& keys() {
  static const std::vector<KeyDef> table = {
      RT_KEY(run, name),
      RT_KEY(run, out_dir),
      RT_KEY(run, seed),
      RT_KEY(run, device),
      RT_KEY(run, precision),
      RT_KEY(run, memory_check),
      RT_KEY(model, pattern),
      RT_KEY(model, vocab_size),
      RT_KEY(model, d_model),
      RT_KEY(model, heads),
      RT_KEY(model, kv_heads),
      RT_KEY(model, head_dim),
      RT_KEY(model, mlp_hidden),
      RT_KEY(model, mlp_activation),
      RT_KEY(model, rope),
      RT_KEY(model, rope_theta),
      RT_KEY(model, rope_scaling),
      RT_KEY(model, rope_factor),
      RT_KEY(model, rope_original_context),
      RT_KEY(model, rope_low_freq_factor),
      RT_KEY(model, rope_high_freq_factor),
      RT_KEY(model, rope_beta_fast),
      RT_KEY(model, rope_beta_slow),
      RT_KEY(model, rope_attention_factor),
      RT_KEY(model, norm_eps),
      RT_KEY(model, tied_embeddings),
      RT_KEY(model, attention_bias),
      RT_KEY(model, init_std),
      RT_KEY(model, gla_heads),
      RT_KEY(model, gla_expand_k),
      RT_KEY(model, gla_expand_v),
      RT_KEY(model, mamba_d_state),
      RT_KEY(model, mamba_headdim),
      RT_KEY(model, mamba_expand),
      RT_KEY(model, mamba_num_heads),
      RT_KEY(model, mamba_ngroups),
      RT_KEY(model, mamba_conv_width),
      RT_KEY(model, glr_chunk),
      RT_KEY(data, corpus),
      RT_KEY(data, val_corpus),
      RT_KEY(data, mode),
      RT_KEY(data, seq_len),
      RT_KEY(data, curriculum),
      RT_KEY(data, curriculum_odds),
      RT_KEY(data, cycles),
      RT_KEY(parallel, sp),
      RT_KEY(parallel, timeout_s),
      RT_KEY(parallel, gpu_comm),
      RT_KEY(optim, lr),
      RT_KEY(optim, beta1),
      RT_KEY(optim, beta2),
      RT_KEY(optim, eps),
      RT_KEY(optim, weight_decay),
      RT_KEY(optim, grad_clip),
      RT_KEY(schedule, kind),
      RT_KEY(schedule, warmup_steps),
      RT_KEY(schedule, min_lr_ratio),
      RT_KEY(schedule, decay_steps),
      RT_KEY(train, steps),
      RT_KEY(train, tokens_per_step),
      RT_KEY(train, micro_tokens),
      RT_KEY(train, recompute),
      RT_KEY(checkpoint, every),
      RT_KEY(checkpoint, keep_last),
      RT_KEY(checkpoint, init_from),
      RT_KEY(log, every),
      RT_KEY(log, peak_gflops),
      RT_KEY(eval, every),
      RT_KEY(eval, batches),
      RT_KEY(eval, seq_len),
  };
  return table;
}

#undef RT_KEY

std::vector<std::string> section_names() {
  std::vector<std::string> names;
  for (const KeyDef& key : keys()) {
    if (names.empty() || names.back() != key.section) names.emplace_back(key.section);
  }
  return names;
}

std::vector<std::string> keys_of(std::string_view section) {
  std::vector<std::string> names;
  for (const KeyDef& key : keys()) {
    if (key.section == section) names.emplace_back(key.name);
  }
  return names;
}

const KeyDef* find_key(std::string_view path) {
  for (const KeyDef& key : keys()) {
    if (key.path() == path) return &key;
  }
  return nullptr;
}

bool is_section(std::string_view name) {
  const std::vector<std::string> names = section_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

// ---- Text ------------------------------------------------------------------------------------

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// Control characters become \xNN: messages stay on one line, and YAML double quotes read it.
void append_escaped(std::string& out, char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte >= 0x20 && byte != 0x7f) {
    out += c;
    return;
  }
  char hex[8];
  std::snprintf(hex, sizeof hex, "\\x%02x", byte);
  out += hex;
}

// User text inside a message.
std::string quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) append_escaped(out, c);
  return out + "'";
}

// User text inside emitted YAML: double quotes read back every string, whatever it looks like.
std::string yaml_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    append_escaped(out, c);
  }
  return out + "\"";
}

// The shortest %g form that reads back as the same double: 3e-4 prints as 0.0003, and a recipe
// stored in a checkpoint loads back bit for bit.
std::string format_double(double value) {
  // Whole numbers read better written out (10000, not %g's 1e+04); below 2^53 that is exact.
  if (std::fabs(value) >= 1 && std::fabs(value) < 0x1p53 && value == std::trunc(value)) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char text[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(text, sizeof text, "%.*g", precision, value);
    if (std::strtod(text, nullptr) == value) break;
  }
  return text;
}

std::string show(int64_t value) { return std::to_string(value); }
std::string show(double value) { return format_double(value); }

// ---- Unknown names ---------------------------------------------------------------------------

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), size_t{0});
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::optional<std::string> nearest_name(std::string_view name,
                                        const std::vector<std::string>& candidates) {
  const size_t limit = std::max<size_t>(2, name.size() / 3);
  std::optional<std::string> best;
  size_t best_distance = limit + 1;
  for (const std::string& candidate : candidates) {
    // A length difference beyond the limit is a distance beyond it: no quadratic work for a
    // long name (a fuzzer's megabyte key).
    const size_t gap = name.size() > candidate.size() ? name.size() - candidate.size()
                                                      : candidate.size() - name.size();
    if (gap > limit) continue;
    const size_t distance = edit_distance(name, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

namespace {

std::string unknown_section(std::string_view where, std::string_view name) {
  const std::string message = cat(where, ": unknown section ", quote(name));
  if (auto guess = nearest_name(name, section_names()))
    return cat(message, " (did you mean '", *guess, "'?)");
  return cat(message, "; valid sections: ", join(section_names()));
}

std::string unknown_key(std::string_view where, std::string_view path) {
  const std::string message = cat(where, ": unknown key ", quote(path));
  if (auto guess = nearest_name(path, recipe_keys()))
    return cat(message, " (did you mean '", *guess, "'?)");
  const std::string_view section = path.substr(0, path.find('.'));
  if (is_section(section)) {
    return cat(message, "; valid keys of ", section, ": ", join(keys_of(section)));
  }
  return cat(message, "; valid sections: ", join(section_names()));
}

// ---- Where values came from ------------------------------------------------------------------

// Errors about a value point at the file, or at the command line when --set wrote it.
struct Sources {
  std::string origin;
  std::set<std::string, std::less<>> overridden;

  std::string at(std::string_view path) const {
    return cat(overridden.count(path) ? "--set" : origin, ": ", path);
  }
};

// ---- The YAML document -----------------------------------------------------------------------

// yaml-cpp 0.7 (Debian 12's) never returns from LoadAll when a ',' stands at a document's root
// outside any collection (its scanner loops, allocating until memory runs out; found by
// fuzz_recipe: ',', '"a", b', '[a], b', '""""...",', a directive line then ','). A recipe's root
// is a mapping, so each document is held to that before yaml-cpp sees it: its first token
// (past whitespace, a BOM, comments, directives, anchors and tags) is a key at column 0 on a
// line that has the ': ' of a key: the root is a block mapping at column 0, so no dedent can
// return to the root. (A flow mapping '{...}' as the root is refused too: telling where it
// ends needs YAML's full plain-scalar rules, '{a:\"},' fooled a simpler scan.) Documents start at
// the stream, after '---' or '...' lines and at '%' directive lines.

// Whether text[i] opens a quoted scalar: a quote character where a scalar can begin (a quote
// inside a plain scalar, 'a"b', is part of it).
bool opens_quote(const std::string& text, size_t i) {
  if (text[i] != '"' && text[i] != '\'') return false;
  return i == 0 || std::string_view(" \t\r\n[{,:").find(text[i - 1]) != std::string_view::npos;
}

void refuse_unsafe_root(const std::string& text, const std::string& origin) {
  size_t i = 0, line = 1, line_start = 0;
  enum { kStart, kInside } state = kStart;
  auto not_a_mapping = [&](size_t at) {
    throw UserError(cat(origin,
                        ": expected a mapping of sections ('section:' at column 0), got "
                        "something else at line ",
                        line, ", column ", at - line_start + 1));
  };
  auto skip_line = [&] {
    const size_t next = text.find('\n', i);
    i = next == std::string::npos ? text.size() : next;
  };
  while (i < text.size()) {
    const char c = text[i];
    const bool line_begin = i == line_start;
    if (c == '\n') {
      ++i;
      ++line;
      line_start = i;
      continue;
    }
    if (line_begin && (text.compare(i, 3, "---") == 0 || text.compare(i, 3, "...") == 0) &&
        (i + 3 == text.size() || std::isspace(static_cast<unsigned char>(text[i + 3])))) {
      state = kStart;
      i += 3;
      continue;
    }
    if (line_begin && c == '%') {  // a directive: yaml-cpp starts a new document with it
      state = kStart;
      skip_line();
      continue;
    }
    if (state == kInside) {
      skip_line();
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') {
      ++i;
    } else if (text.compare(i, 3, "\xef\xbb\xbf") == 0) {
      i += 3;
    } else if (c == '#') {
      skip_line();
    } else if (c == '&' || c == '!') {  // an anchor or tag ends at a space or a flow indicator
      ++i;
      while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i])) &&
             std::string_view(",[]{}").find(text[i]) == std::string_view::npos)
        ++i;
    } else {
      // A block mapping: its first key at column 0, on a line with the key's ':'.
      if (i != line_start) not_a_mapping(i);
      const size_t end = std::min(text.find('\n', i), text.size());
      bool key = false;
      char quote = 0;
      for (size_t j = i; j < end && !key; ++j) {
        const char d = text[j];
        if (quote) {
          if (quote == '"' && d == '\\')
            ++j;
          else if (d == quote)
            quote = 0;
        } else if (opens_quote(text, j)) {
          quote = d;
        } else if (d == ',' || d == '[' || d == '{' || (d == '#' && j > i && text[j - 1] == ' ')) {
          break;
        } else if (d == ':' &&
                   (j + 1 == end || std::isspace(static_cast<unsigned char>(text[j + 1])))) {
          key = true;
        }
      }
      if (!key) not_a_mapping(i);
      state = kInside;
    }
  }
}

// The same loop after a dedent back to the root ("  steps: 3\n , x": the mapping ends and the
// ',' stands at the root): a line whose first character is ',' outside quotes and flow
// collections is refused (a block scalar's line starting with ',' is refused too: a recipe
// has no use for one).
void refuse_line_leading_comma(const std::string& text, const std::string& origin) {
  int depth = 0;
  char quote = 0;
  size_t line = 1, line_start = 0;
  bool leading = true;  // only indentation so far on this line
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      line_start = i + 1;
      leading = true;
      continue;
    }
    if (quote) {
      if (quote == '"' && c == '\\')
        ++i;
      else if (c == quote)
        quote = 0;
      leading = false;
      continue;
    }
    if (leading && (c == ' ' || c == '\t' || c == '\r')) continue;
    if (leading && c == ',' && depth == 0)
      throw UserError(cat(origin, ":", line, ":", i - line_start + 1,
                          ": invalid YAML: a line cannot start with ',' outside [] or {}"));
    leading = false;
    if (c == '#' && (i == 0 || std::isspace(static_cast<unsigned char>(text[i - 1])))) {
      const size_t next = text.find('\n', i);
      i = (next == std::string::npos ? text.size() : next) - 1;
    } else if (opens_quote(text, i)) {
      quote = c;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

YAML::Node load_document(const std::string& text, const std::string& origin) {
  refuse_unsafe_root(text, origin);
  refuse_line_leading_comma(text, origin);
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) throw UserError(cat(origin, ": invalid YAML: ", e.msg));
    throw UserError(
        cat(origin, ":", e.mark.line + 1, ":", e.mark.column + 1, ": invalid YAML: ", e.msg));
  }
  if (documents.size() > 1) {
    throw UserError(cat(origin, ": ", documents.size(), " YAML documents; expected one"));
  }
  return documents.empty() ? YAML::Node() : documents.front();
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar:
      // yaml-cpp tags quoted scalars "!": YAML reads them as strings, never numbers.
      return node.Tag() == "!" ? cat("the quoted string ", quote(node.Scalar()))
                               : quote(node.Scalar());
    default: return "nothing (null)";
  }
}

[[noreturn]] void type_error(std::string_view where, std::string_view expected,
                             const YAML::Node& node) {
  throw UserError(cat(where, ": expected ", expected, ", got ", describe(node)));
}

std::string name_of(const YAML::Node& key, std::string_view where) {
  if (!key.IsScalar()) type_error(where, "a name as key", key);
  return key.Scalar();
}

void check_section_names(const YAML::Node& section, const std::string& name,
                         const std::string& origin) {
  if (section.IsNull()) return;  // every key commented out: all defaults
  if (!section.IsMap())
    type_error(cat(origin, ": ", name), cat("a mapping of ", name, " keys"), section);
  std::set<std::string> seen;
  for (auto it = section.begin(); it != section.end(); ++it) {
    const std::string path = cat(name, ".", name_of(it->first, origin));
    if (!find_key(path)) throw UserError(unknown_key(origin, path));
    // yaml-cpp keeps both copies of a repeated key; which one wins would be a guess.
    if (!seen.insert(path).second) {
      throw UserError(cat(origin, ": ", path, ": given twice; expected each key once"));
    }
  }
}

// Every name must be in the key table: a typo must stop the run, not leave a default in place.
void check_names(const YAML::Node& root, const std::string& origin) {
  if (root.IsNull()) return;
  if (!root.IsMap()) type_error(origin, "a mapping of sections (run:, model:, ...)", root);
  std::set<std::string> seen;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string name = name_of(it->first, origin);
    if (!is_section(name)) throw UserError(unknown_section(origin, name));
    if (!seen.insert(name).second) {
      throw UserError(
          cat(origin, ": section ", quote(name), " given twice; expected each section once"));
    }
    check_section_names(it->second, name, origin);
  }
}

// The value as a YAML scalar (so "3e-4" is a number and "'5'" a string), or else the text itself:
// a shell user writing --set model.pattern=*-*- means a string, not a YAML alias.
YAML::Node override_value(const std::string& text) {
  try {
    YAML::Node value = YAML::Load(text);
    if (value.IsScalar() || value.IsNull()) return value;
  } catch (const YAML::Exception&) {}
  return YAML::Node(text);
}

void apply_override(YAML::Node& root, const std::string& item, Sources& sources) {
  const size_t equals = item.find('=');
  if (equals == std::string::npos) {
    throw UserError(cat("--set ", quote(item), ": expected key.path=value"));
  }
  const std::string path = item.substr(0, equals);
  const KeyDef* key = find_key(path);
  if (!key) throw UserError(unknown_key("--set", path));

  const YAML::Node value = override_value(item.substr(equals + 1));
  if (!root.IsMap()) root = YAML::Node(YAML::NodeType::Map);
  YAML::Node section = root[std::string(key->section)];
  if (!section.IsMap()) section = YAML::Node(YAML::NodeType::Map);
  section[std::string(key->name)] = value;
  sources.overridden.insert(path);
}

// ---- Typed values ----------------------------------------------------------------------------

// Only plain (unquoted) scalars are numbers or booleans in YAML.
std::optional<std::string> plain_scalar(const YAML::Node& node) {
  if (!node.IsScalar() || node.Tag() == "!") return std::nullopt;
  return node.Scalar();
}

template <class T>
std::optional<T> parse_number(std::string_view text) {
  // YAML allows a leading '+'; from_chars does not.
  if (text.size() > 1 && text[0] == '+' && text[1] != '-') text.remove_prefix(1);
  T value{};
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc() || stop != end) return std::nullopt;
  return value;
}

std::optional<bool> parse_bool(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (text == "true" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "no" || text == "off") return false;
  return std::nullopt;
}

void read_value(const YAML::Node& node, int64_t& out, const std::string& where) {
  const std::optional<std::string> text = plain_scalar(node);
  const std::optional<int64_t> value = text ? parse_number<int64_t>(*text) : std::nullopt;
  if (!value) type_error(where, "an integer", node);
  out = *value;
}

void read_value(const YAML::Node& node, double& out, const std::string& where) {
  const std::optional<std::string> text = plain_scalar(node);
  const std::optional<double> value = text ? parse_number<double>(*text) : std::nullopt;
  if (!value) type_error(where, "a number", node);
  if (!std::isfinite(*value)) {
    throw UserError(cat(where, ": ", quote(*text), " is not finite; expected a finite number"));
  }
  out = *value;
}

void read_value(const YAML::Node& node, bool& out, const std::string& where) {
  const std::optional<std::string> text = plain_scalar(node);
  const std::optional<bool> value = text ? parse_bool(*text) : std::nullopt;
  if (!value) type_error(where, "true or false", node);
  out = *value;
}

void read_value(const YAML::Node& node, std::string& out, const std::string& where) {
  if (!node.IsScalar()) type_error(where, "a string", node);
  out = node.Scalar();
}

void read_value(const YAML::Node& node, const EnumField& out, const std::string& where) {
  if (!node.IsScalar()) type_error(where, cat("a ", out.noun, " name"), node);
  const std::string& text = node.Scalar();
  for (size_t i = 0; i < out.names.size(); ++i)
    if (out.names[i] == text) return out.assign(out.field, i);
  const std::vector<std::string> candidates(out.names.begin(), out.names.end());
  const std::optional<std::string> guess = nearest_name(text, candidates);
  throw UserError(cat(where, ": ", quote(text), " is not a known ", out.noun, "; expected ",
                      choices_of(out.names),
                      guess ? cat(" (did you mean ", *guess, "?)") : std::string()));
}

// A present child of a mapping; nullopt when the key (or the mapping itself) is absent.
std::optional<YAML::Node> child(const YAML::Node& map, std::string_view name) {
  if (!map.IsDefined() || !map.IsMap()) return std::nullopt;
  const YAML::Node node = map[std::string(name)];
  if (!node.IsDefined()) return std::nullopt;
  return node;
}

// Keys the document leaves out keep the defaults of recipe.h.
Recipe read_recipe(const YAML::Node& root, const Sources& sources) {
  Recipe recipe;
  for (const KeyDef& key : keys()) {
    const std::optional<YAML::Node> section = child(root, key.section);
    const std::optional<YAML::Node> node = section ? child(*section, key.name) : std::nullopt;
    if (!node) continue;
    std::visit(
        [&](auto field) {
          if constexpr (std::is_same_v<decltype(field), EnumField>)
            read_value(*node, field, sources.at(key.path()));
          else
            read_value(*node, *field, sources.at(key.path()));
        },
        key.field(recipe));
  }
  return recipe;
}

// ---- Value checks ----------------------------------------------------------------------------

constexpr double kAboveZero = std::numeric_limits<double>::denorm_min();
constexpr double kBelowOne = 1.0 - std::numeric_limits<double>::epsilon() / 2;
// Token ids are int32, and resolve() computes 8 * d_model: sizes above this are typos anyway.
constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxCount = std::numeric_limits<int64_t>::max();

class Validator {
 public:
  explicit Validator(const Sources& sources) : sources_(sources) {}

  [[noreturn]] void fail(std::string_view path, const std::string& message) const {
    throw UserError(cat(sources_.at(path), ": ", message));
  }

  void require(bool ok, std::string_view path, const std::string& message) const {
    if (!ok) fail(path, message);
  }

  // lo <= value <= hi; `expected` says the rule in the user's terms.
  template <class T>
  void range(std::string_view path, T value, std::type_identity_t<T> lo, std::type_identity_t<T> hi,
             std::string_view expected) const {
    if (value < lo) {
      const char* problem = value < 0 && lo >= 0 ? " is negative" : " is too small";
      fail(path, cat(show(value), problem, "; expected ", expected));
    }
    if (value > hi) fail(path, cat(show(value), " is too large; expected ", expected));
  }

 private:
  const Sources& sources_;
};

void check_run(const Validator& v, const RunSection& run) {
  v.require(!run.name.empty(), "run.name",
            "empty; expected a name for the run directory runs/<name>");
  const bool plain = run.name.find('/') == std::string::npos && run.name != "." && run.name != "..";
  v.require(plain, "run.name",
            cat(quote(run.name),
                " is not a plain name; expected a name without '/' (it names the "
                "directory runs/<name>)"));
  v.range("run.seed", run.seed, 0, kMaxCount, "a seed >= 0");
}

void check_pattern(const Validator& v, const std::string& pattern) {
  const std::string valid = "valid symbols: " + layer_symbols_described();
  v.require(!pattern.empty(), "model.pattern",
            cat("empty; expected one symbol per layer, e.g. '*-*-'; ", valid));
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (layer_kind(pattern[i])) continue;
    v.fail("model.pattern", cat("unknown symbol ", quote(pattern.substr(i, 1)), " at position ",
                                i + 1, "; ", valid));
  }
}

// The scaling's own keys, where its kind reads them (kernels/rope_frequencies.h).
void check_rope_scaling(const Validator& v, const ModelConfig& m) {
  const RopeKind kind = m.rope_scaling;
  if (kind == RopeKind::Default) return;
  v.range("model.rope_factor", m.rope_factor, 1.0, HUGE_VAL,
          "a factor >= 1 (the new context over the original)");
  if (kind == RopeKind::Linear) return;
  v.range("model.rope_original_context", m.rope_original_context, 1, kMaxSize,
          cat("the original context in tokens (max_position_embeddings before scaling), which ",
              name_of(kind), " needs"));
  if (kind == RopeKind::Llama3)
    v.require(m.rope_low_freq_factor > 0 && m.rope_high_freq_factor > m.rope_low_freq_factor,
              "model.rope_high_freq_factor",
              cat(m.rope_high_freq_factor, " with model.rope_low_freq_factor ",
                  m.rope_low_freq_factor, "; expected 0 < low_freq_factor < high_freq_factor"));
  if (kind == RopeKind::Yarn) {
    v.require(m.rope_beta_slow > 0 && m.rope_beta_fast > m.rope_beta_slow, "model.rope_beta_fast",
              cat(m.rope_beta_fast, " with model.rope_beta_slow ", m.rope_beta_slow,
                  "; expected 0 < beta_slow < beta_fast (1 and 32 usual)"));
    v.range("model.rope_attention_factor", m.rope_attention_factor, 0.0, HUGE_VAL,
            "a factor > 0, or 0 for 0.1 ln(factor) + 1");
  }
}

// The model as written, before resolve() fills the zeros.
void check_model(const Validator& v, const ModelConfig& m) {
  check_pattern(v, m.pattern);
  v.range("model.vocab_size", m.vocab_size, 2, kMaxSize, "2 <= vocab_size <= 2147483647");
  v.range("model.d_model", m.d_model, 1, kMaxSize, "1 <= d_model <= 2147483647");
  v.range("model.heads", m.heads, 1, kMaxSize, "1 <= heads <= 2147483647");
  v.range("model.kv_heads", m.kv_heads, 0, kMaxSize, "a divisor of model.heads, or 0 for heads");
  v.range("model.head_dim", m.head_dim, 0, kMaxSize, "an even size, or 0 for d_model / heads");
  v.range("model.mlp_hidden", m.mlp_hidden, 0, kMaxSize,
          "a width >= 1, or 0 for 8/3 d_model rounded up to 64");
  // Below 1 the frequencies theta^(-2i/D) grow with i; a tiny base overflows them to inf.
  v.range("model.rope_theta", m.rope_theta, 1.0, HUGE_VAL, "a base >= 1 (10000 usual)");
  check_rope_scaling(v, m);
  v.range("model.norm_eps", m.norm_eps, kAboveZero, HUGE_VAL, "an epsilon > 0");
  v.range("model.init_std", m.init_std, kAboveZero, HUGE_VAL, "a standard deviation > 0");
  v.range("model.gla_heads", m.gla_heads, 0, kMaxSize, "a head count >= 1, or 0 for model.heads");
  v.range("model.gla_expand_k", m.gla_expand_k, kAboveZero, 64.0,
          "a factor > 0 (keys = d_model * expand_k)");
  v.range("model.gla_expand_v", m.gla_expand_v, kAboveZero, 64.0,
          "a factor > 0 (values = d_model * expand_v)");
  v.range("model.mamba_d_state", m.mamba_d_state, 1, kMaxSize,
          "a state size >= 1 (64 to 128 usual)");
  v.range("model.mamba_headdim", m.mamba_headdim, 1, kMaxSize, "a head size >= 1 (64 usual)");
  v.range("model.mamba_expand", m.mamba_expand, 1, 64,
          "a factor >= 1 (d_inner = expand * d_model)");
  v.range("model.mamba_num_heads", m.mamba_num_heads, 0, kMaxSize,
          "a head count >= 1, or 0 for mamba_expand x d_model / mamba_headdim");
  v.range("model.mamba_ngroups", m.mamba_ngroups, 1, kMaxSize, "a group count >= 1");
  v.range("model.mamba_conv_width", m.mamba_conv_width, 2, 64, "a width >= 2 (4 usual)");
  v.range("model.glr_chunk", m.glr_chunk, 16, 256, "16 <= glr_chunk <= 256 tokens");
  if (m.head_dim == 0) {
    v.require(m.d_model % m.heads == 0, "model.d_model",
              cat(m.d_model, " is not divisible by model.heads ", m.heads,
                  "; expected a multiple of heads, or an explicit model.head_dim"));
  }
}

// Every size the model computes (parameter counts, offsets, activation bytes) is an int64:
// a model whose parameters exceed 2^60 (by an upper bound in double: no machine holds them)
// is refused here, so that those products cannot overflow. Memory itself is checked when a
// run starts (the plan's estimate against the memory available).
// d_inner in double: the product of two sizes cannot overflow here.
double mamba_d_inner_bound(const ModelConfig& m) {
  return m.mamba_num_heads > 0
             ? static_cast<double>(m.mamba_num_heads) * static_cast<double>(m.mamba_headdim)
             : static_cast<double>(m.mamba_expand) * static_cast<double>(m.d_model);
}

double widest_width(const ModelConfig& m) {
  const double C = static_cast<double>(m.d_model), D = static_cast<double>(m.head_dim);
  const double d_inner = mamba_d_inner_bound(m);
  const double bc =
      2.0 * static_cast<double>(m.mamba_ngroups) * static_cast<double>(m.mamba_d_state);
  const double widths[] = {C,
                           static_cast<double>(m.heads) * D,
                           static_cast<double>(m.kv_heads) * D,
                           2.0 * static_cast<double>(m.mlp_hidden),
                           C * m.gla_expand_k,
                           C * m.gla_expand_v,
                           2.0 * d_inner + bc + d_inner / static_cast<double>(m.mamba_headdim),
                           d_inner + bc};
  double widest = 0;
  for (double w : widths) widest = std::max(widest, w);
  return widest;
}

void check_model_scale(const Validator& v, const ModelConfig& m) {
  const double C = static_cast<double>(m.d_model), widest = widest_width(m);
  const double layers = static_cast<double>(m.pattern.size()) + 2;
  const double bound =
      layers * 4.0 * widest * std::max(C, 64.0) + 2.0 * static_cast<double>(m.vocab_size) * C;
  v.require(bound < 0x1p60, "model.d_model",
            cat(m.d_model, " with these widths gives a model of up to ", format_double(bound),
                " parameters, beyond 2^60 (no machine holds it); expected a smaller model"));
}

void check_resolved_model(const Validator& v, const ModelConfig& m, bool head_dim_derived) {
  check_model_scale(v, m);  // first: the checks below multiply sizes in int64
  if (m.pattern.find('G') != std::string::npos) {
    const double key_dim = static_cast<double>(m.d_model) * m.gla_expand_k;
    const double value_dim = static_cast<double>(m.d_model) * m.gla_expand_v;
    v.require(key_dim == std::floor(key_dim) && static_cast<int64_t>(key_dim) % m.gla_heads == 0 &&
                  key_dim >= static_cast<double>(m.gla_heads),
              "model.gla_expand_k",
              cat("d_model ", m.d_model, " x gla_expand_k ", format_double(m.gla_expand_k), " = ",
                  format_double(key_dim), " keys do not split into ", m.gla_heads,
                  " GLA heads; expected a whole multiple of model.gla_heads"));
    v.require(value_dim == std::floor(value_dim) &&
                  static_cast<int64_t>(value_dim) % m.gla_heads == 0 &&
                  value_dim >= static_cast<double>(m.gla_heads),
              "model.gla_expand_v",
              cat("d_model ", m.d_model, " x gla_expand_v ", format_double(m.gla_expand_v), " = ",
                  format_double(value_dim), " values do not split into ", m.gla_heads,
                  " GLA heads; expected a whole multiple of model.gla_heads"));
  }
  if (m.pattern.find('M') != std::string::npos) {
    const int64_t d_inner = m.mamba_d_inner();
    v.require(m.mamba_num_heads > 0 || d_inner % m.mamba_headdim == 0, "model.mamba_headdim",
              cat(m.mamba_headdim, " does not divide d_inner = mamba_expand x d_model = ", d_inner,
                  "; expected a divisor of ", d_inner));
    v.require(m.mamba_heads() % m.mamba_ngroups == 0, "model.mamba_ngroups",
              cat(m.mamba_ngroups, " does not divide the ", m.mamba_heads(),
                  " Mamba-2 heads; expected a divisor of the head count"));
  }
  v.require(m.heads % m.kv_heads == 0, "model.kv_heads",
            cat(m.kv_heads, " does not divide model.heads ", m.heads,
                "; expected a divisor of heads (query heads share kv heads in equal groups)"));
  v.require(m.head_dim % 2 == 0, "model.head_dim",
            cat(m.head_dim, head_dim_derived ? " (d_model / heads)" : "",
                " is odd; expected an even size (RoPE rotates pairs of dimensions)"));
}

}  // namespace

std::optional<std::vector<double>> parse_odds(const std::string& text) {
  std::vector<double> odds;
  if (text.empty()) return odds;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t end = std::min(text.find(':', pos), text.size());
    const std::string item = text.substr(pos, end - pos);
    char* stop = nullptr;
    const double x = std::strtod(item.c_str(), &stop);
    if (item.empty() || *stop != '\0' || !(x > 0) || !std::isfinite(x)) return std::nullopt;
    odds.push_back(x);
    pos = end + 1;
  }
  return odds;
}

namespace {

void check_data(const Validator& v, const DataSection& data) {
  v.require(!data.corpus.empty(), "data.corpus",
            "missing; expected the path of an HDF5 corpus made by 'ringtrain data import'");
  v.require(parse_odds(data.curriculum_odds).has_value(), "data.curriculum_odds",
            cat(quote(data.curriculum_odds),
                " is not a list of odds; expected numbers > 0 separated "
                "by ':', one per bucket, shortest first (e.g. \"32:16:8:4:2:1\"), or empty"));
  v.range("data.cycles", data.cycles, 1, kMaxCount, "at least 1 cycle per epoch");
  v.range("data.seq_len", data.seq_len, 2, kMaxCount, "at least 2 tokens per sequence");
}

void check_parallel(const Validator& v, const ParallelSection& parallel) {
  v.range("parallel.sp", parallel.sp, 1, kMaxCount, "a power of two >= 1");
  v.require(std::has_single_bit(static_cast<uint64_t>(parallel.sp)), "parallel.sp",
            cat(parallel.sp, " is not a power of two; expected 1, 2, 4, 8, ..."));
  v.range("parallel.timeout_s", parallel.timeout_s, kAboveZero, HUGE_VAL,
          "seconds > 0 (how long a rank waits for a peer before the job is ended)");
}

void check_optim(const Validator& v, const OptimSection& optim) {
  v.range("optim.lr", optim.lr, kAboveZero, HUGE_VAL, "a learning rate > 0");
  v.range("optim.beta1", optim.beta1, 0.0, kBelowOne, "0 <= beta1 < 1");
  v.range("optim.beta2", optim.beta2, 0.0, kBelowOne, "0 <= beta2 < 1");
  v.range("optim.eps", optim.eps, kAboveZero, HUGE_VAL, "an epsilon > 0");
  v.range("optim.weight_decay", optim.weight_decay, 0.0, HUGE_VAL, "a decay >= 0 (0 disables it)");
  v.range("optim.grad_clip", optim.grad_clip, 0.0, HUGE_VAL, "a norm >= 0 (0 disables clipping)");
}

void check_schedule(const Validator& v, const ScheduleSection& schedule) {
  v.range("schedule.warmup_steps", schedule.warmup_steps, 0, kMaxCount, "a step count >= 0");
  v.range("schedule.min_lr_ratio", schedule.min_lr_ratio, 0.0, 1.0, "0 <= min_lr_ratio <= 1");
  v.range("schedule.decay_steps", schedule.decay_steps, 0, kMaxCount, "a step count >= 0");
}

void check_counts(const Validator& v, const Recipe& r) {
  v.range("train.steps", r.train.steps, 1, kMaxCount, "at least 1 step");
  v.range("train.micro_tokens", r.train.micro_tokens, 0, kMaxCount,
          "a multiple of data.seq_len, or 0 for the whole step at once");
  v.range("checkpoint.every", r.checkpoint.every, 0, kMaxCount,
          "a step count >= 0 (0 = only at the end)");
  v.range("checkpoint.keep_last", r.checkpoint.keep_last, 1, kMaxCount,
          "at least 1 checkpoint kept");
  v.range("log.every", r.log.every, 1, kMaxCount, "a step count >= 1");
  v.range("log.peak_gflops", r.log.peak_gflops, 0.0, HUGE_VAL,
          "GFLOP/s >= 0 (0 = measure at start)");
  v.range("eval.every", r.eval.every, 0, kMaxCount, "a step count >= 0 (0 = never)");
  v.range("eval.batches", r.eval.batches, 1, kMaxCount, "at least 1 batch");
  v.range("eval.seq_len", r.eval.seq_len, 0, kMaxCount, "a length >= 2, or 0 for data.seq_len");
}

// Rules that tie keys of different sections together; each names the key most likely wrong.
void check_relations(const Validator& v, const Recipe& r) {
  const int64_t seq_len = r.data.seq_len;
  const int64_t sp = r.parallel.sp;
  // The zigzag layout cuts each sequence into 2 * sp units, two per rank.
  v.require(sp <= seq_len / 2, "parallel.sp",
            cat(sp, " is too large for data.seq_len ", seq_len, "; expected at most seq_len / 2 = ",
                seq_len / 2, " (each rank holds two units of a sequence)"));
  v.require(
      seq_len % (2 * sp) == 0, "data.seq_len",
      cat(seq_len, " is not a multiple of 2 * parallel.sp = ", 2 * sp, "; expected a multiple of ",
          2 * sp, " (the zigzag layout cuts a sequence into 2 * sp units)"));

  if (r.model.conv_halo_rows() > 0)
    v.require(r.model.conv_halo_rows() <= seq_len / (2 * sp), "model.mamba_conv_width",
              cat(r.model.mamba_conv_width, " needs ", r.model.mamba_conv_width - 1,
                  " rows before each zigzag unit, more than the ", seq_len / (2 * sp),
                  " tokens of a unit (data.seq_len / (2 * parallel.sp)); expected a narrower "
                  "conv or longer sequences"));

  const int64_t tokens = r.train.tokens_per_step;
  v.require(
      tokens >= seq_len, "train.tokens_per_step",
      cat(tokens, " is less than data.seq_len ", seq_len, "; expected at least one sequence"));
  v.require(tokens % seq_len == 0, "train.tokens_per_step",
            cat(tokens, " is not a multiple of data.seq_len ", seq_len,
                "; expected a whole number of sequences"));
  const int64_t micro = r.train.micro_tokens;
  v.require(micro % seq_len == 0, "train.micro_tokens",
            cat(micro, " is not a multiple of data.seq_len ", seq_len,
                "; expected a whole number of sequences, or 0"));

  // tokens_seen and the data schedule's step x sequences arithmetic stay inside int64.
  v.require(
      static_cast<double>(r.train.steps) * static_cast<double>(tokens) < 0x1p62, "train.steps",
      cat(r.train.steps, " steps of ", tokens, " tokens exceed 2^62 tokens; expected fewer steps"));
  v.require(r.schedule.warmup_steps <= r.train.steps, "schedule.warmup_steps",
            cat(r.schedule.warmup_steps, " is more than train.steps ", r.train.steps,
                "; expected at most train.steps (lower both: --set schedule.warmup_steps=",
                r.train.steps, ")"));
  if (r.schedule.kind == ScheduleKind::Wsd) {
    const int64_t stable_room = r.train.steps - r.schedule.warmup_steps;
    v.require(
        r.schedule.decay_steps >= 1 && r.schedule.decay_steps <= stable_room,
        "schedule.decay_steps",
        cat(r.schedule.decay_steps, " does not fit the wsd schedule; expected 1 to train.steps - ",
            "schedule.warmup_steps = ", stable_room));
  }
  const int64_t val_len = r.eval.seq_len ? r.eval.seq_len : seq_len;
  v.require(
      val_len >= 2 && val_len % (2 * sp) == 0 && r.train.tokens_per_step % val_len == 0,
      "eval.seq_len",
      cat(val_len, " does not fit; expected a length >= 2 that is a multiple of 2 * parallel.sp = ",
          2 * sp, " and divides train.tokens_per_step ", r.train.tokens_per_step));
  v.require(r.eval.every == 0 || !r.data.val_corpus.empty(), "data.val_corpus",
            cat("missing while eval.every is ", r.eval.every,
                "; expected the path of a held-out HDF5 corpus, or eval.every: 0"));
}

// The activations of a step, by an upper bound per token (every layer's widest tensor many
// times over, and the recurrent states GLA and Mamba-2 keep per chunk), stay below 2^58
// floats: the plan's byte counts are int64 (see check_model_scale).
void check_activation_scale(const Validator& v, const Recipe& r) {
  const ModelConfig& m = r.model;
  const double C = static_cast<double>(m.d_model);
  double state = 0;
  if (m.pattern.find('G') != std::string::npos)
    state =
        std::max(state, C * m.gla_expand_k * C * m.gla_expand_v / static_cast<double>(m.gla_heads));
  if (m.pattern.find('M') != std::string::npos)
    state = std::max(state, mamba_d_inner_bound(m) * static_cast<double>(m.mamba_d_state));
  const double per_token = (static_cast<double>(m.pattern.size()) + 2) * 64.0 *
                           (widest_width(m) + static_cast<double>(m.vocab_size) / 16 + state / 16);
  const double bound = static_cast<double>(r.train.tokens_per_step) * per_token;
  v.require(bound < 0x1p58, "train.tokens_per_step",
            cat(r.train.tokens_per_step, " tokens of this model need up to ", format_double(bound),
                " floats of activations per step, beyond 2^58 (no machine holds them); expected "
                "fewer tokens per step or a smaller model"));
}

void validate_and_resolve(Recipe& recipe, const Sources& sources) {
  const Validator v(sources);
  check_run(v, recipe.run);
  check_model(v, recipe.model);
  check_data(v, recipe.data);
  check_parallel(v, recipe.parallel);
  check_optim(v, recipe.optim);
  check_schedule(v, recipe.schedule);
  check_counts(v, recipe);
  check_relations(v, recipe);

  const bool head_dim_derived = recipe.model.head_dim == 0;
  recipe.model.resolve();
  check_resolved_model(v, recipe.model, head_dim_derived);
  check_activation_scale(v, recipe);
  if (recipe.run.out_dir.empty()) recipe.run.out_dir = "runs/" + recipe.run.name;
  if (recipe.run.precision == Precision::Auto)
    recipe.run.precision = recipe.run.device == Device::CUDA ? Precision::BF16 : Precision::F32;
}

// ---- Files and emission ----------------------------------------------------------------------

std::string read_file(const std::string& path) {
  struct Closer {
    void operator()(std::FILE* file) const { std::fclose(file); }
  };
  std::unique_ptr<std::FILE, Closer> file(std::fopen(path.c_str(), "rb"));
  if (!file) throw UserError(cat(path, ": cannot read recipe: ", std::strerror(errno)));
  std::string text;
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) text.append(buffer, n);
  // A directory opens fine and fails on the first read (EISDIR).
  if (std::ferror(file.get()))
    throw UserError(cat(path, ": cannot read recipe: ", std::strerror(errno)));
  return text;
}

std::string format_value(const FieldRef& field) {
  struct Formatter {
    std::string operator()(const int64_t* v) const { return show(*v); }
    std::string operator()(const double* v) const { return show(*v); }
    std::string operator()(const bool* v) const { return *v ? "true" : "false"; }
    std::string operator()(const std::string* v) const { return yaml_string(*v); }
    std::string operator()(const EnumField& v) const {
      return yaml_string(v.names[v.index(v.field)]);
    }
  };
  return std::visit(Formatter{}, field);
}

}  // namespace

Recipe parse_recipe(const std::string& yaml_text, const std::string& origin,
                    const std::vector<std::string>& overrides) {
  Sources sources{origin, {}};
  YAML::Node root = load_document(yaml_text, origin);
  check_names(root, origin);
  for (const std::string& item : overrides) apply_override(root, item, sources);
  Recipe recipe = read_recipe(root, sources);
  validate_and_resolve(recipe, sources);
  recipe.origin = origin;
  recipe.overridden.assign(sources.overridden.begin(), sources.overridden.end());
  return recipe;
}

std::string Recipe::where(std::string_view key) const {
  for (const std::string& k : overridden)
    if (k == key) return "--set";
  return origin;
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_recipe(read_file(path), path, overrides);
}

std::string recipe_to_yaml(const Recipe& recipe) {
  Recipe copy = recipe;  // the table's accessors take a mutable recipe; this only reads
  std::string out;
  std::string_view section;
  for (const KeyDef& key : keys()) {
    if (key.section != section) {
      section = key.section;
      out += cat(section, ":\n");
    }
    out += cat("  ", key.name, ": ", format_value(key.field(copy)), "\n");
  }
  return out;
}

std::vector<std::string> recipe_keys() {
  std::vector<std::string> paths;
  for (const KeyDef& key : keys()) paths.push_back(key.path());
  return paths;
}

}  // namespace rt
