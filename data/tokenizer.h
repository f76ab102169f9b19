// Byte-level tokenizer: token = byte value (0..255), plus specials. Every string is
// representable and decoding is exact, so no vocabulary file exists to get lost.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
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

// What a corpus records of the tokenizer that made it (its attributes tokenizer, vocab_size,
// eos_id).
struct TokenizerInfo {
  std::string name = ByteTokenizer::kName;  // "bytes", "sentencepiece:FILE", "pretokenized"
  int64_t vocab_size = ByteTokenizer::kVocabSize;
  int64_t eos_id = ByteTokenizer::kEos;
};

// Text to token ids for `data import`: the byte tokenizer, or a SentencePiece model read with
// libsentencepiece (the library the model was trained with: ids equal the Python package's).
class TextTokenizer {
 public:
  static std::unique_ptr<TextTokenizer> bytes();
  // UserError naming the file when it is not a SentencePiece model, or has no <eos> piece.
  static std::unique_ptr<TextTokenizer> sentencepiece(const std::string& model_path);
  virtual ~TextTokenizer() = default;
  virtual void encode(std::string_view text, std::vector<int32_t>& out) const = 0;  // appends
  // ids (overwritten) and, for each, the bytes [begin, end) of text it stands for (a piece that
  // stands for no input byte, SentencePiece's leading "▁", has begin == end).
  virtual void encode_spans(std::string_view text, std::vector<int32_t>& ids,
                            std::vector<std::pair<uint32_t, uint32_t>>& spans) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  const TokenizerInfo& info() const { return info_; }

 protected:
  TokenizerInfo info_;
};

}  // namespace rt
