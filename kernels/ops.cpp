// Shape checks and device dispatch for kernels/ops.h. The CPU kernels live in kernels/cpu/,
// the CUDA kernels in kernels/cuda/, under the same names and arguments: RT_RUN picks one.
#include "kernels/ops.h"

#include <cmath>

#include "kernels/cpu/cpu_ops.h"
#if RINGTRAIN_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#define RT_RUN(device, fn, ...) \
  ((device) == Device::CUDA ? cuda::fn(__VA_ARGS__) : cpu::fn(__VA_ARGS__))
#else
// A CPU-only build cannot hold a CUDA tensor (Tensor::empty refuses), so cpu:: is the only case.
#define RT_RUN(device, fn, ...) ((void)(device), cpu::fn(__VA_ARGS__))
#endif

namespace rt::ops {

namespace {

// Every tensor handed to an op sits on one device; this returns it.
template <class... Ts>
Device device_of(const char* op, const Tensor& first, const Ts&... rest) {
  Device d = first.device();
  for (const Tensor* t : std::initializer_list<const Tensor*>{&rest...})
    RT_CHECK(!t->defined() || t->device() == d, op, ": tensors on different devices");
  return d;
}

void expect(const char* op, const char* name, const Tensor& t, Shape shape,
            DType dtype = DType::F32) {
  RT_CHECK(t.defined(), op, ": ", name, " is undefined");
  RT_CHECK(t.shape() == shape, op, ": ", name, " has shape ", t.shape().str(), ", expected ",
           shape.str());
  RT_CHECK(t.dtype() == dtype, op, ": ", name, " is ", dtype_name(t.dtype()), ", expected ",
           dtype_name(dtype));
}

float* optional_f32(const char* op, const char* name, const Tensor& t, Shape shape) {
  if (!t.defined()) return nullptr;
  expect(op, name, t, shape);
  return t.f32();
}

void expect_f32(const char* op, const char* name, const Tensor& t) {
  RT_CHECK(t.defined() && t.dtype() == DType::F32, op, ": ", name, " must be a defined f32 tensor");
}

}  // namespace

void fill(const Tensor& x, float value) {
  const Device dev = device_of("fill", x);
  expect_f32("fill", "x", x);
  RT_RUN(dev, fill, x.f32(), x.numel(), value);
}

void add(const Tensor& out, const Tensor& a, const Tensor& b) {
  const Device dev = device_of("add", out, a, b);
  expect("add", "a", a, out.shape());
  expect("add", "b", b, out.shape());
  RT_RUN(dev, add, out.f32(), a.f32(), b.f32(), out.numel());
}

void add_bf16(const Tensor& out, const Tensor& a, const Tensor& b) {
  const Device dev = device_of("add_bf16", out, a, b);
  expect("add_bf16", "out", out, a.shape(), DType::BF16);
  expect_f32("add_bf16", "a", a);
  expect("add_bf16", "b", b, a.shape(), DType::BF16);
  RT_RUN(dev, add_bf16, out.bf16(), a.f32(), b.bf16(), a.numel());
}

void accumulate(const Tensor& dst, const Tensor& src) {
  const Device dev = device_of("accumulate", dst, src);
  expect("accumulate", "src", src, dst.shape());
  RT_RUN(dev, accumulate, dst.f32(), src.f32(), dst.numel());
}

void scale(const Tensor& x, float factor) {
  const Device dev = device_of("scale", x);
  expect_f32("scale", "x", x);
  RT_RUN(dev, scale, x.f32(), x.numel(), factor);
}

double sum_squares(const Tensor& x) {
  const Device dev = device_of("sum_squares", x);
  expect_f32("sum_squares", "x", x);
  return RT_RUN(dev, sum_squares, x.f32(), x.numel());
}

bool all_finite(const Tensor& x) {
  const Device dev = device_of("all_finite", x);
  expect_f32("all_finite", "x", x);
  return RT_RUN(dev, all_finite, x.f32(), x.numel());
}

void matmul(const Tensor& out, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
            float alpha, float beta) {
  const Device dev = device_of("matmul", out, a, b);
  RT_CHECK(out.ndim() == 2 && a.ndim() == 2 && b.ndim() == 2, "matmul takes 2-d tensors");
  const int64_t m = trans_a ? a.size(1) : a.size(0), k = trans_a ? a.size(0) : a.size(1);
  const int64_t kb = trans_b ? b.size(1) : b.size(0), n = trans_b ? b.size(0) : b.size(1);
  RT_CHECK(k == kb && out.size(0) == m && out.size(1) == n, "matmul shapes ", a.shape().str(),
           trans_a ? "^T" : "", " x ", b.shape().str(), trans_b ? "^T" : "", " -> ",
           out.shape().str());
  RT_RUN(dev, gemm, trans_a, trans_b, m, n, k, alpha, a.f32(), a.size(1), b.f32(), b.size(1), beta,
         out.f32(), n);
}

void to_bf16(const Tensor& out, const Tensor& x) {
  const Device dev = device_of("to_bf16", out, x);
  expect_f32("to_bf16", "x", x);
  expect("to_bf16", "out", out, x.shape(), DType::BF16);
  RT_RUN(dev, to_bf16, out.bf16(), x.f32(), x.numel());
}

namespace {

// C = op(A) op(B) + beta C for the linear ops: an f32 GEMM, or, when the layer's weight is bf16,
// the bf16 GEMM, every operand in bf16 (f32 ones rounded to it).
void linear_gemm(Device dev, bool bf16, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                 const Tensor& a, const Tensor& b, float beta, const Tensor& c) {
  if (!bf16) {
    RT_RUN(dev, gemm, trans_a, trans_b, m, n, k, 1.0f, a.f32(), a.size(1), b.f32(), b.size(1), beta,
           c.f32(), c.size(1));
    return;
  }
  const GemmInput ga{a.data(), a.size(1), a.dtype() == DType::BF16};
  const GemmInput gb{b.data(), b.size(1), b.dtype() == DType::BF16};
  RT_RUN(dev, gemm_bf16, trans_a, trans_b, m, n, k, 1.0f, ga, gb, beta, c.f32(), c.size(1));
}

void expect_weight(const char* op, const Tensor& weight, Shape shape) {
  expect(op, "weight", weight, shape, weight.dtype() == DType::BF16 ? DType::BF16 : DType::F32);
}

}  // namespace

void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight) {
  const Device dev = device_of("linear_forward", out, inp, weight);
  const int64_t T = inp.size(0), C = inp.size(1), OC = weight.size(0);
  expect_weight("linear_forward", weight, {OC, C});
  expect("linear_forward", "inp", inp, {T, C});
  expect("linear_forward", "out", out, {T, OC});
  linear_gemm(dev, weight.dtype() == DType::BF16, false, true, T, OC, C, inp, weight, 0.0f, out);
}

