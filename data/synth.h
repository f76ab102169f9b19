// Synthetic long-context corpora with a dependency across the whole document (byte tokens, or
// the same text in a pretrained model's tokens: tokenized_document):
//   passkey: filler in a lexicon of random words of its own (no digits, no ':') with
//            "The pass key is:71432. Remember it."
//            at a random depth, ending "What is the pass key? The pass key is:71432."
//   mqar:    multi-query associative recall: "kv: abc=17 qxz=03 ... | qxz?03 abc?17 ..."
// A document of exactly `length` tokens records where its answers are: the tokens a model must
// predict from the far context (the 5 key digits; the 2 digits of each recalled value).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/corpus.h"

namespace rt {

struct SynthDocument {
  std::vector<int32_t> tokens;   // exactly the requested length, ending with <eos>
  std::vector<int64_t> answers;  // positions of the answer tokens in `tokens`
};

// depth in [0, 1]: where the key sits in the filler (0 = start, 1 = just before the question).
// questions >= 1: the question (with its answer) is asked that many times, the last at the
// end and the others at random sentence ends after the key: more retrieval per token of
// training text (every answer counts), at every distance up to the key's.
SynthDocument passkey_document(int64_t length, double depth, uint64_t seed, int64_t questions = 1);
SynthDocument mqar_document(int64_t length, uint64_t seed);
// The shortest length either task can fill.
inline constexpr int64_t kSynthMinLength = 128;

class TextTokenizer;
// A document of `length` tokens of a subword tokenizer (a pretrained model's): the byte
// document that make(bytes) builds is encoded, its answers become the tokens that hold an
// answer byte, and the byte length is searched (the measured bytes per token) for the longest
// encoding that leaves room for <eos>; the few tokens still missing repeat the first token at
// the start. UserError when even kSynthMinLength bytes take more than `length` tokens.
SynthDocument tokenized_document(const std::function<SynthDocument(int64_t bytes)>& make,
                                 int64_t length, const TextTokenizer& tokenizer);
// One document of `task` ("passkey": the key at `depth`, asked `questions` times; "mqar"),
// `length` tokens of bytes, or of `tokenizer` when it is given.
SynthDocument task_document(const std::string& task, int64_t length, double depth, uint64_t seed,
                            int64_t questions, const TextTokenizer* tokenizer);

struct SynthSpec {
  std::string task = "passkey";  // passkey | mqar
  int64_t documents = 1000;
  int64_t min_len = 256, max_len = 4096;  // document lengths in tokens
  // log_uniform | uniform | fixed (max_len) | pow2: 2^k + 1 tokens, so that dataset
  // decomposition keeps every document whole in one sequence of its 2^k bucket, with odds
  // 2^-k: the same expected tokens in every bucket.
  std::string length_dist = "log_uniform";
  // passkey: each document asks its question 1..questions times (uniform), see passkey_document
  int64_t questions = 1;
  uint64_t seed = 1;
  std::string tokenizer;  // a SentencePiece model: documents of its tokens; "" = bytes
};

// Writes a corpus of spec.documents documents; bad specs are a UserError.
ImportStats synth_corpus(const SynthSpec& spec, const std::string& out_path);

}  // namespace rt
