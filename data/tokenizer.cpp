#include "data/tokenizer.h"

namespace rt {

void ByteTokenizer::encode(std::string_view text, std::vector<int32_t>& out) {
  out.reserve(out.size() + text.size());
  for (unsigned char c : text) out.push_back(c);
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& tokens) {
  std::string s;
  for (int32_t t : tokens) {
    if (t >= 0 && t < 256)
      s.push_back(static_cast<char>(t));
    else if (t == kEos)
      s += "<eos>";
    else if (t == kPad)
      s += "<pad>";
    else
      s.append("<")
          .append(std::to_string(t))
          .append(">");  // not "<" + ...: GCC 12 -Wrestrict false positive
  }
  return s;
}

}  // namespace rt

namespace rt {
namespace {

class Bytes final : public TextTokenizer {
 public:
  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    ByteTokenizer::encode(text, out);
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    return ByteTokenizer::decode(ids);
  }
  void encode_spans(std::string_view text, std::vector<int32_t>& ids,
                    std::vector<std::pair<uint32_t, uint32_t>>& spans) const override {
    ids.clear();
    spans.clear();
    ByteTokenizer::encode(text, ids);
    for (uint32_t i = 0; i < ids.size(); ++i) spans.emplace_back(i, i + 1);
  }
};

}  // namespace

std::unique_ptr<TextTokenizer> TextTokenizer::bytes() { return std::make_unique<Bytes>(); }

}  // namespace rt