void linear_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                     const Tensor& inp, const Tensor& weight, bool accumulate_dinp) {
  const Device dev = device_of("linear_backward", dout, inp, weight, dweight, dinp);
  const int64_t T = inp.size(0), C = inp.size(1), OC = weight.size(0);
  expect_weight("linear_backward", weight, {OC, C});
  expect("linear_backward", "inp", inp, {T, C});
  expect("linear_backward", "dweight", dweight, {OC, C});
  expect("linear_backward", "dout", dout, {T, OC});
  const bool bf16 = weight.dtype() == DType::BF16;  // dweight's f32 operands too go in bf16
  if (dinp.defined()) {
    expect("linear_backward", "dinp", dinp, {T, C});
    linear_gemm(dev, bf16, false, false, T, C, OC, dout, weight, accumulate_dinp ? 1.0f : 0.0f,
                dinp);
  }
  linear_gemm(dev, bf16, true, false, OC, C, T, dout, inp, 1.0f, dweight);
}

void embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& table) {
  const Device dev = device_of("embedding_forward", out, tokens, table);
  const int64_t T = tokens.size(0), V = table.size(0), C = table.size(1);
  expect("embedding_forward", "tokens", tokens, {T}, DType::I32);
  expect("embedding_forward", "out", out, {T, C});
  const int32_t* tok = tokens.i32();
  if (dev == Device::CPU)  // device tokens are not read back: they were checked on the host
    for (int64_t t = 0; t < T; ++t)
      RT_CHECK(tok[t] >= 0 && tok[t] < V, "token ", tok[t], " at ", t,
               " outside the vocabulary [0, ", V, ")");
  RT_RUN(dev, embedding_forward, out.f32(), tok, table.f32(), T, C);
}

void embedding_backward(const Tensor& dtable, const Tensor& tokens, const Tensor& dout) {
  const Device dev = device_of("embedding_backward", dtable, tokens, dout);
  const int64_t T = tokens.size(0), C = dtable.size(1);
  expect("embedding_backward", "tokens", tokens, {T}, DType::I32);
  expect("embedding_backward", "dout", dout, {T, C});
  RT_RUN(dev, embedding_backward, dtable.f32(), tokens.i32(), dout.f32(), T, C);
}

namespace {
Shape rstd_shape(int64_t T, int64_t groups) { return groups == 1 ? Shape{T} : Shape{T, groups}; }
}  // namespace

