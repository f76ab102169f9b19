#include "trainer/infer_command.h"

#include <cstdio>
#include <memory>

#include "core/check.h"
#include "core/files.h"
#include "kernels/arena.h"
#include "model/model.h"
#include "parallel/layout.h"
#include "trainer/batching.h"
#include "trainer/eval_command.h"

namespace rt {

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::string dims;
  int64_t n = 1;
  for (int64_t d : shape) dims += std::to_string(d) + ",", n *= d;
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // magic (6) + version (2) + length (2) + header, padded with spaces to 64 bytes, ends in \n.
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw RunError(cat(path, " not written: cannot create ", tmp), 1);
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                static_cast<unsigned char>(header.size() >> 8)};
  bool ok = std::fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 && std::fwrite(len, 1, 2, f) == 2 &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            std::fwrite(data, 4, static_cast<size_t>(n), f) == static_cast<size_t>(n);
  ok = std::fclose(f) == 0 && ok;
  try {
    if (!ok) throw std::runtime_error("write failed");
    commit_file(tmp, path);
  } catch (const std::exception& e) {
    std::remove(tmp.c_str());
    throw RunError(cat(path, " not written: ", e.what()), 1);
  }
}

int run_logits(const LogitsOptions& o) {
  CheckpointState state;
  const std::unique_ptr<Model> model = load_model(o.checkpoint, state);
  const int64_t T = static_cast<int64_t>(o.tokens.size()), V = model->config().vocab_size;
  if (T == 0) throw UserError("logits: --tokens is empty; expected token ids such as 1,2,3");
  for (int32_t t : o.tokens)
    if (t < 0 || t >= V)
      throw UserError(cat("logits: token ", t, " is outside the vocabulary of ", o.checkpoint,
                          " (0..", V - 1, ")"));
  const SequenceLayout layout = SequenceLayout::zigzag(T, 1, 0);
  OwnedBatch batch;
  batch.n_seqs = 1;
  batch.layout = &layout;
  for (int64_t t = 0; t < T; ++t) {
    batch.tokens.push_back(o.tokens[t]);
    batch.targets.push_back(-1);
    batch.positions.push_back(static_cast<int32_t>(t));
  }
  Arena arena(Device::CPU, 0);
  Tensor logits = Tensor::empty({T, V});
  model->logits(batch.view(nullptr), arena, logits);
  if (!o.out_npy.empty()) {
    write_npy_f32(o.out_npy, logits.f32(), {T, V});
    std::printf("logits [%lld, %lld] of %s at step %lld -> %s\n", static_cast<long long>(T),
                static_cast<long long>(V), o.checkpoint.c_str(), static_cast<long long>(state.step),
                o.out_npy.c_str());
    return 0;
  }
  for (int64_t t = 0; t < T; ++t) {
    int64_t best = 0;
    for (int64_t v = 1; v < V; ++v)
      if (logits.f32()[t * V + v] > logits.f32()[t * V + best]) best = v;
    std::printf("%lld%c", static_cast<long long>(best), t + 1 == T ? '\n' : ' ');
  }
  return 0;
}

}  // namespace rt
