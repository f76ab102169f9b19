// Tokenizer, JSONL reading, corpus import/validation and the concat-and-chunk sampler, on
// real files in a temporary directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/check.h"
#include "data/corpus.h"
#include "data/h5.h"
#include "data/jsonl.h"
#include "data/loader.h"
#include "data/tokenizer.h"

#include <unistd.h>
#include <functional>

namespace rt {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("ringtrain-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name, const std::string& content = "") const {
    std::string p = (path_ / name).string();
    if (!content.empty()) std::ofstream(p, std::ios::binary) << content;
    return p;
  }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

std::string user_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "<no UserError>";
}

TEST(Tokenizer, RoundTripsBytes) {
  std::string text = "h\xC3\xA9llo\n\t\x01\xFF";
  std::vector<int32_t> toks;
  ByteTokenizer::encode(text, toks);
  ASSERT_EQ(toks.size(), text.size());
  EXPECT_EQ(toks[1], 0xC3);
  EXPECT_EQ(ByteTokenizer::decode(toks), text);
  toks.push_back(ByteTokenizer::kEos);
  EXPECT_EQ(ByteTokenizer::decode(toks), text + "<eos>");
}

TEST(Jsonl, DecodesTheTextField) {
  std::string err;
  EXPECT_EQ(*jsonl_text_field(
                R"({"id": 3, "text": "a\"b\\c\nd", "meta": {"x": [1, 2.5e3, null, true]}})", err),
            "a\"b\\c\nd");
  EXPECT_EQ(*jsonl_text_field(R"({"text":"caf\u00e9 \ud83d\ude00"})", err),
            "caf\xC3\xA9 \xF0\x9F\x98\x80");
  EXPECT_EQ(*jsonl_text_field(R"(  {"text": ""}  )", err), "");
}

