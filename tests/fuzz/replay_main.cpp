// The harnesses without libFuzzer: replays each file (or each file of each directory) named on
// the command line through LLVMFuzzerTestOneInput, as CI's fuzz_replay_* tests do with the
// seed corpus and the regression inputs. A crash or an abort fails the test.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  int replayed = 0;
  auto replay = [&](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++replayed;
  };
  for (int i = 1; i < argc; ++i) {
    const fs::path p = argv[i];
    if (fs::is_directory(p)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const fs::path& f : files) replay(f);
    } else if (fs::exists(p)) {
      replay(p);
    }
  }
  std::printf("%s: %d inputs replayed without a crash\n", argc > 0 ? argv[0] : "replay", replayed);
  return replayed > 0 ? 0 : 1;
}
