// Runs the real ringtrain binary (RINGTRAIN_BINARY, set by CMake) as a process and captures
// its exit code and stderr: the tests of the exit-code promise (README: one line on stderr,
// 2 for bad input, 3 for non-finite values).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/testing.h"

namespace rt::testing {

struct Outcome {
  int code = -1;
  std::string err;  // stderr
  std::string out;  // stdout
  int err_lines() const {
    int n = 0;
    for (char c : err) n += c == '\n';
    return n;
  }
};

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline Outcome run_ringtrain(const std::vector<std::string>& args) {
  static int counter = 0;
  const std::filesystem::path base =
      std::filesystem::temp_directory_path() /
      ("ringtrain-proc-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::string command = shell_quote(RINGTRAIN_BINARY);
  // append(), not " " + ...: GCC 12 warns (-Wrestrict, a false positive) on that operator+.
  for (const std::string& a : args) command.append(" ").append(shell_quote(a));
  command.append(" >").append(shell_quote(base.string() + ".out"));
  command.append(" 2>").append(shell_quote(base.string() + ".err"));
  Outcome o;
  o.code = run_command(command);
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    std::filesystem::remove(p);
    return s.str();
  };
  o.out = slurp(base.string() + ".out");
  o.err = slurp(base.string() + ".err");
  return o;
}

}  // namespace rt::testing

// The process exited with `code_` and printed exactly one line on stderr containing `text_`.
#define EXPECT_ONE_LINE_ERROR(outcome_, code_, text_)      \
  do {                                                     \
    const ::rt::testing::Outcome& o_ = (outcome_);         \
    EXPECT_EQ(o_.code, (code_)) << o_.err;                 \
    EXPECT_EQ(o_.err_lines(), 1) << o_.err;                \
    EXPECT_NE(o_.err.find(text_), std::string::npos)       \
        << "stderr lacks '" << (text_) << "': " << o_.err; \
  } while (0)
