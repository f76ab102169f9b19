// Byte-level tokenizer: token = byte value (0..255), plus specials. Every string is
// representable and decoding is exact, so no vocabulary file exists to get lost.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rt {

struct ByteTokenizer {
  static constexpr int32_t kEos = 256;  // ends every document in a corpus
  static constexpr int32_t kPad = 257;
  static constexpr int32_t kVocabSize = 258;
  static constexpr const char* kName = "bytes";

  static void encode(std::string_view text, std::vector<int32_t>& out);  // appends
  // Bytes as they were; specials as "<eos>" / "<pad>".
  static std::string decode(const std::vector<int32_t>& tokens);
};

}  // namespace rt
