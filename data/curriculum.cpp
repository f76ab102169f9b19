#include "data/curriculum.h"

#include <cmath>

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
}

int64_t CurriculumSchedule::cycle_share(int log2_len, int64_t cycle) const {
  const int64_t b = batches(log2_len), c = spec_.cycles;
  return (cycle + 1) * b / c - cycle * b / c;
}

const std::vector<std::pair<int, int64_t>>& CurriculumSchedule::epoch_draws(int64_t epoch) const {
  if (epoch == cached_epoch_) return cached_;
  cached_.clear();
  const int n = static_cast<int>(sizes_.size());
  std::vector<int64_t> next(n, 0), left(n);
  uint64_t counter = splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(epoch) + 0x6a09e667ull));
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
  cached_epoch_ = epoch;
  return cached_;
}

CurriculumSchedule::Draw CurriculumSchedule::at(int64_t step) const {
  const int64_t epoch = step / steps_per_epoch_;
  const auto& draws = epoch_draws(epoch);
  const auto& [bucket, batch] = draws[static_cast<size_t>(step % steps_per_epoch_)];
  return {min_log2_ + bucket, epoch, batch};
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
