// Sequence parallelism on this machine: one sequence of L tokens split over the sp ranks of
// the world (zigzag), one training step of an attention+MLP model (the trainer's own step,
// trainer/train_step.h), and one ring-attention layer's traffic.
//
//   mpirun -np SP bench_ring --seq-len L [--d-model 256] [--heads 4] [--pattern "*-"]
//                            [--steps 3] [--recompute 1]
//
// Prints one line (rank 0): L, sp, threads per rank, median step seconds, tokens/s, the
// largest per-rank arena peak and peak RSS, and the bytes one rank sends for one attention
// layer forward and backward, measured and analytic. MPI and Google Benchmark do not mix,
// so this is a plain program with its own timing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "kernels/arena.h"
#include "kernels/device.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "parallel/comm.h"
#include "parallel/ring_attention.h"
#include "parallel/state_passing.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/train_step.h"

namespace rt {
namespace {

struct Args {
  int64_t seq_len = 16384, d_model = 256, heads = 4, steps = 3;
  std::string pattern = "*-";
  bool recompute = true;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--seq-len")
      a.seq_len = std::atoll(v.c_str());
    else if (k == "--d-model")
      a.d_model = std::atoll(v.c_str());
    else if (k == "--heads")
      a.heads = std::atoll(v.c_str());
    else if (k == "--steps")
      a.steps = std::atoll(v.c_str());
    else if (k == "--pattern")
      a.pattern = v;
    else if (k == "--recompute")
      a.recompute = v != "0";
    else {
      std::fprintf(stderr, "bench_ring: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int run(int argc, char** argv) {
  const Args args = parse(argc, argv);
  auto world = mpi_world();
  const int sp = world->size(), rank = world->rank();
  const SequenceLayout layout = SequenceLayout::zigzag(args.seq_len, sp, rank);
  const int64_t T = layout.local_len;

  ModelConfig cfg;
  cfg.pattern = args.pattern;
  cfg.d_model = args.d_model;
  cfg.heads = args.heads;
  cfg.resolve();
  Model model(cfg);
  model.init_weights(1);
  AdamWOptimizer optim(model.params(), OptimSection{});

  std::vector<int32_t> tokens, targets, positions;
  for (const Segment& c : layout.segments)
    for (int64_t t = c.global_start; t < c.global_start + c.length; ++t) {
      tokens.push_back(static_cast<int32_t>((t * 7919) % 256));
      targets.push_back(static_cast<int32_t>((t * 7919 + 7919) % 256));
      positions.push_back(static_cast<int32_t>(t));
    }
  Batch batch;
  batch.tokens = Tensor::wrap(tokens.data(), {T}, DType::I32);
  batch.targets = Tensor::wrap(targets.data(), {T}, DType::I32);
  batch.positions = Tensor::wrap(positions.data(), {T}, DType::I32);
  batch.seq = {&layout, 1, world.get()};
  Arena arena(Device::CPU, static_cast<size_t>(model.activation_bytes(1, layout, args.recompute)));

  TrainStep train(model, optim, *world, *world, arena, args.recompute, /*grad_clip=*/1.0);
  const StepInput input{{batch}, T};
  std::vector<double> times;
  double waited = 0;                                    // in ring waits, over the timed steps
  for (int64_t step = 0; step <= args.steps; ++step) {  // step 0 is the warm-up
    world->barrier();
    const double t0 = now(), w0 = world->wait_seconds();
    train.run(input, step, 1e-4);
    world->barrier();
    if (step > 0) {
      times.push_back(now() - t0);
      waited += world->wait_seconds() - w0;
    }
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];

  // One attention layer's ring traffic, measured on the layer's shapes (when there is one).
  const int64_t H = cfg.heads, Hkv = cfg.kv_heads, D = cfg.head_dim;
  int64_t b0 = 0, b1 = 0, b2 = 0;
  if (cfg.pattern.find('*') != std::string::npos) {
    Tensor q = bench::random_tensor({T, H, D}, 1), k = bench::random_tensor({T, Hkv, D}, 2),
           v = bench::random_tensor({T, Hkv, D}, 3), dout = bench::random_tensor({T, H, D}, 4);
    Tensor out = Tensor::empty(q.shape()), lse = Tensor::empty({T, H});
    Tensor dq = Tensor::empty(q.shape()), dk = Tensor::empty(k.shape()),
           dv = Tensor::empty(v.shape());
    b0 = world->bytes_sent();
    ring_attention_forward(batch.seq, q, k, v, out, lse, arena);
    b1 = world->bytes_sent();
    ring_attention_backward(batch.seq, q, k, v, out, dout, lse, dq, dk, dv, arena);
    b2 = world->bytes_sent();
  }
  const double kv_bytes = 2.0 * T * Hkv * D * 4;
  const double analytic_fwd = b2 > 0 ? (sp - 1) * kv_bytes : 0;
  const double analytic_bwd = b2 > 0 && sp > 1 ? (2 * sp - 1) * kv_bytes : 0;

  // One GLA layer's state passing (a GLR of the GLA shape), measured the same way.
  double sp_fwd = 0, sp_bwd = 0, sp_fwd_analytic = 0, sp_bwd_analytic = 0;
  if (cfg.pattern.find('G') != std::string::npos) {
    const int64_t GH = cfg.gla_heads, gk = cfg.gla_key_dim() / GH, gv = cfg.gla_value_dim() / GH;
    Tensor gq = bench::random_tensor({T, GH, gk}, 5), gkk = bench::random_tensor({T, GH, gk}, 6),
           gvv = bench::random_tensor({T, GH, gv}, 7), gdo = bench::random_tensor({T, GH, gv}, 8);
    Tensor gg = Tensor::empty({T, GH, gk}), go = Tensor::empty({T, GH, gv});
    ops::fill(gg, -0.05f);
    Tensor dgq = Tensor::empty(gq.shape()), dgk = Tensor::empty(gkk.shape()),
           dgv = Tensor::empty(gvv.shape()), dgg = Tensor::empty(gg.shape());
    GlrSaved saved;
    const Arena::Mark mark = arena.mark();
    const int64_t c0 = world->bytes_sent();
    glr_sequences_forward(batch.seq, gq, gkk, gvv, gg, 0.125f, cfg.glr_chunk, go, saved, arena);
    const int64_t c1 = world->bytes_sent();
    glr_sequences_backward(batch.seq, gq, gkk, gvv, gg, 0.125f, cfg.glr_chunk, gdo, saved, dgq, dgk,
                           dgv, dgg, arena);
    sp_fwd = static_cast<double>(c1 - c0);
    sp_bwd = static_cast<double>(world->bytes_sent() - c1);
    arena.release(mark);
    // Two units per rank, each (S_loc, Gamma) forward and dS backward, to the sp - 1 others.
    sp_fwd_analytic = (sp - 1) * 2.0 * GH * (gk * gv + gk) * 4;
    sp_bwd_analytic = (sp - 1) * 2.0 * GH * gk * gv * 4;
  }

  double peaks[3] = {static_cast<double>(arena.peak()) / 1048576.0, peak_rss_mib(),
                     waited / static_cast<double>(times.size())};
  world->allreduce_max(peaks, 3, "allreduce(peaks)");
  if (rank == 0) {
    std::printf(
        "L %lld | sp %d | threads/rank %d | step %.3f s (median of %zu), in ring waits %.3f s | "
        "%.0f tok/s | "
        "arena peak/rank %.1f MiB | RSS peak/rank %.1f MiB | bytes/rank/attn layer: fwd %.0f "
        "(analytic %.0f) bwd %.0f (analytic %.0f)\n",
        static_cast<long long>(args.seq_len), sp, cpu_threads(), median, times.size(), peaks[2],
        static_cast<double>(args.seq_len) / median, peaks[0], peaks[1],
        static_cast<double>(b1 - b0), analytic_fwd, static_cast<double>(b2 - b1), analytic_bwd);
    if (cfg.pattern.find('G') != std::string::npos)
      std::printf(
          "   GLA state passing bytes/rank/layer: fwd %.0f (analytic %.0f) bwd %.0f (analytic "
          "%.0f)\n",
          sp_fwd, sp_fwd_analytic, sp_bwd, sp_bwd_analytic);
  }
  return 0;
}

}  // namespace
}  // namespace rt

int main(int argc, char** argv) { return rt::run(argc, argv); }