void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp, const Tensor& weight,
                     float eps, int64_t groups) {
  const Device dev = device_of("rmsnorm_forward", out, rstd, inp, weight);
  const int64_t T = inp.size(0), C = inp.size(1);
  RT_CHECK(groups >= 1 && C % groups == 0, "rmsnorm: ", C, " channels in ", groups, " groups");
  expect("rmsnorm_forward", "out", out, {T, C});
  expect("rmsnorm_forward", "rstd", rstd, rstd_shape(T, groups));
  expect("rmsnorm_forward", "weight", weight, {C});
  if (inp.dtype() == DType::BF16)
    RT_RUN(dev, rmsnorm_forward, out.f32(), rstd.f32(), static_cast<const uint16_t*>(inp.bf16()),
           weight.f32(), T, C, groups, eps);
  else
    RT_RUN(dev, rmsnorm_forward, out.f32(), rstd.f32(), static_cast<const float*>(inp.f32()),
           weight.f32(), T, C, groups, eps);
}

void rmsnorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                      const Tensor& inp, const Tensor& weight, const Tensor& rstd, int64_t groups) {
  const Device dev = device_of("rmsnorm_backward", dinp, dweight, dout, inp, weight, rstd);
  const int64_t T = inp.size(0), C = inp.size(1);
  RT_CHECK(groups >= 1 && C % groups == 0, "rmsnorm: ", C, " channels in ", groups, " groups");
  expect("rmsnorm_backward", "dinp", dinp, {T, C});
  expect("rmsnorm_backward", "dout", dout, {T, C});
  expect("rmsnorm_backward", "dweight", dweight, {C});
  expect("rmsnorm_backward", "weight", weight, {C});
  expect("rmsnorm_backward", "rstd", rstd, rstd_shape(T, groups));
  if (inp.dtype() == DType::BF16)
    RT_RUN(dev, rmsnorm_backward, dinp.f32(), dweight.f32(), dout.f32(),
           static_cast<const uint16_t*>(inp.bf16()), weight.f32(), rstd.f32(), T, C, groups);
  else
    RT_RUN(dev, rmsnorm_backward, dinp.f32(), dweight.f32(), dout.f32(),
           static_cast<const float*>(inp.f32()), weight.f32(), rstd.f32(), T, C, groups);
}

void silu_forward(const Tensor& out, const Tensor& inp) {
  const Device dev = device_of("silu_forward", out, inp);
  expect("silu_forward", "out", out, inp.shape());
  RT_RUN(dev, silu_forward, out.f32(), inp.f32(), inp.numel());
}

void silu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp) {
  const Device dev = device_of("silu_backward", dinp, dout, inp);
  expect("silu_backward", "dinp", dinp, inp.shape());
  expect("silu_backward", "dout", dout, inp.shape());
  RT_RUN(dev, silu_backward, dinp.f32(), dout.f32(), inp.f32(), inp.numel());
}

void swiglu_forward(const Tensor& out, const Tensor& gate_up) {
  const Device dev = device_of("swiglu_forward", out, gate_up);
  const int64_t T = gate_up.size(0), F = gate_up.size(1) / 2;
  RT_CHECK(gate_up.size(1) % 2 == 0, "swiglu: gate_up width must be even");
  expect("swiglu_forward", "out", out, {T, F});
  RT_RUN(dev, swiglu_forward, out.f32(), gate_up.f32(), T, F);
}

void swiglu_backward(const Tensor& dgate_up, const Tensor& dout, const Tensor& gate_up) {
  const Device dev = device_of("swiglu_backward", dgate_up, dout, gate_up);
  const int64_t T = gate_up.size(0), F = gate_up.size(1) / 2;
  expect("swiglu_backward", "dgate_up", dgate_up, gate_up.shape());
  expect("swiglu_backward", "dout", dout, {T, F});
  RT_RUN(dev, swiglu_backward, dgate_up.f32(), dout.f32(), gate_up.f32(), T, F);
}

void relu2_forward(const Tensor& out, const Tensor& inp) {
  const Device dev = device_of("relu2_forward", out, inp);
  expect("relu2_forward", "out", out, inp.shape());
  RT_RUN(dev, relu2_forward, out.f32(), inp.f32(), inp.numel());
}

void relu2_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp) {
  const Device dev = device_of("relu2_backward", dinp, dout, inp);
  expect("relu2_backward", "dinp", dinp, inp.shape());
  expect("relu2_backward", "dout", dout, inp.shape());
  RT_RUN(dev, relu2_backward, dinp.f32(), dout.f32(), inp.f32(), inp.numel());
}

void silu_gate_forward(const Tensor& out, const Tensor& a, const Tensor& gate) {
  const Device dev = device_of("silu_gate_forward", out, a, gate);
  expect("silu_gate_forward", "a", a, out.shape());
  expect("silu_gate_forward", "gate", gate, out.shape());
  RT_RUN(dev, silu_gate_forward, out.f32(), a.f32(), gate.f32(), out.numel());
}

