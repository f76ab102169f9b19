#include "data/loader.h"

#include "core/check.h"
#include "core/hash.h"

namespace rt {

SeededPermutation::SeededPermutation(uint64_t n, uint64_t seed) : n_(n) {
  RT_CHECK(n >= 1, "permutation of an empty range");
  uint64_t bits = 2;
  while (bits < 64 && (uint64_t(1) << bits) < n) bits += 2;
  half_bits_ = bits / 2;
  half_mask_ = (uint64_t(1) << half_bits_) - 1;
  for (int r = 0; r < 4; ++r) keys_[r] = splitmix64(seed * 4 + r + 0x5bd1e995ull);
}

uint64_t SeededPermutation::operator()(uint64_t i) const {
  RT_CHECK(i < n_, "permutation index ", i, " of ", n_);
  uint64_t x = i;
  do {  // cycle-walk: at most a few rounds since the domain is < 4n
    uint64_t left = x >> half_bits_, right = x & half_mask_;
    for (uint64_t key : keys_) {
      const uint64_t next = left ^ (splitmix64(right ^ key) & half_mask_);
      left = right;
      right = next;
    }
    x = (left << half_bits_) | right;
  } while (x >= n_);
  return x;
}

ConcatChunkSampler::ConcatChunkSampler(int64_t num_tokens, int64_t seq_len, uint64_t seed)
    : seq_len_(seq_len), num_sequences_((num_tokens - 1) / seq_len), seed_(seed) {}

int64_t ConcatChunkSampler::sequence_start(int64_t step, int64_t j, int64_t seqs_per_step) const {
  RT_CHECK(num_sequences_ > 0, "corpus shorter than one sequence");
  const int64_t global = step * seqs_per_step + j;
  const int64_t epoch = global / num_sequences_, index = global % num_sequences_;
  const SeededPermutation perm(static_cast<uint64_t>(num_sequences_),
                               splitmix64(seed_) ^ splitmix64(static_cast<uint64_t>(epoch) + 1));
  return static_cast<int64_t>(perm(static_cast<uint64_t>(index))) * seq_len_;
}

void read_sequence(const Corpus& corpus, int64_t start, const SequenceLayout& layout,
                   std::vector<int32_t>& tokens, std::vector<int32_t>& targets,
                   std::vector<int32_t>& positions) {
  std::vector<int32_t> buf;
  for (const Segment& c : layout.segments) {
    buf.resize(c.length + 1);
    corpus.read_tokens(start + c.global_start, c.length + 1, buf.data());
    tokens.insert(tokens.end(), buf.begin(), buf.end() - 1);
    targets.insert(targets.end(), buf.begin() + 1, buf.end());
    for (int64_t i = 0; i < c.length; ++i)
      positions.push_back(static_cast<int32_t>(c.global_start + i));
  }
}

ConcatChunkSource::ConcatChunkSource(int64_t num_tokens, int64_t seq_len, int64_t tokens_per_step,
                                     uint64_t seed)
    : sampler_(num_tokens, seq_len, seed),
      seq_len_(seq_len),
      per_step_(tokens_per_step / seq_len) {}

StepSequences ConcatChunkSource::at(int64_t step) const {
  StepSequences s{seq_len_, {}};
  for (int64_t j = 0; j < per_step_; ++j)
    s.starts.push_back(sampler_.sequence_start(step, j, per_step_));
  return s;
}

std::string ConcatChunkSource::describe() const {
  return cat("concat-and-chunk: ", per_step_, " x ", seq_len_, " tokens per step, ",
             sampler_.num_sequences(), " sequences");
}

DecomposedSource::DecomposedSource(Buckets buckets, int64_t tokens_per_step,
                                   const CurriculumSpec& spec, uint64_t seed)
    : buckets_(std::move(buckets)),
      schedule_(buckets_.sizes(), buckets_.min_log2, tokens_per_step, spec, seed) {}

StepSequences DecomposedSource::at(int64_t step) const {
  const CurriculumSchedule::Draw d = schedule_.at(step);
  StepSequences s{int64_t(1) << d.log2_len, {}};
  const std::vector<uint64_t>& starts = buckets_.of(d.log2_len);
  for (int64_t id : schedule_.sequences(d)) s.starts.push_back(static_cast<int64_t>(starts[id]));
  return s;
}

std::vector<int64_t> DecomposedSource::seq_lens() const {
  std::vector<int64_t> lens;
  for (int k = buckets_.min_log2; k <= buckets_.max_log2; ++k)
    if (schedule_.batches(k) > 0) lens.push_back(int64_t(1) << k);
  return lens;
}

std::string DecomposedSource::describe() const {
  return cat("dataset decomposition: buckets 2^", buckets_.min_log2, "..2^", buckets_.max_log2,
             ", ", schedule_.steps_per_epoch(), " steps per epoch in ", schedule_.cycles(),
             " cycles",
             schedule_.period() < schedule_.steps_per_epoch()
                 ? cat(" spread over the run's ", schedule_.period(), " steps")
                 : std::string());
}

}  // namespace rt
