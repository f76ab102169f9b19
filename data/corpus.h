// The HDF5 corpus (docs/DESIGN.md §7):
//   /tokens        u16 or u32 [N]   chunked 2^20; every document ends with <eos>
//   /doc_offsets   u64 [D+1]        document d is tokens[off[d] : off[d+1]]
//   attributes     format="ringtrain-corpus", version=1, vocab_size, eos_id, tokenizer,
//                  fingerprint ("fnv1a64:<16 hex>", over the tokens as u32 then the offsets)
// Dataset decomposition adds /buckets/<k>/starts later; import never writes them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/hash.h"
#include "data/tokenizer.h"

namespace rt {

inline constexpr const char* kCorpusFormat = "ringtrain-corpus";
inline constexpr int64_t kCorpusVersion = 1;

struct CorpusInfo {
  std::string path;
  int64_t num_tokens = 0;
  int64_t num_docs = 0;
  int64_t vocab_size = 0;
  int64_t eos_id = 0;
  std::string tokenizer;
  std::string fingerprint;
  int token_bytes = 2;  // u16 or u32 on disk
};

// A validated, open corpus. Reads are by token range; nothing is loaded up front but the
// attributes and the document count.
class Corpus {
 public:
  // Opens and validates `path`. Every problem is a UserError naming `key` (the recipe key or
  // command-line argument the path came from), the file and what is wrong.
  static Corpus open(const std::string& path, const std::string& key);
  Corpus() = default;  // not open; assign from open()
  ~Corpus();
  Corpus(Corpus&&) noexcept;
  Corpus& operator=(Corpus&&) noexcept;

  const CorpusInfo& info() const { return info_; }
  // Tokens [start, start + count) as i32; tokens outside the vocabulary are a UserError.
  void read_tokens(int64_t start, int64_t count, int32_t* out) const;
  std::vector<uint64_t> doc_offsets() const;

 private:
  struct Impl;
  Impl* impl_ = nullptr;
  CorpusInfo info_;
};

enum class ImportFormat { Auto, Text, Jsonl };

struct ImportStats {
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t empty_skipped = 0;
  std::string fingerprint;
};

// Tokenises the files (text: a document per file; JSONL: a document per line, its "text"
// field) with `tokenizer`, ends each document with its <eos>, and writes the corpus to out_path
// (via a temporary file renamed at the end). Bad input is a UserError naming file and line.
ImportStats import_corpus(const std::vector<std::string>& files, const std::string& out_path,
                          ImportFormat format, const TextTokenizer& tokenizer);

// Imports token ids other tools wrote, one flat array per file: NumPy .npy (any integer type),
// llm.c's .bin (a 256 x i32 header: magic 20240520, version 1 = u16, 2 = u32 tokens), or raw
// .bin of raw_dtype_bytes (2 or 4; nanoGPT's are u16). Documents end at each tokenizer.eos_id
// (a document of only <eos> is dropped; a last one without is ended with one). A token outside
// [0, vocab_size) is a UserError naming the file and its index.
ImportStats import_token_arrays(const std::vector<std::string>& files, const std::string& out_path,
                                const TokenizerInfo& tokenizer, int raw_dtype_bytes);

// Writes a corpus document by document: to out_path.tmp, renamed to out_path by finish() (a
// writer destroyed unfinished removes its temporary file). Tokens are ids of `tokenizer`,
// stored as u16, or u32 for a vocabulary over 2^16.
class CorpusWriter {
 public:
  explicit CorpusWriter(const std::string& out_path, const TokenizerInfo& tokenizer = {});
  ~CorpusWriter();
  CorpusWriter(const CorpusWriter&) = delete;
  CorpusWriter& operator=(const CorpusWriter&) = delete;
  void add(const std::vector<int32_t>& document);  // the caller ends it with <eos>
  int64_t documents() const;                       // added so far
  ImportStats finish();                            // UserError when no document was added

 private:
  struct Impl;
  Impl* impl_;
};

// Incremental FNV-1a (64 bit), the corpus fingerprint.
class Fingerprint {
 public:
  void add_bytes(const void* data, size_t n);
  std::string str() const;  // "fnv1a64:0123456789abcdef"

 private:
  uint64_t h_ = kFnv1aSeed;
};

}  // namespace rt
