#include "trainer/infer_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>

#include "core/check.h"
#include "core/files.h"
#include "core/hash.h"
#include "data/tokenizer.h"
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
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                static_cast<unsigned char>(header.size() >> 8)};
  try {
    write_file(path, [&](std::FILE* f) {
      return std::fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 && std::fwrite(len, 1, 2, f) == 2 &&
             std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
             std::fwrite(data, 4, static_cast<size_t>(n), f) == static_cast<size_t>(n);
    });
  } catch (const std::exception& e) {
    throw RunError(cat(path, " not written: ", e.what()), 1);
  }
}

namespace {
// Every id within the model's vocabulary, or a UserError naming the first that is not.
void check_token_ids(const char* command, const std::vector<int32_t>& tokens, int64_t V,
                     const std::string& checkpoint) {
  for (int32_t t : tokens)
    if (t < 0 || t >= V)
      throw UserError(cat(command, ": token ", t, " is outside the vocabulary of ", checkpoint,
                          " (0..", V - 1, ")"));
}
}  // namespace

int run_logits(const LogitsOptions& o) {
  CheckpointState state;
  const std::unique_ptr<Model> model = load_model(o.checkpoint, state);
  const int64_t T = static_cast<int64_t>(o.tokens.size()), V = model->config().vocab_size;
  if (T == 0) throw UserError("logits: --tokens is empty; expected token ids such as 1,2,3");
  check_token_ids("logits", o.tokens, V, o.checkpoint);
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
  for (int64_t t = 0; t < T; ++t)
    std::printf("%d%c", sample_token(logits.f32() + t * V, V, 0.0, 1.0, 0.0),
                t + 1 == T ? '\n' : ' ');
  return 0;
}

int32_t sample_token(const float* logits, int64_t V, double temperature, double top_p, double u) {
  if (temperature <= 0) return static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
  const double top = *std::max_element(logits, logits + V);
  std::vector<double> p(static_cast<size_t>(V));
  double sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += p[v] = std::exp((logits[v] - top) / temperature);
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  // The nucleus: most likely first until their share reaches top_p (at least one token).
  size_t keep = 0;
  double mass = 0;
  while (keep < order.size() && (keep == 0 || mass < top_p * sum)) mass += p[order[keep++]];
  double target = u * mass;
  for (size_t i = 0; i < keep; ++i)
    if ((target -= p[order[i]]) < 0) return order[i];
  return order[keep - 1];
}

int run_generate(const GenerateOptions& o) {
  CheckpointState state;
  const std::unique_ptr<Model> model = load_model(o.checkpoint, state);
  const int64_t V = model->config().vocab_size;
  std::unique_ptr<TextTokenizer> tokenizer;
  std::vector<int32_t> prompt = o.tokens;
  if (!o.prompt.empty()) {
    tokenizer =
        o.tokenizer.empty() ? TextTokenizer::bytes() : TextTokenizer::sentencepiece(o.tokenizer);
    if (tokenizer->info().vocab_size > V)
      throw UserError(cat("generate: the tokenizer's vocabulary (", tokenizer->info().vocab_size,
                          ") is larger than the model's (", V, " in ", o.checkpoint,
                          "); expected --tokenizer of the model's corpus"));
    tokenizer->encode(o.prompt, prompt);
  }
  if (prompt.empty())
    throw UserError("generate: an empty prompt; expected --prompt TEXT or --tokens 1,2,3");
  check_token_ids("generate", prompt, V, o.checkpoint);
  const int64_t P = static_cast<int64_t>(prompt.size()), max_len = P + o.max_new;
  auto states = model->decode_states(max_len);
  Arena arena(Device::CPU, 0);
  Tensor logits = Tensor::empty({V});
  const auto t0 = std::chrono::steady_clock::now();
  model->decode_step(prompt, 0, P, states, arena, logits);
  const double prefill =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<int32_t> generated;
  const auto t1 = std::chrono::steady_clock::now();
  for (int64_t pos = P; pos < max_len; ++pos) {
    const double u =
        static_cast<double>(splitmix64(o.seed ^ splitmix64(static_cast<uint64_t>(pos))) >> 11) *
        0x1p-53;
    const int32_t next = sample_token(logits.f32(), V, o.temperature, o.top_p, u);
    generated.push_back(next);
    if (tokenizer && next == tokenizer->info().eos_id) break;
    if (pos + 1 < max_len)
      model->decode_step({next}, pos, std::max(P, pos + 1), states, arena, logits);
  }
  const double decode =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::string ids;
  for (int32_t t : generated) {
    if (!ids.empty()) ids += ',';
    ids += std::to_string(t);
  }
  std::printf("ids: %s\n", ids.c_str());
  if (tokenizer) std::printf("text: %s\n", tokenizer->decode(generated).c_str());
  std::printf("prompt %lld tokens in %.3f s, generated %zu tokens in %.3f s (%.1f tokens/s)\n",
              static_cast<long long>(P), prefill, generated.size(), decode,
              static_cast<double>(generated.size()) / std::max(decode, 1e-9));
  return 0;
}

}  // namespace rt
