#include "data/curriculum.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/check.h"
#include "core/hash.h"
#include "data/loader.h"

namespace rt {

std::vector<double> curriculum_odds(CurriculumKind kind, int n) {
  std::vector<double> odds(n, 1.0);
  if (kind == CurriculumKind::Natural) return {};
  for (int i = 0; i < n; ++i) {
    if (kind == CurriculumKind::GrowLinear)
      odds[i] = n - i;
    else if (kind == CurriculumKind::GrowP2)
      odds[i] = std::ldexp(1.0, n - 1 - i);
  }
  return odds;
}

// counts scaled by part / whole (part <= whole = the sum of counts), rounded down, and the
// steps the rounding lost given to the largest remainders (the shorter bucket on a tie): the
// result adds up to part exactly.
static std::vector<int64_t> scaled_shares(const std::vector<int64_t>& counts, int64_t whole,
                                          int64_t part) {
  std::vector<int64_t> shares(counts.size()), remainders(counts.size());
  int64_t given = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const __int128 scaled = static_cast<__int128>(counts[i]) * part;
    shares[i] = static_cast<int64_t>(scaled / whole);
    remainders[i] = static_cast<int64_t>(scaled % whole);
    given += shares[i];
  }
  std::vector<size_t> order(counts.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return remainders[a] > remainders[b]; });
  for (size_t i = 0; given < part; ++i, ++given) ++shares[order.at(i)];
  return shares;
}

CurriculumSchedule::CurriculumSchedule(std::vector<int64_t> bucket_sizes, int min_log2,
                                       int64_t tokens_per_step, const CurriculumSpec& spec,
                                       uint64_t seed)
    : sizes_(std::move(bucket_sizes)),
      min_log2_(min_log2),
      tokens_per_step_(tokens_per_step),
      spec_(spec),
      seed_(seed) {
  RT_CHECK(spec_.cycles >= 1, "cycles ", spec_.cycles);
  if (spec_.odds.empty()) spec_.odds = curriculum_odds(spec_.kind, static_cast<int>(sizes_.size()));
  RT_CHECK(spec_.odds.empty() || spec_.odds.size() == sizes_.size(), "odds for ", spec_.odds.size(),
           " of ", sizes_.size(), " buckets");
  for (size_t i = 0; i < sizes_.size(); ++i) {
    const int64_t per = per_step(min_log2_ + static_cast<int>(i));
    batches_.push_back(sizes_[i] == 0 || per == 0 ? 0 : (sizes_[i] + per - 1) / per);
    steps_per_epoch_ += batches_.back();
  }
  RT_CHECK(steps_per_epoch_ > 0, "no bucket can form a batch");
  RT_CHECK(spec_.span_steps >= 0, "span_steps ", spec_.span_steps);
  period_ = spec_.span_steps > 0 ? std::min(spec_.span_steps, steps_per_epoch_) : steps_per_epoch_;
  period_batches_ = scaled_shares(batches_, steps_per_epoch_, period_);
}

int64_t CurriculumSchedule::cycle_share(int log2_len, int64_t cycle) const {
  const int64_t b = period_batches(log2_len), c = spec_.cycles;
  return (cycle + 1) * b / c - cycle * b / c;
}

const std::vector<std::pair<int, int64_t>>& CurriculumSchedule::period_draws(int64_t period) const {
  if (period == cached_period_) return cached_;
  cached_.clear();
  const int n = static_cast<int>(sizes_.size());
  std::vector<int64_t> next(n, 0), left(n);
  uint64_t counter = splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(period) + 0x6a09e667ull));
  for (int64_t cycle = 0; cycle < spec_.cycles; ++cycle) {
    int64_t remaining = 0;
    for (int i = 0; i < n; ++i) remaining += left[i] = cycle_share(min_log2_ + i, cycle);
    // A bucket's weight in the draw: its odds, or (natural) its batches left; 0 once drained.
    auto weight = [&](int i) {
      return left[i] == 0 ? 0.0 : spec_.odds.empty() ? static_cast<double>(left[i]) : spec_.odds[i];
    };
    for (; remaining > 0; --remaining) {
      double total = 0;
      for (int i = 0; i < n; ++i) total += weight(i);
      const double u = (static_cast<double>(splitmix64(counter++) >> 11) + 0.5) * 0x1.0p-53 * total;
      int pick = -1;
      double acc = 0;
      for (int i = 0; i < n && pick < 0; ++i) {
        if (left[i] == 0) continue;
        acc += weight(i);
        if (u < acc) pick = i;
      }
      if (pick < 0)  // rounding at the top end: the last bucket with batches left
        for (int i = n - 1; i >= 0 && pick < 0; --i)
          if (left[i] > 0) pick = i;
      --left[pick];
      cached_.emplace_back(pick, next[pick]++);
    }
  }
  cached_period_ = period;
  return cached_;
}

CurriculumSchedule::Draw CurriculumSchedule::at(int64_t step) const {
  const int64_t period = step / period_;
  const auto& [bucket, batch] = period_draws(period)[static_cast<size_t>(step % period_)];
  // The bucket's batches continue from period to period through its epochs (when the period
  // is an epoch: epoch = period, batch as drawn).
  const int64_t nth = period * period_batches_[bucket] + batch;
  return {min_log2_ + bucket, nth / batches_[bucket], nth % batches_[bucket]};
}

std::vector<int64_t> CurriculumSchedule::sequences(const Draw& draw) const {
  const int64_t n = sizes_.at(draw.log2_len - min_log2_), per = per_step(draw.log2_len);
  const SeededPermutation perm(
      static_cast<uint64_t>(n),
      splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(draw.epoch) * 131 +
                                    static_cast<uint64_t>(draw.log2_len))));
  std::vector<int64_t> ids(per);
  for (int64_t i = 0; i < per; ++i)
    ids[i] = static_cast<int64_t>(perm(static_cast<uint64_t>((draw.batch * per + i) % n)));
  return ids;
}

}  // namespace rt
