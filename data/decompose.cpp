#include "data/decompose.h"

#include <cstdio>

#include "core/check.h"
#include "data/h5.h"

namespace rt {

Buckets decompose_documents(const std::vector<uint64_t>& doc_offsets, int min_log2, int max_log2) {
  RT_CHECK(min_log2 >= 0 && min_log2 <= max_log2 && max_log2 < 40, "bucket range 2^", min_log2,
           " .. 2^", max_log2);
  Buckets b;
  b.min_log2 = min_log2;
  b.max_log2 = max_log2;
  b.starts.resize(b.buckets());
  const uint64_t max_len = uint64_t(1) << max_log2;
  for (size_t d = 0; d + 1 < doc_offsets.size(); ++d) {
    const uint64_t n = doc_offsets[d + 1] - doc_offsets[d];
    if (n < 2) continue;  // no pair
    uint64_t m = n - 1, pos = doc_offsets[d];
    b.total_pairs += static_cast<int64_t>(m);
    for (; m >= max_len; m -= max_len, pos += max_len) b.starts.back().push_back(pos);
    for (int k = max_log2 - 1; k >= min_log2; --k) {
      const uint64_t len = uint64_t(1) << k;
      if (m < len) continue;
      b.starts[k - min_log2].push_back(pos);
      pos += len;
      m -= len;
    }
    b.dropped_pairs += static_cast<int64_t>(m);
  }
  return b;
}

void write_buckets(const std::string& corpus_path, const Buckets& buckets) {
  try {
    h5::File f = h5::File::open_write(corpus_path);
    f.remove("/buckets");
    f.create_groups("/buckets");
    for (int k = buckets.min_log2; k <= buckets.max_log2; ++k) {
      const std::string group = cat("/buckets/", k);
      f.create_groups(group);
      f.write_vector(group + "/starts", buckets.of(k));
    }
    f.set_attr("/", "min_log2", int64_t(buckets.min_log2));
    f.set_attr("/", "max_log2", int64_t(buckets.max_log2));
    f.set_attr("/buckets", "dropped_pairs", buckets.dropped_pairs);
    f.set_attr("/buckets", "total_pairs", buckets.total_pairs);
    f.close();
  } catch (const h5::Error& e) {
    throw UserError(cat(corpus_path, ": cannot write buckets: ", e.what()));
  }
}

Buckets read_buckets(const std::string& corpus_path, const std::string& key, int64_t num_tokens) {
  const std::string again = cat("run 'ringtrain data decompose ", corpus_path, "' again");
  auto bad = [&](const std::string& what) {
    return UserError(cat(key, ": ", corpus_path, ": ", what, "; ", again));
  };
  try {
    const h5::File f = h5::File::open_read(corpus_path);
    if (!f.exists("/buckets") || !f.has_attr("/", "min_log2"))
      throw UserError(cat(key, ": ", corpus_path, " has no buckets; run 'ringtrain data decompose ",
                          corpus_path,
                          " --min-len N --max-len M' first (or use data.mode: "
                          "concat_chunk)"));
    const int64_t lo = f.attr_int("/", "min_log2"), hi = f.attr_int("/", "max_log2");
    if (lo < 0 || hi < lo || hi >= 40)
      throw bad(cat("bucket range 2^", lo, "..2^", hi,
                    " (attributes min_log2, max_log2) is invalid; "
                    "expected 0 <= min_log2 <= max_log2 < 40"));
    Buckets b;
    b.min_log2 = static_cast<int>(lo);
    b.max_log2 = static_cast<int>(hi);
    b.dropped_pairs = f.attr_int("/buckets", "dropped_pairs");
    b.total_pairs = f.attr_int("/buckets", "total_pairs");
    if (b.dropped_pairs < 0 || b.total_pairs < 0 || b.dropped_pairs > b.total_pairs ||
        b.total_pairs > num_tokens)
      throw bad(cat("/buckets counts ", b.dropped_pairs, " dropped of ", b.total_pairs,
                    " pairs; expected 0 <= dropped <= total <= the corpus's ", num_tokens,
                    " tokens"));
    int64_t sequences = 0;
    for (int k = b.min_log2; k <= b.max_log2; ++k) {
      const std::string name = cat("/buckets/", k, "/starts");
      const h5::DatasetInfo info = f.info(name);
      if (info.dims.size() != 1 || info.type_class != H5T_INTEGER || info.type_size != 8)
        throw bad(cat(name, " is not a 1-d u64 dataset"));
      // A sequence of 2^k pairs takes 2^k + 1 tokens; the sequences cut from a document are
      // disjoint but for their boundary tokens: at most (N - 1) / 2^k of them fit.
      const uint64_t len = uint64_t(1) << k;
      const uint64_t room = num_tokens > 0 ? static_cast<uint64_t>(num_tokens - 1) >> k : 0;
      if (info.dims[0] > room)
        throw bad(cat(name, " holds ", info.dims[0], " sequences of 2^", k,
                      " + 1 tokens, more than the ", num_tokens, " tokens of the corpus hold"));
      std::vector<uint64_t> starts = f.read_all<uint64_t>(name, room);
      for (size_t i = 0; i < starts.size(); ++i)
        if (starts[i] > static_cast<uint64_t>(num_tokens) ||
            static_cast<uint64_t>(num_tokens) - starts[i] < len + 1)
          throw bad(cat(name, "[", i, "] = ", starts[i], " starts a sequence of ", len + 1,
                        " tokens beyond the corpus's ", num_tokens, " tokens"));
      sequences += static_cast<int64_t>(starts.size());
      b.starts.push_back(std::move(starts));
    }
    if (sequences == 0)
      throw bad(cat("every bucket 2^", b.min_log2, "..2^", b.max_log2,
                    " is empty (no document has 2^min_log2 pairs); expected at least one sequence, "
                    "e.g. from a smaller --min-len"));
    return b;
  } catch (const h5::Error& e) {
    throw bad(e.what());
  }
}

std::string bucket_table(const Buckets& b) {
  std::string out = "bucket     length    sequences          tokens    share\n";
  char line[160];
  for (int k = b.min_log2; k <= b.max_log2; ++k) {
    const int64_t pairs = b.pairs(k);
    std::snprintf(line, sizeof line, "%6d %10lld %12zu %15lld %7.2f%%\n", k, 1LL << k,
                  b.of(k).size(), static_cast<long long>(pairs),
                  b.total_pairs
                      ? 100.0 * static_cast<double>(pairs) / static_cast<double>(b.total_pairs)
                      : 0.0);
    out += line;
  }
  std::snprintf(line, sizeof line,
                "dropped: %lld tokens (%.2f%%) in remainders shorter than 2^%d; total %lld\n",
                static_cast<long long>(b.dropped_pairs),
                b.total_pairs ? 100.0 * static_cast<double>(b.dropped_pairs) /
                                    static_cast<double>(b.total_pairs)
                              : 0.0,
                b.min_log2, static_cast<long long>(b.total_pairs));
  out += line;
  return out;
}

}  // namespace rt