void silu_gate_backward(const Tensor& da, const Tensor& dgate, const Tensor& dout, const Tensor& a,
                        const Tensor& gate) {
  const char* op = "silu_gate_backward";
  const Device dev = device_of(op, da, dgate, dout, a, gate);
  for (const Tensor* t : {&dgate, &dout, &a, &gate}) expect(op, "tensor", *t, da.shape());
  RT_RUN(dev, silu_gate_backward, da.f32(), dgate.f32(), dout.f32(), a.f32(), gate.f32(),
         da.numel());
}

void logsigmoid_forward(const Tensor& out, const Tensor& x, const Tensor& bias, float scale) {
  const Device dev = device_of("logsigmoid_forward", out, x, bias);
  RT_CHECK(x.ndim() == 2, "logsigmoid: x must be [T, C]");
  expect("logsigmoid_forward", "out", out, x.shape());
  expect("logsigmoid_forward", "bias", bias, {x.size(1)});
  RT_RUN(dev, logsigmoid_forward, out.f32(), x.f32(), bias.f32(), scale, x.size(0), x.size(1));
}

void add_bias_forward(const Tensor& out, const Tensor& bias) {
  const Device dev = device_of("add_bias_forward", out, bias);
  RT_CHECK(out.ndim() == 2, "add_bias: out must be [T, C]");
  expect("add_bias_forward", "bias", bias, {out.size(1)});
  RT_RUN(dev, add_bias_forward, out.f32(), bias.f32(), out.size(0), out.size(1));
}

void add_bias_backward(const Tensor& dbias, const Tensor& dout) {
  const Device dev = device_of("add_bias_backward", dbias, dout);
  RT_CHECK(dout.ndim() == 2, "add_bias: dout must be [T, C]");
  expect("add_bias_backward", "dbias", dbias, {dout.size(1)});
  RT_RUN(dev, add_bias_backward, dbias.f32(), dout.f32(), dout.size(0), dout.size(1));
}

void logsigmoid_backward(const Tensor& dx, const Tensor& dbias, const Tensor& dout, const Tensor& x,
                         const Tensor& bias, float scale) {
  const Device dev = device_of("logsigmoid_backward", dx, dbias, dout, x, bias);
  RT_CHECK(x.ndim() == 2, "logsigmoid: x must be [T, C]");
  expect("logsigmoid_backward", "dx", dx, x.shape());
  expect("logsigmoid_backward", "dout", dout, x.shape());
  expect("logsigmoid_backward", "bias", bias, {x.size(1)});
  expect("logsigmoid_backward", "dbias", dbias, {x.size(1)});
  RT_RUN(dev, logsigmoid_backward, dx.f32(), dbias.f32(), dout.f32(), x.f32(), bias.f32(), scale,
         x.size(0), x.size(1));
}

void conv1d_causal_forward(const Tensor& out, const Tensor& x, const Tensor& weight,
                           const Tensor& bias, const Tensor& halo) {
  const char* op = "conv1d_causal_forward";
  const Device dev = device_of(op, out, x, weight, bias, halo);
  RT_CHECK(x.ndim() == 2 && weight.ndim() == 2, op, ": x [T, C], weight [C, W]");
  const int64_t T = x.size(0), C = x.size(1), W = weight.size(1);
  expect(op, "out", out, {T, C});
  expect(op, "weight", weight, {C, W});
  RT_RUN(dev, conv1d_causal_forward, out.f32(), x.f32(), weight.f32(),
         optional_f32(op, "bias", bias, {C}), optional_f32(op, "halo", halo, {W - 1, C}), T, C, W);
}

void conv1d_causal_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                            const Tensor& dhalo, const Tensor& dout, const Tensor& x,
                            const Tensor& weight, const Tensor& halo) {
  const char* op = "conv1d_causal_backward";
  const Device dev = device_of(op, dx, dweight, dbias, dhalo, dout, x, weight, halo);
  RT_CHECK(x.ndim() == 2 && weight.ndim() == 2, op, ": x [T, C], weight [C, W]");
  const int64_t T = x.size(0), C = x.size(1), W = weight.size(1);
  expect(op, "dx", dx, {T, C});
  expect(op, "dout", dout, {T, C});
  expect(op, "weight", weight, {C, W});
  expect(op, "dweight", dweight, {C, W});
  RT_RUN(dev, conv1d_causal_backward, dx.f32(), dweight.f32(),
         optional_f32(op, "dbias", dbias, {C}), optional_f32(op, "dhalo", dhalo, {W - 1, C}),
         dout.f32(), x.f32(), weight.f32(), optional_f32(op, "halo", halo, {W - 1, C}), T, C, W);
}

