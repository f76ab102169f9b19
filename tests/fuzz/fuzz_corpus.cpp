// Corpus HDF5 files: a valid corpus with buckets, edited by the bytes (fuzz_input.h's script:
// datasets of other types, shapes and values, extents that lie, attributes of any kind), then
// read as the trainer does (open, offsets, buckets, token ranges) and decomposed. A first byte
// 'R' takes the rest as the file itself (raw bytes through libhdf5's own parser).
#include "data/corpus.h"
#include "data/decompose.h"
#include "data/h5.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using namespace rt;

// A corpus of 52 documents (1 to 110 tokens) with buckets 2^2..2^6, chunked small so that the
// file stays a few KB (import's 2^20-token chunks would make it 2 MB).
const std::vector<char>& base_corpus() {
  static const std::vector<char> bytes = [] {
    const std::string out = fuzz::temp_path("base.h5");
    std::vector<uint16_t> tokens;
    std::vector<uint64_t> offsets{0};
    for (int d = 0; d < 52; ++d) {
      for (int i = 0; i < (d * 37) % 110; ++i)
        tokens.push_back(static_cast<uint16_t>('a' + (d + i) % 26));
      tokens.push_back(256);
      offsets.push_back(tokens.size());
    }
    {
      h5::File f = h5::File::create(out);
      f.create_appendable<uint16_t>("/tokens", 256);
      f.append("/tokens", tokens.data(), tokens.size());
      f.write_vector("/doc_offsets", offsets);
      f.set_attr("/", "format", std::string(kCorpusFormat));
      f.set_attr("/", "version", kCorpusVersion);
      f.set_attr("/", "vocab_size", int64_t(258));
      f.set_attr("/", "eos_id", int64_t(256));
      f.set_attr("/", "tokenizer", std::string("bytes"));
      f.set_attr("/", "fingerprint", std::string("fnv1a64:0"));
    }
    write_buckets(out, decompose_documents(offsets, 2, 6));
    std::vector<char> b = fuzz::read_file(out);
    std::remove(out.c_str());
    return b;
  }();
  return bytes;
}

const fuzz::Names kNames = {
    {"/tokens", "/doc_offsets", "/buckets/2/starts", "/buckets/3/starts", "/buckets/4/starts",
     "/buckets/5/starts", "/buckets/6/starts"},
    {"/", "/buckets", "/buckets/2", "/buckets/6"},
    {"format", "version", "vocab_size", "eos_id", "tokenizer", "fingerprint", "min_log2",
     "max_log2", "dropped_pairs", "total_pairs"}};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Bytes b(data, size);
  const std::string path = fuzz::temp_path("corpus.h5");
  fuzz::make_input_file(path, data, size, b, base_corpus(), kNames);
  fuzz::expect_only_user_errors("fuzz_corpus", [&] {
    const Corpus corpus = Corpus::open(path, "data.corpus");
    const int64_t n = corpus.info().num_tokens;
    std::vector<int32_t> tokens(64);
    for (int64_t start : {int64_t(0), n / 2, n - 2}) {
      const int64_t count = std::min<int64_t>(64, n - start);
      if (start >= 0 && count > 0) corpus.read_tokens(start, count, tokens.data());
    }
    const std::vector<uint64_t> offsets = corpus.doc_offsets();
    decompose_documents(offsets, 2, 6);
    const Buckets buckets = read_buckets(path, "data.corpus", n);
    // What the trainer reads from them: every sequence inside the corpus.
    std::vector<int32_t> seq;
    for (int k = buckets.min_log2; k <= buckets.max_log2 && k <= 12; ++k)
      for (uint64_t s : buckets.of(k)) {
        seq.resize((size_t(1) << k) + 1);
        corpus.read_tokens(static_cast<int64_t>(s), static_cast<int64_t>(seq.size()), seq.data());
        break;
      }
  });
  std::remove(path.c_str());
  return 0;
}
