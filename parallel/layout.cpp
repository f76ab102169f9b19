#include "parallel/layout.h"

#include "core/check.h"

namespace rt {

SequenceLayout SequenceLayout::zigzag(int64_t seq_len, int sp, int sp_rank) {
  RT_CHECK(sp >= 1 && sp_rank >= 0 && sp_rank < sp, "sp_rank ", sp_rank, " of ", sp);
  SequenceLayout l;
  l.seq_len = seq_len;
  l.sp = sp;
  l.sp_rank = sp_rank;
  if (sp == 1) {  // nothing to balance: one segment of any length
    l.segments.push_back({0, seq_len, 0});
    l.local_len = seq_len;
    return l;
  }
  RT_CHECK(seq_len % (2 * sp) == 0, "sequence length ", seq_len, " is not a multiple of 2*sp");
  const int64_t unit = seq_len / (2 * sp);
  for (int64_t u : {int64_t(sp_rank), int64_t(2 * sp - 1 - sp_rank)}) {
    const int64_t start = u * unit;
    if (!l.segments.empty() && l.segments.back().global_start + l.segments.back().length == start) {
      l.segments.back().length += unit;
    } else {
      l.segments.push_back({start, unit, l.local_len});
    }
    l.local_len += unit;
  }
  return l;
}

int SequenceLayout::owner(int64_t seq_len, int sp, int64_t position) {
  const int64_t u = position / (seq_len / (2 * sp));
  return static_cast<int>(u < sp ? u : 2 * sp - 1 - u);
}

}  // namespace rt