void mamba_dt_forward(const Tensor& dt, const Tensor& g, const Tensor& dt_raw,
                      const Tensor& dt_bias, const Tensor& a_log) {
  const char* op = "mamba_dt_forward";
  const Device dev = device_of(op, dt, g, dt_raw, dt_bias, a_log);
  RT_CHECK(dt_raw.ndim() == 2, op, ": dt_raw must be [T, H]");
  const int64_t T = dt_raw.size(0), H = dt_raw.size(1);
  expect(op, "dt", dt, {T, H});
  expect(op, "g", g, {T, H});
  expect(op, "dt_bias", dt_bias, {H});
  expect(op, "a_log", a_log, {H});
  RT_RUN(dev, mamba_dt_forward, dt.f32(), g.f32(), dt_raw.f32(), dt_bias.f32(), a_log.f32(), T, H);
}

void mamba_dt_backward(const Tensor& ddt_raw, const Tensor& ddt_bias, const Tensor& da_log,
                       const Tensor& ddt, const Tensor& dg, const Tensor& dt_raw,
                       const Tensor& dt_bias, const Tensor& a_log) {
  const char* op = "mamba_dt_backward";
  const Device dev = device_of(op, ddt_raw, ddt_bias, da_log, ddt, dg, dt_raw, dt_bias, a_log);
  RT_CHECK(dt_raw.ndim() == 2, op, ": dt_raw must be [T, H]");
  const int64_t T = dt_raw.size(0), H = dt_raw.size(1);
  for (const Tensor* t : {&ddt_raw, &ddt, &dg}) expect(op, "[T, H] tensor", *t, {T, H});
  for (const Tensor* t : {&ddt_bias, &da_log, &dt_bias, &a_log}) expect(op, "[H] tensor", *t, {H});
  RT_RUN(dev, mamba_dt_backward, ddt_raw.f32(), ddt_bias.f32(), da_log.f32(), ddt.f32(), dg.f32(),
         dt_raw.f32(), dt_bias.f32(), a_log.f32(), T, H);
}

namespace {
void expect_heads(const char* op, const Tensor& x, const Tensor& per_head, bool per_token) {
  RT_CHECK(x.ndim() == 3, op, ": x must be [T, H, P], got ", x.shape().str());
  if (per_token)
    expect(op, "s", per_head, {x.size(0), x.size(1)});
  else
    expect(op, "d", per_head, {x.size(1)});
}
}  // namespace

void scale_heads_forward(const Tensor& out, const Tensor& x, const Tensor& s) {
  const Device dev = device_of("scale_heads_forward", out, x, s);
  expect_heads("scale_heads_forward", x, s, true);
  expect("scale_heads_forward", "out", out, x.shape());
  RT_RUN(dev, scale_heads_forward, out.f32(), x.f32(), s.f32(), x.size(0), x.size(1), x.size(2));
}

void scale_heads_backward(const Tensor& dx, const Tensor& ds, const Tensor& dout, const Tensor& x,
                          const Tensor& s) {
  const Device dev = device_of("scale_heads_backward", dx, ds, dout, x, s);
  expect_heads("scale_heads_backward", x, s, true);
  expect("scale_heads_backward", "dx", dx, x.shape());
  expect("scale_heads_backward", "dout", dout, x.shape());
  expect("scale_heads_backward", "ds", ds, s.shape());
  RT_RUN(dev, scale_heads_backward, dx.f32(), ds.f32(), dout.f32(), x.f32(), s.f32(), x.size(0),
         x.size(1), x.size(2));
}

void skip_heads_forward(const Tensor& y, const Tensor& o, const Tensor& x, const Tensor& d) {
  const Device dev = device_of("skip_heads_forward", y, o, x, d);
  expect_heads("skip_heads_forward", x, d, false);
  expect("skip_heads_forward", "y", y, x.shape());
  expect("skip_heads_forward", "o", o, x.shape());
  RT_RUN(dev, skip_heads_forward, y.f32(), o.f32(), x.f32(), d.f32(), x.size(0), x.size(1),
         x.size(2));
}

void skip_heads_backward(const Tensor& dx, const Tensor& dd, const Tensor& dy, const Tensor& x,
                         const Tensor& d) {
  const Device dev = device_of("skip_heads_backward", dx, dd, dy, x, d);
  expect_heads("skip_heads_backward", x, d, false);
  expect("skip_heads_backward", "dx", dx, x.shape());
  expect("skip_heads_backward", "dy", dy, x.shape());
  expect("skip_heads_backward", "dd", dd, d.shape());
  RT_RUN(dev, skip_heads_backward, dx.f32(), dd.f32(), dy.f32(), x.f32(), d.f32(), x.size(0),
         x.size(1), x.size(2));
}

