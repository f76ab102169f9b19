// Dataset decomposition (Pouransari et al., docs/DESIGN.md §7): each document of n tokens has
// m = n - 1 (input, target) pairs; it is cut into sequences of 2^k pairs for the set bits of m,
// largest first, after sequences of max_len for every whole max_len in m; what is left below
// min_len is dropped and counted. Consecutive sequences share their boundary token, so every pair
// of the corpus is used exactly once or counted as dropped. A sequence of 2^k pairs is tokens[start
// : start + 2^k + 1]. Buckets are index arrays (starts) only; tokens are never copied. In the
// corpus file: /buckets/<k>/starts u64 [m_k], root attributes min_log2, max_log2.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rt {

struct Buckets {
  int min_log2 = 0, max_log2 = 0;
  std::vector<std::vector<uint64_t>> starts;  // [k - min_log2]: the sequences of length 2^k
  int64_t dropped_pairs = 0;                  // pairs in remainders below 2^min_log2
  int64_t total_pairs = 0;                    // pairs in the corpus: n - 1 per document

  int buckets() const { return max_log2 - min_log2 + 1; }
  const std::vector<uint64_t>& of(int k) const { return starts.at(k - min_log2); }
  int64_t pairs(int k) const { return static_cast<int64_t>(of(k).size()) << k; }
  std::vector<int64_t> sizes() const {  // sequences per bucket, shortest first
    std::vector<int64_t> n;
    for (const auto& s : starts) n.push_back(static_cast<int64_t>(s.size()));
    return n;
  }
};

Buckets decompose_documents(const std::vector<uint64_t>& doc_offsets, int min_log2, int max_log2);

// Stores the buckets in the corpus file (replacing earlier ones); reads them back. Reading a
// corpus without buckets is a UserError that says how to make them.
void write_buckets(const std::string& corpus_path, const Buckets& buckets);
// Reading checks the buckets against the corpus of num_tokens tokens: every sequence inside
// it, at least one sequence in all, extents no larger than the tokens allow (a UserError
// naming `key`, the file and the dataset otherwise).
Buckets read_buckets(const std::string& corpus_path, const std::string& key, int64_t num_tokens);

// The table `ringtrain data decompose` prints: per bucket its sequences, tokens and share,
// and the tokens dropped.
std::string bucket_table(const Buckets& buckets);

}  // namespace rt
