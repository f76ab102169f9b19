// Errors, split by whose fault they are.
//   UserError      bad input (recipe, corpus, checkpoint, command line): one line, exit code 2.
//   RunError       the run cannot go on although the input was fine (diverged, I/O, peer died):
//                  one line and the exit code it carries.
//   internal bugs  RT_CHECK: "file:line: check failed ..." and exit code 1.
#pragma once

#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>

namespace rt {

inline constexpr int kExitUserError = 2;
inline constexpr int kExitDiverged = 3;
inline constexpr int kExitCommFailure = 4;

struct UserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct RunError : std::runtime_error {
  RunError(const std::string& what, int code) : std::runtime_error(what), exit_code(code) {}
  int exit_code;
};

struct InternalError : std::logic_error {
  using std::logic_error::logic_error;
};

// Concatenates anything streamable: cat("key ", name, " = ", 3).
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream s;
  (s << ... << args);
  return s.str();
}

// "a, b or c": the valid names of something, for messages.
template <class Names>
std::string choices_of(const Names& names) {
  std::string out;
  size_t i = 0;
  for (const auto& name : names) {
    if (i) out += i + 1 == std::size(names) ? " or " : ", ";
    out += name;
    ++i;
  }
  return out;
}

[[noreturn]] void fail_internal(const char* file, int line, const std::string& message);

}  // namespace rt

#define RT_CHECK(cond, ...)                                                      \
  do {                                                                           \
    if (!(cond))                                                                 \
      ::rt::fail_internal(__FILE__, __LINE__,                                    \
                          ::rt::cat("check failed: " #cond " ", ##__VA_ARGS__)); \
  } while (0)