void rope_table(const Tensor& table, const Tensor& positions, const RopeFrequencies& freq) {
  const Device dev = device_of("rope_table", table, positions);
  const int64_t T = positions.size(0);
  RT_CHECK(table.ndim() == 3 && table.size(0) == T && table.size(2) == 2,
           "rope_table: table must be [T, D/2, 2], got ", table.shape().str());
  expect("rope_table", "positions", positions, {T}, DType::I32);
  RT_RUN(dev, rope_table, table.f32(), positions.i32(), T, table.size(1) * 2, freq);
}

namespace {
void rope(const char* op, const Tensor& x, const Tensor& table, bool inverse) {
  const Device dev = device_of(op, x, table);
  RT_CHECK(x.ndim() == 3, op, ": x must be [T, heads, D], got ", x.shape().str());
  const int64_t T = x.size(0), heads = x.size(1), D = x.size(2);
  RT_CHECK(D % 2 == 0, op, ": head dim must be even");
  expect(op, "table", table, {T, D / 2, 2});
  RT_RUN(dev, rope_rotate, x.f32(), table.f32(), T, heads, D, inverse);
}
}  // namespace

void rope_forward(const Tensor& x, const Tensor& table) { rope("rope_forward", x, table, false); }
void rope_backward(const Tensor& dx, const Tensor& table) {
  rope("rope_backward", dx, table, true);
}

namespace {
AttentionDims attention_dims(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  RT_CHECK(q.ndim() == 3 && k.ndim() == 3, op, ": q, k, v must be [T, heads, D]");
  AttentionDims d{q.size(0), k.size(0), q.size(1), k.size(1), q.size(2)};
  RT_CHECK(d.Hkv > 0 && d.H % d.Hkv == 0, op, ": ", d.H, " query heads are not a multiple of ",
           d.Hkv, " kv heads");
  expect(op, "k", k, {d.Tk, d.Hkv, d.D});
  expect(op, "v", v, {d.Tk, d.Hkv, d.D});
  expect(op, "q", q, {d.Tq, d.H, d.D});
  return d;
}
}  // namespace

BlockKind classify_block(int64_t q_pos0, int64_t q_len, int64_t k_pos0, int64_t k_len) {
  if (q_len == 0 || k_len == 0 || k_pos0 > q_pos0 + q_len - 1) return BlockKind::Skip;
  if (k_pos0 + k_len - 1 <= q_pos0) return BlockKind::Full;
  return BlockKind::Causal;
}

void attention_block_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                             const Tensor& v, int64_t q_pos0, int64_t k_pos0, Mask mask) {
  const Device dev = device_of("attention_block_forward", out, lse, q, k, v);
  auto d = attention_dims("attention_block_forward", q, k, v);
  expect("attention_block_forward", "out", out, q.shape());
  expect("attention_block_forward", "lse", lse, {d.Tq, d.H});
  RT_RUN(dev, attention_block_forward, out.f32(), lse.f32(), q.f32(), k.f32(), v.f32(), d, q_pos0,
         k_pos0, mask == Mask::Causal);
}

void attention_merge(const Tensor& out, const Tensor& lse, const Tensor& out_blk,
                     const Tensor& lse_blk) {
  const Device dev = device_of("attention_merge", out, lse, out_blk, lse_blk);
  RT_CHECK(out.ndim() == 3, "attention_merge: out must be [T, H, D]");
  expect("attention_merge", "out_blk", out_blk, out.shape());
  expect("attention_merge", "lse", lse, {out.size(0), out.size(1)});
  expect("attention_merge", "lse_blk", lse_blk, {out.size(0), out.size(1)});
  RT_RUN(dev, attention_merge, out.f32(), lse.f32(), out_blk.f32(), lse_blk.f32(), out.size(0),
         out.size(1), out.size(2));
}

void attention_backward_delta(const Tensor& delta, const Tensor& dout, const Tensor& out) {
  const Device dev = device_of("attention_backward_delta", delta, dout, out);
  RT_CHECK(out.ndim() == 3, "attention_backward_delta: out must be [T, H, D]");
  expect("attention_backward_delta", "dout", dout, out.shape());
  expect("attention_backward_delta", "delta", delta, {out.size(0), out.size(1)});
  RT_RUN(dev, attention_backward_delta, delta.f32(), dout.f32(), out.f32(), out.size(0),
         out.size(1), out.size(2));
}