TEST(Jsonl, RejectsWhatIsNotAnObjectWithText) {
  std::string err;
  EXPECT_FALSE(jsonl_text_field(R"({"txt": "a"})", err));
  EXPECT_EQ(err, "no \"text\" key");
  EXPECT_FALSE(jsonl_text_field(R"({"text": 5})", err));
  EXPECT_EQ(err, "\"text\" is a number, expected a string");
  EXPECT_FALSE(jsonl_text_field(R"({"text": "a")", err));
  EXPECT_NE(err.find("expected '}'"), std::string::npos) << err;
  EXPECT_FALSE(jsonl_text_field(R"({"text": "a"} x)", err));
  EXPECT_FALSE(jsonl_text_field(R"(["text"])", err));
  EXPECT_FALSE(jsonl_text_field(R"({"text": "a\)", err));
}

TEST(Jsonl, NestingIsCutOffWithTheColumn) {
  std::string err;
  // 256 levels inside the object are fine, 257 are not; a million is the same one error.
  const std::string ok =
      "{\"a\": " + std::string(255, '[') + std::string(255, ']') + ", \"text\": \"t\"}";
  EXPECT_EQ(jsonl_text_field(ok, err).value_or("<none>"), "t") << err;
  const std::string deep = "{\"a\": " + std::string(256, '[');
  EXPECT_FALSE(jsonl_text_field(deep, err));
  EXPECT_EQ(err, "nested deeper than 256 levels at column " + std::to_string(deep.size()));
  EXPECT_FALSE(jsonl_text_field("{\"a\": " + std::string(1000000, '['), err));
  EXPECT_EQ(err, "nested deeper than 256 levels at column " + std::to_string(deep.size()));
  // Brackets inside strings do not count.
  EXPECT_EQ(
      jsonl_text_field("{\"text\": \"" + std::string(1000, '[') + "\"}", err).value_or("<none>"),
      std::string(1000, '['));
}

TEST(Jsonl, ErrorsSayWhatAndWhere) {
  std::string err;
  EXPECT_FALSE(jsonl_text_field(R"({"text": "a"} x)", err));
  EXPECT_NE(err.find("at column 15"), std::string::npos) << err;
  EXPECT_FALSE(jsonl_text_field(R"(["text"])", err));
  EXPECT_EQ(err, "the line is a list, expected a JSON object at column 1");
  EXPECT_FALSE(jsonl_text_field(R"({"text": {"a": 1}})", err));
  EXPECT_EQ(err, "\"text\" is an object, expected a string");
  EXPECT_FALSE(jsonl_text_field(R"({"text": "x", "text": null})", err));  // the last one counts
  EXPECT_EQ(err, "\"text\" is null, expected a string");
  EXPECT_EQ(*jsonl_text_field(R"({"x": {"text": 1}, "text": "top"})", err),
            "top");                                             // top level only
  EXPECT_FALSE(jsonl_text_field("{\"text\": \"\xff\"}", err));  // JSON is UTF-8
  EXPECT_NE(err.find("ill-formed UTF-8"), std::string::npos) << err;
  for (const std::string& e : {err}) EXPECT_EQ(e.find('\n'), std::string::npos);
}

TEST(Corpus, ImportsTextAndJsonlWithOffsetsAndFingerprint) {
  TempDir dir;
  std::string a = dir.file("a.txt", "hello"), empty = dir.file("e.txt"),
              j = dir.file("b.jsonl",
                           "{\"text\": \"xy\"}\n\n{\"text\": \"\"}\n{\"text\": \"z\\n\"}\n");
  std::ofstream(empty).close();
  std::string out = dir.file("c.h5");
  ImportStats st = import_corpus({a, empty, j}, out, ImportFormat::Auto, *TextTokenizer::bytes());
  EXPECT_EQ(st.documents, 3);
  EXPECT_EQ(st.empty_skipped, 2);
  EXPECT_EQ(st.tokens, 6 + 3 + 3);
  EXPECT_FALSE(fs::exists(out + ".tmp"));

  Corpus c = Corpus::open(out, "data.corpus");
  EXPECT_EQ(c.info().num_tokens, 12);
  EXPECT_EQ(c.info().num_docs, 3);
  EXPECT_EQ(c.info().vocab_size, ByteTokenizer::kVocabSize);
  EXPECT_EQ(c.info().fingerprint, st.fingerprint);
  EXPECT_EQ(c.doc_offsets(), (std::vector<uint64_t>{0, 6, 9, 12}));
  std::vector<int32_t> toks(12);
  c.read_tokens(0, 12, toks.data());
  EXPECT_EQ(ByteTokenizer::decode(toks), "hello<eos>xy<eos>z\n<eos>");

  // The fingerprint follows the content.
  std::string a2 = dir.file("a2.txt", "hellp"), out2 = dir.file("c2.h5");
  EXPECT_NE(
      import_corpus({a2, empty, j}, out2, ImportFormat::Auto, *TextTokenizer::bytes()).fingerprint,
      st.fingerprint);
  EXPECT_EQ(
      import_corpus({a, empty, j}, out2, ImportFormat::Auto, *TextTokenizer::bytes()).fingerprint,
      st.fingerprint);
}

TEST(Corpus, ImportErrorsNameFileAndLine) {
  TempDir dir;
  std::string j = dir.file("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": 3}\n");
  std::string msg = user_error(
      [&] { import_corpus({j}, dir.file("o.h5"), ImportFormat::Auto, *TextTokenizer::bytes()); });
  EXPECT_NE(msg.find("bad.jsonl:2: \"text\" is a number"), std::string::npos) << msg;
  msg = user_error([&] {
    import_corpus({dir.file("missing.txt")}, dir.file("o.h5"), ImportFormat::Auto,
                  *TextTokenizer::bytes());
  });
  EXPECT_NE(msg.find("missing.txt: cannot read input file"), std::string::npos) << msg;
}

TEST(Corpus, OpenRejectsBadFilesWithOneLine) {
  TempDir dir;
  std::string good = dir.file("good.h5");
  import_corpus({dir.file("t.txt", std::string(5000, 'a'))}, good, ImportFormat::Text,
                *TextTokenizer::bytes());

  auto open_msg = [](const std::string& p) {
    return user_error([&] { Corpus::open(p, "data.corpus"); });
  };
  std::string msg = open_msg(dir.file("nope.h5"));
  EXPECT_NE(msg.find("data.corpus: corpus file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;

  msg = open_msg(dir.file("garbage.h5", std::string(4096, 'g')));
  EXPECT_NE(msg.find("not a readable HDF5 file"), std::string::npos) << msg;

  std::string truncated = dir.file("trunc.h5");
  fs::copy_file(good, truncated);
  fs::resize_file(truncated, fs::file_size(good) / 2);
  msg = open_msg(truncated);
  EXPECT_NE(msg.find("trunc.h5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HDF5"), std::string::npos) << msg;

  std::string wrong = dir.file("wrong.h5");
  {
    h5::File f = h5::File::create(wrong);
    f.set_attr("/", "format", std::string("something-else"));
  }
  msg = open_msg(wrong);
  EXPECT_NE(msg.find("format is 'something-else', expected 'ringtrain-corpus'"), std::string::npos)
      << msg;

  std::string no_tokens = dir.file("notok.h5");
  {
    h5::File f = h5::File::create(no_tokens);
    f.set_attr("/", "format", std::string(kCorpusFormat));
    f.set_attr("/", "version", int64_t(1));
    f.set_attr("/", "vocab_size", int64_t(258));
    f.set_attr("/", "eos_id", int64_t(256));
    f.set_attr("/", "tokenizer", std::string("bytes"));
    f.set_attr("/", "fingerprint", std::string("x"));
  }
  msg = open_msg(no_tokens);
  EXPECT_NE(msg.find("missing dataset /tokens"), std::string::npos) << msg;
  for (const std::string& m : {msg, open_msg(wrong), open_msg(truncated)})
    EXPECT_EQ(m.find('\n'), std::string::npos);
}

TEST(Permutation, IsABijectionForAnySize) {
  for (uint64_t n : {1ull, 2ull, 3ull, 17ull, 1000ull, 4097ull, 65536ull}) {
    SeededPermutation p(n, 42);
    std::vector<bool> seen(n, false);
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t x = p(i);
      ASSERT_LT(x, n);
      ASSERT_FALSE(seen[x]) << "n=" << n;
      seen[x] = true;
    }
  }
  SeededPermutation a(1000, 1), b(1000, 2);
  int same = 0;
  for (uint64_t i = 0; i < 1000; ++i) same += a(i) == b(i);
  EXPECT_LT(same, 20);
}

TEST(Sampler, EveryEpochUsesEverySequenceOnceAndIsPure) {
  ConcatChunkSampler s(/*num_tokens=*/10 * 64 + 1, /*seq_len=*/64, /*seed=*/9);
  ASSERT_EQ(s.num_sequences(), 10);
  const int per_step = 5;
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::set<int64_t> starts;
    for (int step = 2 * epoch; step < 2 * epoch + 2; ++step)
      for (int j = 0; j < per_step; ++j) starts.insert(s.sequence_start(step, j, per_step));
    EXPECT_EQ(starts.size(), 10u);
    EXPECT_EQ(*starts.rbegin(), 9 * 64);
  }
  ConcatChunkSampler again(10 * 64 + 1, 64, 9);
  for (int step = 0; step < 6; ++step)
    for (int j = 0; j < per_step; ++j)
      EXPECT_EQ(s.sequence_start(step, j, per_step), again.sequence_start(step, j, per_step));
  EXPECT_NE(s.sequence_start(0, 0, 10) * 1000 + s.sequence_start(0, 1, 10),
            s.sequence_start(2, 0, 10) * 1000 + s.sequence_start(2, 1, 10));  // epochs differ
}

TEST(Loader, RanksReadOnlyTheirChunksAndTogetherTheWholeSequence) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 300; ++i) text.push_back(static_cast<char>('a' + i % 26));
  std::string path = dir.file("c.h5");
  import_corpus({dir.file("t.txt", text)}, path, ImportFormat::Text, *TextTokenizer::bytes());
  Corpus c = Corpus::open(path, "data.corpus");
  const int64_t L = 64, start = 100;
  std::vector<int32_t> all(L + 1);
  c.read_tokens(start, L + 1, all.data());
  for (int sp : {1, 2, 4}) {
    std::vector<int32_t> seen_tok(L, -1), seen_tgt(L, -1);
    for (int r = 0; r < sp; ++r) {
      SequenceLayout layout = SequenceLayout::zigzag(L, sp, r);
      std::vector<int32_t> tok, tgt, pos;
      read_sequence(c, start, layout, tok, tgt, pos);
      ASSERT_EQ(static_cast<int64_t>(tok.size()), layout.local_len);
      for (size_t i = 0; i < tok.size(); ++i) {
        EXPECT_EQ(seen_tok[pos[i]], -1) << "position held twice";
        seen_tok[pos[i]] = tok[i];
        seen_tgt[pos[i]] = tgt[i];
        EXPECT_EQ(SequenceLayout::owner(L, sp, pos[i]), r);
      }
    }
    for (int64_t p = 0; p < L; ++p) {
      EXPECT_EQ(seen_tok[p], all[p]);
      EXPECT_EQ(seen_tgt[p], all[p + 1]);
    }
  }
}

TEST(Layout, ZigzagBalancesAndMergesAdjacentChunks) {
  SequenceLayout one = SequenceLayout::zigzag(64, 1, 0);
  ASSERT_EQ(one.segments.size(), 1u);
  EXPECT_EQ(one.segments[0].length, 64);
  SequenceLayout r1 = SequenceLayout::zigzag(64, 4, 1);
  ASSERT_EQ(r1.segments.size(), 2u);
  EXPECT_EQ(r1.segments[0].global_start, 8);
  EXPECT_EQ(r1.segments[1].global_start, 48);
  EXPECT_EQ(r1.segments[1].local_offset, 8);
  EXPECT_EQ(r1.local_len, 16);
}

}  // namespace
}  // namespace rt
