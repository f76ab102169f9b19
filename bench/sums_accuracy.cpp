// The gradients that are sums over every token of a sequence (weights of the norms, biases, the
// conv's weights, Mamba-2's per-head scalars, the embedding table, linear weights), against the
// float64 references, at growing lengths: whether their error grows with T.
//   sums_accuracy [--lengths 4096,131072,1048576]
// Each line: the op, T and the relative RMS error (||got - ref|| / ||ref||) of its summed
// gradients, for two kinds of upstream gradient: dout ~ N(0, 1), zero-mean, whose sums are the
// smallest against their terms (~sqrt(T) terms' worth), and dout ~ N(1, 1), whose terms share a
// sign, so that a running f32 sum grows with T and with it every rounding step.
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "tests/reference/naive.h"
#include "tests/testing.h"

namespace rt {
namespace {

using ref::Vec;
using testing::random_tensor;
using testing::rel_rms_error;
using testing::to_vec;

float g_mean = 0.0f;

void report(const char* what, int T, double err) {
  std::printf("%-20s %4.1f %8d  %9.2e\n", what, g_mean, T, err);
  std::fflush(stdout);
}

// N(g_mean, 1): the upstream gradients.
Tensor gradient(Shape shape, uint64_t seed) {
  Tensor t = random_tensor(shape, seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] += g_mean;
  return t;
}

void run(int T) {
  const int C = 64, W = 4, H = 8, P = 16, V = 258;
  const Tensor dy = gradient({T, C}, 1), x = random_tensor({T, C}, 2);
  {
    const Tensor w = random_tensor({C}, 3), rstd = Tensor::empty({T}), y = Tensor::empty({T, C});
    ops::rmsnorm_forward(y, rstd, x, w, 1e-5f);
    Tensor dx = Tensor::zeros({T, C}), dw = Tensor::zeros({C});
    ops::rmsnorm_backward(dx, dw, dy, x, w, rstd);
    Vec dx_ref, dw_ref;
    ref::rmsnorm_backward(to_vec(dy), to_vec(x), to_vec(w), T, C, 1e-5, dx_ref, dw_ref);
    report("rmsnorm dweight", T, rel_rms_error(dw, dw_ref));
  }
  {
    const Tensor b = random_tensor({C}, 4);
    Tensor dx = Tensor::empty({T, C}), db = Tensor::zeros({C});
    ops::logsigmoid_backward(dx, db, dy, x, b, 1.0f / 16);
    Vec dx_ref, db_ref;
    ref::logsigmoid_backward(to_vec(dy), to_vec(x), to_vec(b), T, C, 1.0 / 16, dx_ref, db_ref);
    report("logsigmoid dbias", T, rel_rms_error(db, db_ref));
  }
  {
    const Tensor w = random_tensor({C, W}, 5);
    Tensor dx = Tensor::empty({T, C}), dw = Tensor::zeros({C, W}), db = Tensor::zeros({C});
    ops::conv1d_causal_backward(dx, dw, db, Tensor(), dy, x, w, Tensor());
    Vec dx_ref, dw_ref, db_ref, dh_ref;
    ref::conv1d_causal_backward(to_vec(dy), to_vec(x), to_vec(w), Vec(), T, C, W, dx_ref, dw_ref,
                                db_ref, dh_ref);
    report("conv1d dweight", T, rel_rms_error(dw, dw_ref));
    report("conv1d dbias", T, rel_rms_error(db, db_ref));
  }
  {
    const Tensor raw = random_tensor({T, H}, 6), bias = random_tensor({H}, 7),
                 a_log = random_tensor({H}, 8), ddt = gradient({T, H}, 9),
                 dg = gradient({T, H}, 10);
    Tensor draw = Tensor::empty({T, H}), dbias = Tensor::zeros({H}), dalog = Tensor::zeros({H});
    ops::mamba_dt_backward(draw, dbias, dalog, ddt, dg, raw, bias, a_log);
    Vec draw_ref, dbias_ref, dalog_ref;
    ref::mamba_dt_backward(to_vec(ddt), to_vec(dg), to_vec(raw), to_vec(bias), to_vec(a_log), T, H,
                           draw_ref, dbias_ref, dalog_ref);
    report("mamba_dt ddt_bias", T, rel_rms_error(dbias, dbias_ref));
    report("mamba_dt dA_log", T, rel_rms_error(dalog, dalog_ref));
  }
  {
    const Tensor xs = random_tensor({T, H, P}, 11), dys = gradient({T, H, P}, 12),
                 d = random_tensor({H}, 13);
    Tensor dx = Tensor::zeros({T, H, P}), dd = Tensor::zeros({H});
    ops::skip_heads_backward(dx, dd, dys, xs, d);
    const Vec xv = to_vec(xs), dyv = to_vec(dys);
    Vec dd_ref(H, 0.0);
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h)
        for (int p = 0; p < P; ++p)
          dd_ref[h] += dyv[(size_t(t) * H + h) * P + p] * xv[(size_t(t) * H + h) * P + p];
    report("skip_heads dD", T, rel_rms_error(dd, dd_ref));
  }
  {
    // A skewed token distribution: a third of the tokens are token 7 (as spaces are in text).
    std::vector<int32_t> ids = testing::random_ints(T, 0, V, 14);
    for (int t = 0; t < T; t += 3) ids[t] = 7;
    const Tensor tokens = testing::int_tensor(ids);
    Tensor dtable = Tensor::zeros({V, C});
    ops::embedding_backward(dtable, tokens, dy);
    report("embedding dtable", T,
           rel_rms_error(dtable, ref::embedding_backward(ids, to_vec(dy), V, C)));
  }
  {
    const int OC = 64;
    const Tensor w = random_tensor({OC, C}, 15), dout = gradient({T, OC}, 16);
    Tensor dx = Tensor::empty({T, C}), dw = Tensor::zeros({OC, C});
    ops::linear_backward(dx, dw, dout, x, w, false);
    Vec dx_ref, dw_ref;
    ref::linear_backward(to_vec(dout), to_vec(x), to_vec(w), T, C, OC, dx_ref, dw_ref);
    report("linear dweight", T, rel_rms_error(dw, dw_ref));
  }
}

}  // namespace
}  // namespace rt

int main(int argc, char** argv) {
  std::vector<int> lengths{4096, 131072, 1048576};
  if (argc == 3 && std::string(argv[1]) == "--lengths") {
    lengths.clear();
    std::stringstream ss(argv[2]);
    for (std::string item; std::getline(ss, item, ',');) lengths.push_back(std::stoi(item));
  } else if (argc != 1) {
    std::fprintf(stderr, "usage: sums_accuracy [--lengths 4096,131072,...]\n");
    return 2;
  }
  std::printf("%-20s %4s %8s  %9s\n", "summed gradient", "mean", "T", "rel. error");
  for (float mean : {0.0f, 1.0f}) {
    rt::g_mean = mean;
    for (int T : lengths) rt::run(T);
  }
  return 0;
}