void attention_block_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& q,
                              const Tensor& k, const Tensor& v, const Tensor& dout,
                              const Tensor& lse, const Tensor& delta, int64_t q_pos0,
                              int64_t k_pos0, Mask mask) {
  const char* op = "attention_block_backward";
  const Device dev = device_of(op, dq, dk, dv, q, k, v, dout, lse, delta);
  auto d = attention_dims(op, q, k, v);
  expect(op, "dq", dq, q.shape());
  expect(op, "dk", dk, k.shape());
  expect(op, "dv", dv, v.shape());
  expect(op, "dout", dout, q.shape());
  expect(op, "lse", lse, {d.Tq, d.H});
  expect(op, "delta", delta, {d.Tq, d.H});
  RT_RUN(dev, attention_block_backward, dq.f32(), dk.f32(), dv.f32(), q.f32(), k.f32(), v.f32(),
         dout.f32(), lse.f32(), delta.f32(), d, q_pos0, k_pos0, mask == Mask::Causal);
}

namespace {
GlrDims glr_dims(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                 float scale, int64_t chunk) {
  RT_CHECK(v.ndim() == 3, op, ": v must be [T, H, dv], got ", v.shape().str());
  const int64_t T = v.size(0), H = v.size(1), dv = v.size(2);
  const Tensor& qk = q.defined() ? q : k;
  RT_CHECK(qk.ndim() == 3 && qk.size(0) == T, op, ": q/k must be [T, Hg, dk], got ",
           qk.shape().str());
  const int64_t Hg = qk.size(1), dk = qk.size(2);
  RT_CHECK(Hg > 0 && H % Hg == 0, op, ": ", H, " heads are not a multiple of ", Hg, " q/k groups");
  if (q.defined()) expect(op, "q", q, {T, Hg, dk});
  if (k.defined()) expect(op, "k", k, {T, Hg, dk});
  const bool vector_decay = g.ndim() == 3;
  if (vector_decay) {
    expect(op, "g", g, {T, H, dk});
    RT_CHECK(Hg == H, op, ": a per-channel decay needs one q/k group per head");
  } else {
    expect(op, "g", g, {T, H});
  }
  RT_CHECK(chunk >= 1 && chunk <= 1024, op, ": chunk ", chunk, " outside 1..1024");
  return {T, H, Hg, dk, dv, vector_decay, chunk, scale};
}

int64_t glr_chunks(const GlrDims& d) { return (d.T + d.chunk - 1) / d.chunk; }

}  // namespace

void glr_forward(const Tensor& o, const Tensor& h_final, const Tensor& states, const Tensor& q,
                 const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& h0, float scale,
                 int64_t chunk) {
  const char* op = "glr_forward";
  const Device dev = device_of(op, v, o, h_final, states, q, k, g, h0);
  RT_CHECK(k.defined() && (q.defined() || !o.defined()), op, ": needs k, and q for outputs");
  const auto d = glr_dims(op, q, k, v, g, scale, chunk);
  const Shape state{d.H, d.dk, d.dv};
  RT_RUN(dev, glr_forward, optional_f32(op, "o", o, {d.T, d.H, d.dv}),
         optional_f32(op, "h_final", h_final, state),
         optional_f32(op, "states", states, {glr_chunks(d) + 1, d.H, d.dk, d.dv}),
         q.defined() ? q.f32() : nullptr, k.f32(), v.f32(), g.f32(),
         optional_f32(op, "h0", h0, state), d);
}

void glr_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dg,
                  const Tensor& dh0, const Tensor& q, const Tensor& k, const Tensor& v,
                  const Tensor& g, const Tensor& states, const Tensor& dout, const Tensor& dh_final,
                  float scale, int64_t chunk) {
  const char* op = "glr_backward";
  const Device dev = device_of(op, v, dq, dk, dv, dg, dh0, q, k, g, states, dout, dh_final);
  const auto d = glr_dims(op, q, k, v, g, scale, chunk);
  const Shape state{d.H, d.dk, d.dv};
  expect(op, "dq", dq, q.shape());
  expect(op, "dk", dk, k.shape());
  expect(op, "dv", dv, v.shape());
  expect(op, "dg", dg, g.shape());
  expect(op, "dout", dout, v.shape());
  expect(op, "states", states, {glr_chunks(d) + 1, d.H, d.dk, d.dv});
  RT_RUN(dev, glr_backward, dq.f32(), dk.f32(), dv.f32(), dg.f32(),
         optional_f32(op, "dh0", dh0, state), q.f32(), k.f32(), v.f32(), g.f32(), states.f32(),
         dout.f32(), optional_f32(op, "dh_final", dh_final, state), d);
}

void glr_chunk_summary(const Tensor& s_loc, const Tensor& gamma, const Tensor& k, const Tensor& v,
                       const Tensor& g, int64_t chunk) {
  const char* op = "glr_chunk_summary";
  const Device dev = device_of(op, v, s_loc, gamma, k, g);
  const auto d = glr_dims(op, Tensor(), k, v, g, 1.0f, chunk);
  expect(op, "s_loc", s_loc, {d.H, d.dk, d.dv});
  if (d.vector_decay)
    expect(op, "gamma", gamma, {d.H, d.dk});
  else
    expect(op, "gamma", gamma, {d.H});
  RT_RUN(dev, glr_chunk_summary, s_loc.f32(), gamma.f32(), k.f32(), v.f32(), g.f32(), d);
}

