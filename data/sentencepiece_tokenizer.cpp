// TextTokenizer::sentencepiece: a SentencePiece model through libsentencepiece (Debian's
// libsentencepiece-dev).
#include <sentencepiece_processor.h>

#include <filesystem>

#include "core/check.h"
#include "data/tokenizer.h"

namespace rt {
namespace {

class SentencePiece final : public TextTokenizer {
 public:
  explicit SentencePiece(const std::string& path) {
    const auto status = processor_.Load(path);
    if (!status.ok())
      throw UserError(cat("--tokenizer ", path, ": not a SentencePiece model (", status.ToString(),
                          "); expected the tokenizer.model file of the pretrained model"));
    info_.name = "sentencepiece:" + std::filesystem::path(path).filename().string();
    info_.vocab_size = processor_.GetPieceSize();
    info_.eos_id = processor_.eos_id();
    if (info_.eos_id < 0 || info_.eos_id >= info_.vocab_size)
      throw UserError(cat("--tokenizer ", path, ": the model has no end-of-sequence piece (eos_id ",
                          info_.eos_id, "); every document of a corpus ends with one"));
  }
  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    std::vector<int> ids;
    const auto status = processor_.Encode(text, &ids);
    if (!status.ok()) throw UserError(cat("SentencePiece could not encode: ", status.ToString()));
    out.insert(out.end(), ids.begin(), ids.end());
  }
  void encode_spans(std::string_view text, std::vector<int32_t>& ids,
                    std::vector<std::pair<uint32_t, uint32_t>>& spans) const override {
    const sentencepiece::ImmutableSentencePieceText pieces =
        processor_.EncodeAsImmutableProto(text);
    ids.clear();
    spans.clear();
    for (size_t i = 0; i < pieces.pieces_size(); ++i) {
      const auto piece = pieces.pieces(static_cast<int>(i));
      ids.push_back(static_cast<int32_t>(piece.id()));
      spans.emplace_back(piece.begin(), piece.end());
    }
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string text;
    const std::vector<int> v(ids.begin(), ids.end());
    processor_.Decode(v, &text);
    return text;
  }

 private:
  sentencepiece::SentencePieceProcessor processor_;
};

}  // namespace

std::unique_ptr<TextTokenizer> TextTokenizer::sentencepiece(const std::string& model_path) {
  return std::make_unique<SentencePiece>(model_path);
}

}  // namespace rt
