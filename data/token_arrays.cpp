// import_token_arrays (data/corpus.h): token ids other tools wrote, as NumPy .npy or the .bin
// files of llm.c and nanoGPT, into a corpus.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>

#include "core/check.h"
#include "data/corpus.h"

namespace rt {
namespace {

constexpr int32_t kLlmcMagic = 20240520;

// Where a file's tokens are: byte offset, count, and how they are stored.
struct TokenArray {
  uint64_t offset = 0;
  int64_t count = 0;
  int bytes = 2;
  bool is_signed = false;
};

TokenArray npy_layout(std::ifstream& in, const std::string& path, uint64_t size) {
  auto bad = [&](const std::string& what) {
    return UserError(cat(path, ": not a NumPy token array: ", what,
                         "; expected a 1-D integer array (np.save of token ids)"));
  };
  char magic[8];
  in.read(magic, 8);
  if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw bad("no .npy magic");
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_len = 0;
  unsigned char len[4] = {0, 0, 0, 0};
  in.read(reinterpret_cast<char*>(len), major == 1 ? 2 : 4);
  for (int i = (major == 1 ? 1 : 3); i >= 0; --i) header_len = header_len << 8 | len[i];
  const uint64_t data_start = (major == 1 ? 10 : 12) + static_cast<uint64_t>(header_len);
  if (data_start > size) throw bad("the header runs past the end of the file");
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex(R"('descr'\s*:\s*'([<|=])([iu])([1248])')")))
    throw bad(cat("dtype ", header.substr(0, 60), " is not a little-endian integer type"));
  TokenArray a;
  a.is_signed = m[2] == "i";
  a.bytes = std::stoi(m[3]);
  if (a.bytes == 1 && a.is_signed) throw bad("int8 cannot hold token ids");
  if (std::regex_search(header, std::regex(R"('fortran_order'\s*:\s*True)")))
    throw bad("Fortran order");
  if (!std::regex_search(header, m, std::regex(R"('shape'\s*:\s*\(\s*(\d+)\s*,?\s*\))")))
    throw bad("its shape is not one-dimensional");
  a.count = std::stoll(m[1]);
  a.offset = data_start;
  if (data_start + static_cast<uint64_t>(a.count) * a.bytes > size)
    throw bad(cat("shape (", a.count, ",) needs more bytes than the file holds"));
  return a;
}

TokenArray bin_layout(std::ifstream& in, const std::string& path, uint64_t size,
                      int raw_dtype_bytes) {
  int32_t header[256] = {};
  in.read(reinterpret_cast<char*>(header), sizeof header);
  if (in.gcount() == sizeof header && header[0] == kLlmcMagic) {
    if (header[1] != 1 && header[1] != 2)
      throw UserError(cat(path, ": llm.c token file version ", header[1],
                          " is not supported; expected 1 (u16) or 2 (u32)"));
    TokenArray a;
    a.bytes = header[1] == 1 ? 2 : 4;
    a.count = header[2];
    a.offset = sizeof header;
    if (a.count < 0 || a.offset + static_cast<uint64_t>(a.count) * a.bytes > size)
      throw UserError(cat(path, ": the llm.c header promises ", header[2],
                          " tokens, more than the file holds (truncated?)"));
    return a;
  }
  if (raw_dtype_bytes == 0)
    throw UserError(cat(path, ": no llm.c header (magic ", kLlmcMagic,
                        "); for a raw token file give --token-dtype u16 or u32"));
  if (size % raw_dtype_bytes != 0)
    throw UserError(cat(path, ": ", size, " bytes is not a whole number of ",
                        raw_dtype_bytes == 2 ? "u16" : "u32", " tokens"));
  return {0, static_cast<int64_t>(size / raw_dtype_bytes), raw_dtype_bytes, false};
}

int64_t token_at(const unsigned char* p, const TokenArray& a) {
  switch (a.bytes) {
    case 1: return p[0];
    case 2: {
      uint16_t u;
      std::memcpy(&u, p, 2);
      return a.is_signed ? static_cast<int16_t>(u) : u;
    }
    case 4: {
      uint32_t u;
      std::memcpy(&u, p, 4);
      return a.is_signed ? static_cast<int32_t>(u) : static_cast<int64_t>(u);
    }
    default: {
      uint64_t u;
      std::memcpy(&u, p, 8);
      return a.is_signed || u < (uint64_t(1) << 62) ? static_cast<int64_t>(u) : INT64_MAX;
    }
  }
}

}  // namespace

ImportStats import_token_arrays(const std::vector<std::string>& files, const std::string& out_path,
                                const TokenizerInfo& tokenizer, int raw_dtype_bytes) {
  if (files.empty())
    throw UserError("data import: no input files; expected FILE... after the options");
  CorpusWriter writer(out_path, tokenizer);
  std::vector<int32_t> doc;
  int64_t empty = 0;
  for (const std::string& path : files) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw UserError(cat(path, ": cannot read input file: ", std::strerror(errno)));
    const uint64_t size = static_cast<uint64_t>(in.tellg());
    in.seekg(0);
    const bool npy = path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0;
    const TokenArray a =
        npy ? npy_layout(in, path, size) : bin_layout(in, path, size, raw_dtype_bytes);
    in.clear();  // a file shorter than llm.c's header failed the read that looked for it
    in.seekg(static_cast<std::streamoff>(a.offset));
    constexpr int64_t kBlock = 1 << 20;
    std::vector<unsigned char> buf(static_cast<size_t>(kBlock * a.bytes));
    for (int64_t i = 0; i < a.count; i += kBlock) {
      const int64_t n = std::min(kBlock, a.count - i);
      in.read(reinterpret_cast<char*>(buf.data()), n * a.bytes);
      if (in.gcount() != n * a.bytes) throw UserError(cat(path, ": ends before its tokens do"));
      for (int64_t k = 0; k < n; ++k) {
        const int64_t t = token_at(buf.data() + k * a.bytes, a);
        if (t < 0 || t >= tokenizer.vocab_size)
          throw UserError(cat(path, ": token ", t, " at index ", i + k,
                              " is outside the vocabulary [0, ", tokenizer.vocab_size,
                              "); expected --vocab-size above every id"));
        doc.push_back(static_cast<int32_t>(t));
        if (t != tokenizer.eos_id) continue;
        if (doc.size() == 1)
          ++empty;
        else
          writer.add(doc);
        doc.clear();
      }
    }
  }
  if (!doc.empty()) {  // the last document had no <eos>
    doc.push_back(static_cast<int32_t>(tokenizer.eos_id));
    writer.add(doc);
  }
  if (writer.documents() == 0)
    throw UserError("data import: the token files hold no non-empty document");
  ImportStats stats = writer.finish();
  stats.empty_skipped = empty;
  return stats;
}

}  // namespace rt
