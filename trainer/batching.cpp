#include "trainer/batching.h"

#include <algorithm>

#include "core/check.h"

namespace rt {

Batch OwnedBatch::view(Communicator* sp_group, Device device) {
  Batch b;
  const int64_t T = static_cast<int64_t>(tokens.size());
  b.tokens = Tensor::wrap(tokens.data(), {T}, DType::I32);
  b.targets = Tensor::wrap(targets.data(), {T}, DType::I32);
  b.positions = Tensor::wrap(positions.data(), {T}, DType::I32);
  b.seq = {layout, n_seqs, sp_group};
  if (device == Device::CPU) return b;
  on_device = Tensor::empty({3, T}, DType::I32, device);
  Tensor* parts[3] = {&b.tokens, &b.targets, &b.positions};
  for (int i = 0; i < 3; ++i) {
    const Tensor row = on_device.rows(i, 1).view({T});
    copy_tensor(row, *parts[i]);
    *parts[i] = row;
  }
  return b;
}

int64_t OwnedBatch::target_count() const {
  int64_t n = 0;
  for (int32_t t : targets) n += t >= 0;
  return n;
}

StepBatcher::StepBatcher(const BatchSource& source, const Corpus& corpus, const Grid& grid,
                         int64_t tokens_per_step, int64_t micro_tokens)
    : source_(source),
      corpus_(corpus),
      grid_(grid),
      tokens_per_step_(tokens_per_step),
      micro_tokens_(micro_tokens) {}

void StepBatcher::check(const Recipe& recipe, int64_t conv_halo) const {
  for (int64_t len : source_.seq_lens()) {
    const int64_t sequences = tokens_per_step_ / len;
    if (sequences % grid_.dp != 0)
      throw UserError(cat(
          recipe.where("train.tokens_per_step"), ": train.tokens_per_step: ", tokens_per_step_,
          " tokens = ", sequences, " sequence", sequences == 1 ? "" : "s", " of ", len,
          " tokens cannot be split over dp = ", grid_.dp, " groups; expected a multiple of ",
          grid_.dp * len, " tokens (every sequence length of the data: ", source_.describe(), ")"));
    if (len % (2 * grid_.sp) != 0 || len / (2 * grid_.sp) < std::max<int64_t>(conv_halo, 1))
      throw UserError(cat(
          recipe.where("parallel.sp"), ": parallel.sp: ", grid_.sp, " cuts sequences of ", len,
          " tokens into zigzag units of ", len / (2 * grid_.sp),
          conv_halo > 0 ? cat(", fewer than the ", conv_halo, " rows of conv halo") : std::string(),
          "; expected sequences of at least ", 2 * grid_.sp * std::max<int64_t>(conv_halo, 1),
          " tokens (data decompose --min-len) or a smaller sp"));
  }
}

int64_t StepBatcher::micro_seqs(int64_t seq_len) const {
  const int64_t per_group = tokens_per_step_ / seq_len / grid_.dp;
  return micro_tokens_ > 0 ? std::clamp<int64_t>(micro_tokens_ / seq_len, 1, per_group) : per_group;
}

const SequenceLayout& StepBatcher::layout(int64_t seq_len) {
  auto& l = layouts_[seq_len];
  if (!l)
    l = std::make_unique<SequenceLayout>(SequenceLayout::zigzag(seq_len, grid_.sp, grid_.sp_rank));
  return *l;
}

RankStep StepBatcher::fetch(int64_t step) {
  const StepSequences global = source_.at(step);
  RankStep r;
  r.seq_len = global.seq_len;
  r.sequences = static_cast<int64_t>(global.starts.size());
  const SequenceLayout& lay = layout(global.seq_len);
  const int64_t per_group = r.sequences / grid_.dp, micro = micro_seqs(global.seq_len);
  for (int64_t first = 0; first < per_group; first += micro) {
    OwnedBatch& b = r.micro.emplace_back();
    b.layout = &lay;
    b.n_seqs = std::min(micro, per_group - first);
    for (int64_t j = 0; j < b.n_seqs; ++j)
      read_sequence(corpus_, global.starts[grid_.dp_rank * per_group + first + j], lay, b.tokens,
                    b.targets, b.positions);
  }
  return r;
}

int64_t StepBatcher::max_activation_bytes(const Model& model, bool recompute) {
  int64_t most = 0;
  for (int64_t len : source_.seq_lens())
    most = std::max(most, model.activation_bytes(micro_seqs(len), layout(len), recompute));
  return most;
}

}  // namespace rt
