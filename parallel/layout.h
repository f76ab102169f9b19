// How one sequence of L tokens is cut across the sp ranks of a group (zigzag, as in
// TransformerEngine and ring-flash-attention): 2*sp units of L/(2*sp) tokens; sp-rank r holds
// units r and 2*sp-1-r, so every rank has the same causal work. Positions stay global.
// A segment is a contiguous run of the sequence on one rank: adjacent units held by one rank
// are merged into one segment (sp = 1: one segment, the whole sequence). "Chunk" is the
// recurrence's block of model.glr_chunk tokens only (docs/DESIGN.md, glossary).
#pragma once

#include <cstdint>
#include <vector>

namespace rt {

class Communicator;

struct Segment {
  int64_t global_start = 0;  // position of its first token in the sequence
  int64_t length = 0;
  int64_t local_offset = 0;  // row of its first token in this rank's slice of the sequence
};

struct SequenceLayout {
  int64_t seq_len = 0;
  int sp = 1, sp_rank = 0;
  std::vector<Segment> segments;  // in increasing global position
  int64_t local_len = 0;          // tokens of one sequence on this rank

  static SequenceLayout zigzag(int64_t seq_len, int sp, int sp_rank);
  // The sp-rank holding global position p.
  static int owner(int64_t seq_len, int sp, int64_t position);
};

// Where the rows a layer sees come from, from the batch to the ring: n_seqs sequences, each cut
// by `layout` across the sp group; this rank holds layout.local_len rows of each, sequence
// after sequence.
struct SequenceContext {
  const SequenceLayout* layout = nullptr;
  int64_t n_seqs = 0;
  Communicator* sp_group = nullptr;  // null: a group of one
};

}  // namespace rt
