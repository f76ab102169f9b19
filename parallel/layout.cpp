#include "parallel/layout.h"

#include "kernels/check.h"

namespace rt {

SequenceLayout SequenceLayout::zigzag(int64_t seq_len, int sp, int sp_rank) {
  RT_CHECK(sp >= 1 && sp_rank >= 0 && sp_rank < sp, "sp_rank ", sp_rank, " of ", sp);
  SequenceLayout l;
  l.seq_len = seq_len;
  l.sp = sp;
  l.sp_rank = sp_rank;
  if (sp == 1) {  // nothing to balance: one chunk of any length
    l.chunks.push_back({0, seq_len, 0});
    l.local_len = seq_len;
    return l;
  }
  RT_CHECK(seq_len % (2 * sp) == 0, "sequence length ", seq_len, " is not a multiple of 2*sp");
  const int64_t chunk = seq_len / (2 * sp);
  for (int64_t c : {int64_t(sp_rank), int64_t(2 * sp - 1 - sp_rank)}) {
    const int64_t start = c * chunk;
    if (!l.chunks.empty() && l.chunks.back().global_start + l.chunks.back().length == start) {
      l.chunks.back().length += chunk;
    } else {
      l.chunks.push_back({start, chunk, l.local_len});
    }
    l.local_len += chunk;
  }
  return l;
}

int SequenceLayout::owner(int64_t seq_len, int sp, int64_t position) {
  const int64_t c = position / (seq_len / (2 * sp));
  return static_cast<int>(c < sp ? c : 2 * sp - 1 - c);
}

}  // namespace rt
