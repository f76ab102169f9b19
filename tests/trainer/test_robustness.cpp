// The exit-code promise on the input paths an outside tester broke (issue 12), through the real
// binary: every bad input is one line on stderr and exit code 2 (3 for non-finite values), and
// no checkpoint ever holds a non-finite value.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "data/h5.h"
#include "tests/trainer/process.h"

namespace rt {
namespace {

namespace fs = std::filesystem;
using testing::run_ringtrain;

class Robustness : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ringtrain-robust-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(path(name), std::ios::binary) << content;
    return path(name);
  }
  fs::path dir_;
};

TEST_F(Robustness, JsonlNestedAMillionLevelsIsOneLine) {
  const std::string deep = write("deep.jsonl", "{\"text\": \"ok\"}\n{\"a\": " + std::string(1000000, '[') + "\n");
  EXPECT_ONE_LINE_ERROR(run_ringtrain({"data", "import", "--out", path("c.h5"), deep}), 2,
                        "deep.jsonl:2: nested deeper than 256 levels at column 262");
  EXPECT_FALSE(fs::exists(path("c.h5")));
  EXPECT_FALSE(fs::exists(path("c.h5.tmp")));
}

}  // namespace
}  // namespace rt