void glr_state_gradient(const Tensor& ds, const Tensor& q, const Tensor& g, const Tensor& dout,
                        float scale, int64_t chunk) {
  const char* op = "glr_state_gradient";
  const Device dev = device_of(op, dout, ds, q, g);
  const auto d = glr_dims(op, q, Tensor(), dout, g, scale, chunk);
  expect(op, "ds", ds, {d.H, d.dk, d.dv});
  RT_RUN(dev, glr_state_gradient, ds.f32(), q.f32(), g.f32(), dout.f32(), d);
}

void glr_state_scan(const Tensor& out, const Tensor& s_loc, const Tensor& gamma, bool reverse) {
  const char* op = "glr_state_scan";
  const Device dev = device_of(op, out, s_loc, gamma);
  RT_CHECK(s_loc.ndim() == 4, op, ": s_loc must be [n, H, dk, dv], got ", s_loc.shape().str());
  const int64_t n = s_loc.size(0), H = s_loc.size(1), dk = s_loc.size(2), dv = s_loc.size(3);
  expect(op, "out", out, {n + 1, H, dk, dv});
  const bool vector_decay = gamma.ndim() == 3;
  if (vector_decay)
    expect(op, "gamma", gamma, {n, H, dk});
  else
    expect(op, "gamma", gamma, {n, H});
  RT_RUN(dev, glr_state_scan, out.f32(), s_loc.f32(), gamma.f32(), n, H, dk, dv, vector_decay,
         reverse);
}

double lm_head_loss(const Tensor& h, const Tensor& weight, const Tensor& targets, const Tensor& dh,
                    const Tensor& dweight, float grad_scale, const Tensor& token_losses) {
  const char* op = "lm_head_loss";
  const Device dev = device_of(op, h, weight, targets, dh, dweight, token_losses);
  const int64_t T = h.size(0), C = h.size(1), V = weight.size(0);
  expect(op, "weight", weight, {V, C});
  expect(op, "targets", targets, {T}, DType::I32);
  const int32_t* tg = targets.i32();
  if (dev == Device::CPU)  // as embedding_forward: device targets were checked on the host
    for (int64_t t = 0; t < T; ++t)
      RT_CHECK(tg[t] < V, "target ", tg[t], " at ", t, " outside the vocabulary [0, ", V, ")");
  RT_CHECK(dh.defined() == dweight.defined(), op, ": dh and dweight come together");
  if (dh.defined()) {
    expect(op, "dh", dh, {T, C});
    expect(op, "dweight", dweight, {V, C});
  }
  if (token_losses.defined()) expect(op, "token_losses", token_losses, {T});
  return RT_RUN(dev, lm_head_loss, h.f32(), weight.f32(), tg, dh.defined() ? dh.f32() : nullptr,
                dweight.defined() ? dweight.f32() : nullptr, grad_scale,
                token_losses.defined() ? token_losses.f32() : nullptr, T, C, V);
}

void lm_head_argmax(const Tensor& out, const Tensor& h, const Tensor& weight) {
  const Device dev = device_of("lm_head_argmax", out, h, weight);
  const int64_t T = h.size(0), C = h.size(1), V = weight.size(0);
  expect("lm_head_argmax", "weight", weight, {V, C});
  expect("lm_head_argmax", "out", out, {T}, DType::I32);
  RT_RUN(dev, lm_head_argmax, out.i32(), h.f32(), weight.f32(), T, C, V);
}

void adamw_update(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                  const AdamW& hp, bool decay) {
  const Device dev = device_of("adamw_update", param, grad, m, v);
  expect("adamw_update", "grad", grad, param.shape());
  expect("adamw_update", "m", m, param.shape());
  expect("adamw_update", "v", v, param.shape());
  RT_CHECK(hp.step >= 1, "adamw_update: step is 1-based");
  const double t = static_cast<double>(hp.step);
  const AdamWStep s{hp.lr,
                    hp.beta1,
                    hp.beta2,
                    hp.eps,
                    decay ? hp.lr * hp.weight_decay : 0.0f,
                    1.0f - static_cast<float>(std::pow(hp.beta1, t)),
                    1.0f - static_cast<float>(std::pow(hp.beta2, t))};
  RT_RUN(dev, adamw_update, param.f32(), grad.f32(), m.f32(), v.f32(), param.numel(), s);
}

}  // namespace rt::ops
