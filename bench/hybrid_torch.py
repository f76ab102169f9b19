#!/usr/bin/env python3
"""The PyTorch baseline of bench_hybrid_step: ringtrain's hybrid model (default pattern "M-G-*-")
written in plain PyTorch, CPU, float32, eager (no torch.compile, no custom kernels), trained for
a few steps on one sequence; prints the parameter count, the initial loss and tokens/s.

    python3 bench/hybrid_torch.py [--d-model 512] [--seq-len 4096] [--steps 3] [--threads 2]
                                  [--init-from PARAMS.bin] [--self-test] ...

The model, as model/*.cpp compute it (shapes by the same keys and defaults as model/config.h):
  h0 = embed[tokens]; per pattern symbol h += layer(RMSNorm(h) * w); loss = CE(RMSNorm(h) W^T)
  with W the embedding (tied, the default) or lm_head.weight; mean over the tokens.
  '*' attention: q, k, v = x Wq^T, x Wk^T, x Wv^T; RoPE (rotate-half, pairs (i, i + D/2), angle
      p * theta^(-2i/D)) on q and k; causal softmax attention by F.scaled_dot_product_attention
      (GQA: kv head h / (H / Hkv), expanded with repeat_interleave); out Wo^T.
  '-' SwiGLU: [gate | up] = x W_gate_up^T; (silu(gate) * up) W_down^T.
  'G' GLA: q, k = x Wq^T, x Wk^T [H, dk]; v = x Wv^T [H, dv]; gate = x Wg^T;
      g = logsigmoid((x W_gate1^T) W_gate2^T + b_gate) / 16 (low-rank gate of rank 16, per channel);
      o = GLR(q, k, v, g, scale dk^-1/2); o = RMSNorm over each head's dv (one weight [dv]);
      y = (o * silu(gate)) Wo^T.
  'M' Mamba-2: in_proj rows z [DI], x [DI], B [G N], C [G N], dt [NH] (mamba_ssm's order);
      x, B, C through a causal depthwise conv1d (width W, bias) and silu; dt = softplus(dt_raw +
      dt_bias); decay g = -exp(A_log) dt (one per head); o = GLR(q=C, k=B, v=x dt, g, scale 1)
      (heads of a group share B and C); y = o + D x; RMSNorm(y * silu(z)) over each of the G
      groups of DI/G channels, weight [DI]; out_proj.
  GLR: S_t = Diag(exp(g_t)) S_{t-1} + k_t v_t^T, o_t = scale S_t^T q_t, S_{-1} = 0.
  Init (without --init-from), as Model::init_weights: N(0, 0.02) matrices, the output
  projections (attention wo, w_down, GLA wo, Mamba out_proj) N(0, 0.02/sqrt(layers)); conv
  weight and bias U(+-1/sqrt(W)); dt log-uniform in [1e-3, 0.1] through the inverse softplus;
  A_log = log U(1, 16); D = 1; b_gate = 0; norm weights 1. With --init-from, the exact initial
  weights bench_hybrid_step --dump-params wrote (names, shapes and the weight-decay flags must
  match one to one: that is also the parameter-count check).

The recurrences in plain PyTorch ops, chunked (chunk = 64, ringtrain's glr_chunk), no Python loop
over tokens:
  Mamba-2 (scalar decay per head): the SSD chunked algorithm of mamba_ssm's ssd_minimal_discrete
      (Dao & Gu 2024, listing 1): within a chunk Y_diag = (C B^T * exp(segsum(g))) X; each chunk's
      state from zero, sum_l exp(cs_last - cs_l) B_l X_l^T; the states entering every chunk by one
      matrix product with exp(segsum) over the chunk totals; Y_off = (C S_in) * exp(cs). Its
      einsums are written as batched matmuls so that B and C stay shared per group.
  GLA (per-channel decay): the chunkwise form of the GLA paper (Yang et al. 2024, sec. 4) with
      fla's chunk_gla secondary chunking, all exponents <= 0: b = cumsum of g within a chunk;
      chunk states k exp(b_last - b) ^T v; the states entering each chunk by the same segsum
      product as above, per key channel; inter-chunk output (q exp(b)) S_in; intra-chunk: the
      chunk cut into sub-blocks of 16, the blocks below the diagonal by matmuls against a
      reference row (q exp(b - b_ref)) (k exp(b_ref - b))^T, the 16 x 16 diagonal blocks pairwise,
      sum_d q_id k_jd exp(b_id - b_jd) over j <= i.
  Backward is PyTorch autograd through these ops. --self-test checks both against a token-by-token
  loop (forward and gradients) in float64.

One training step = zero grads + forward + backward + global grad norm + clip to 1.0 + AdamW
(betas 0.9/0.95, eps 1e-8, weight decay 0.1 on the matrices only, as ringtrain's recipe
defaults; the fused CPU AdamW of torch by default), constant lr. Step 0 is a warm-up and not
timed; its loss is the initial loss. Data as bench_hybrid_step: tokens (t * 7919) % 256,
targets (t * 7919 + 13) % 256.
"""
import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

GATE_RANK = 16
GATE_NORMALIZER = 16.0


# ---- the chunked recurrences ---------------------------------------------------------------

def segsum(x):
    """x [..., L] -> [..., L, L]: out[i, j] = sum_{j < l <= i} x_l for j <= i, -inf above
    (mamba_ssm's stable segsum: a masked cumulative sum, no difference of large cumsums)."""
    L = x.size(-1)
    x = x.unsqueeze(-1).expand(*x.shape, L)  # [..., i, j] = x_i
    strict = torch.tril(torch.ones(L, L, dtype=torch.bool, device=x.device), -1)
    x = x.masked_fill(~strict, 0)
    s = torch.cumsum(x, dim=-2)
    lower = torch.tril(torch.ones(L, L, dtype=torch.bool, device=x.device), 0)
    return s.masked_fill(~lower, -math.inf)


def states_entering_chunks(s_loc, gamma):
    """s_loc [..., N, dk, dv] the chunks' own final states (from zero), gamma [..., N, dk] or
    [..., N] their total log decay. Returns the state entering each chunk [..., N, dk, dv]:
    S_n = sum_{m<n} exp(gamma_{m+1} + ... + gamma_{n-1}) s_loc[m] (ssd_minimal's step 3)."""
    per_channel = gamma.dim() == s_loc.dim() - 1
    N = s_loc.size(-3)
    # shifted: x'_0 = 0, x'_l = gamma_{l-1}; segsum(x')[n, m'] sums gamma_{m'} .. gamma_{n-1}
    shifted = F.pad(gamma[..., :-1, :] if per_channel else gamma[..., :-1],
                    (0, 0, 1, 0) if per_channel else (1, 0))
    prev = F.pad(s_loc[..., :-1, :, :], (0, 0, 0, 0, 1, 0))  # prev[m'] = s_loc[m' - 1], prev[0] = 0
    if per_channel:
        decay = torch.exp(segsum(shifted.transpose(-1, -2)))  # [..., dk, N, N]
        out = decay @ prev.transpose(-3, -2)  # [..., dk, N, dv]
        return out.transpose(-3, -2)
    decay = torch.exp(segsum(shifted))  # [..., N, N]
    dk, dv = s_loc.shape[-2:]
    return (decay @ prev.flatten(-2)).view(*prev.shape[:-3], N, dk, dv)


def gla_chunked(q, k, v, g, scale, chunk=64, sub=16):
    """GLR with per-channel decay. q, k, g [T, H, dk]; v [T, H, dv] -> o [T, H, dv]."""
    T, H, dk = q.shape
    dv = v.size(-1)
    pad = (-T) % chunk
    if pad:  # zero keys and values, no decay: rows after the last change nothing before them
        q, k, v, g = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, v, g))
    N, L = (T + pad) // chunk, chunk
    assert L % sub == 0
    # [H, N, L, d]
    q, k, v, g = (t.view(N, L, H, t.size(-1)).permute(2, 0, 1, 3) for t in (q, k, v, g))
    b = torch.cumsum(g, dim=2)
    b_last = b[:, :, -1:, :]
    s_loc = (k * torch.exp(b_last - b)).transpose(-1, -2) @ v  # [H, N, dk, dv]
    s_in = states_entering_chunks(s_loc, b_last.squeeze(2))
    o = (q * torch.exp(b)) @ s_in  # inter-chunk
    # intra-chunk, sub-blocks of `sub` rows: diagonal blocks pairwise (exponents b_i - b_j <= 0
    # for j <= i) ...
    ns = L // sub
    qs, ks, vs, bs = (t.reshape(H, N, ns, sub, t.size(-1)) for t in (q, k, v, b))
    tril = torch.tril(torch.ones(sub, sub, dtype=torch.bool))
    expo = (bs.unsqueeze(-2) - bs.unsqueeze(-3)).masked_fill(~tril.unsqueeze(-1), -math.inf)
    a_diag = (qs.unsqueeze(-2) * ks.unsqueeze(-3) * torch.exp(expo)).sum(-1)  # [H, N, ns, sub, sub]
    intra = [a_diag @ vs]  # [H, N, ns, sub, dv]
    # ... and the blocks left of the diagonal by one matmul per row block, against the reference
    # row r = the last row of the previous block: b_i - b_r <= 0 <= ... and b_r - b_j <= 0.
    rows = [intra[0][:, :, 0]]
    for i in range(1, ns):
        lo, hi = i * sub, (i + 1) * sub
        ref = b[:, :, lo - 1:lo, :]
        qi = q[:, :, lo:hi] * torch.exp(b[:, :, lo:hi] - ref)
        kj = k[:, :, :lo] * torch.exp(ref - b[:, :, :lo])
        rows.append(intra[0][:, :, i] + (qi @ kj.transpose(-1, -2)) @ v[:, :, :lo])
    o = scale * (o + torch.cat(rows, dim=2))
    return o.permute(1, 2, 0, 3).reshape(N * L, H, dv)[:T]


def ssd_chunked(x, g, B, C, chunk=64):
    """GLR with one decay per head (Mamba-2's SSD). x [T, NH, P] (already x dt), g [T, NH],
    B, C [T, G, N] (heads h of group h // (NH / G)) -> y [T, NH, P] = C_t^T S_t."""
    T, NH, P = x.shape
    G, N = B.shape[1:]
    hpg = NH // G
    pad = (-T) % chunk
    if pad:
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        g = F.pad(g, (0, 0, 0, pad))
    Nc, L = (T + pad) // chunk, chunk
    X = x.view(Nc, L, G, hpg, P).permute(2, 3, 0, 1, 4)  # [G, hpg, Nc, L, P]
    A = g.view(Nc, L, G, hpg).permute(2, 3, 0, 1)  # [G, hpg, Nc, L]
    Bc = B.view(Nc, L, G, N).permute(2, 0, 1, 3).unsqueeze(1)  # [G, 1, Nc, L, N]
    Cc = C.view(Nc, L, G, N).permute(2, 0, 1, 3).unsqueeze(1)
    cs = torch.cumsum(A, dim=-1)
    # 1. within each chunk: (C B^T * exp(segsum(A))) X
    y = ((Cc @ Bc.transpose(-1, -2)) * torch.exp(segsum(A))) @ X
    # 2. each chunk's state from zero: sum_l exp(cs_last - cs_l) B_l X_l^T   [G, hpg, Nc, N, P]
    s_loc = Bc.transpose(-1, -2) @ (X * torch.exp(cs[..., -1:] - cs).unsqueeze(-1))
    # 3. the state entering each chunk
    s_in = states_entering_chunks(s_loc, cs[..., -1])
    # 4. its contribution: (C S_in) exp(cs)
    y = y + (Cc @ s_in) * torch.exp(cs).unsqueeze(-1)
    return y.permute(2, 3, 0, 1, 4).reshape(Nc * L, NH, P)[:T]


def glr_reference(q, k, v, g, scale):
    """Token by token (for --self-test only). q, k [T, Hg, dk]; v [T, H, dv]; g [T, H, dk] or
    [T, H]."""
    T, H, dv = v.shape
    hpg = H // q.size(1)
    q, k = q.repeat_interleave(hpg, 1), k.repeat_interleave(hpg, 1)
    if g.dim() == 2:
        g = g.unsqueeze(-1).expand(T, H, q.size(-1))
    S = q.new_zeros(H, q.size(-1), dv)
    out = []
    for t in range(T):
        S = torch.exp(g[t]).unsqueeze(-1) * S + k[t].unsqueeze(-1) * v[t].unsqueeze(-2)
        out.append(scale * (q[t].unsqueeze(-2) @ S).squeeze(-2))
    return torch.stack(out)


def self_test():
    torch.manual_seed(0)
    worst = 0.0
    for T, chunk in ((200, 64), (128, 32), (64, 64)):
        H, dk, dv = 3, 8, 5
        q, k, v = (torch.randn(T, H, d, dtype=torch.float64, requires_grad=True) for d in (dk, dk, dv))
        # strong decays too (logsigmoid of large negatives), as training can reach
        g = (F.logsigmoid(3 * torch.randn(T, H, dk, dtype=torch.float64)) / 4).requires_grad_()
        dout = torch.randn(T, H, dv, dtype=torch.float64)
        outs = []
        for fn in (lambda: gla_chunked(q, k, v, g, 0.3, chunk), lambda: glr_reference(q, k, v, g, 0.3)):
            o = fn()
            grads = torch.autograd.grad((o * dout).sum(), (q, k, v, g))
            outs.append((o,) + grads)
        for a, b in zip(*outs):
            worst = max(worst, ((a - b).abs().max() / b.abs().max()).item())
        NH, G, N, P = 4, 2, 6, 5
        x = torch.randn(T, NH, P, dtype=torch.float64, requires_grad=True)
        B, C = (torch.randn(T, G, N, dtype=torch.float64, requires_grad=True) for _ in range(2))
        ga = (-torch.rand(T, NH, dtype=torch.float64) * 2).requires_grad_()
        dout = torch.randn(T, NH, P, dtype=torch.float64)
        outs = []
        for fn in (lambda: ssd_chunked(x, ga, B, C, chunk), lambda: glr_reference(C, B, x, ga, 1.0)):
            o = fn()
            grads = torch.autograd.grad((o * dout).sum(), (x, ga, B, C))
            outs.append((o,) + grads)
        for a, b in zip(*outs):
            worst = max(worst, ((a - b).abs().max() / b.abs().max()).item())
    ok = worst < 1e-9
    print(f"self-test: chunked GLA and SSD against the token loop (float64, outputs and gradients): "
          f"largest relative difference {worst:.2e} -> {'ok' if ok else 'FAILED'}")
    return ok


# ---- the model -----------------------------------------------------------------------------

class Config:
    def __init__(self, a):
        self.pattern = a.pattern
        self.vocab = a.vocab
        self.C = a.d_model
        self.heads = a.heads
        self.kv_heads = a.kv_heads or a.heads
        self.head_dim = a.d_model // a.heads
        self.mlp_hidden = (8 * a.d_model // 3 + 63) // 64 * 64
        self.gla_heads = a.gla_heads or a.heads
        self.gla_K = int(a.d_model * 0.5)  # gla_expand_k
        self.gla_V = int(a.d_model * 1.0)  # gla_expand_v
        self.m_state = a.mamba_d_state
        self.m_headdim = a.mamba_headdim
        self.m_DI = a.mamba_expand * a.d_model
        self.m_heads = self.m_DI // a.mamba_headdim
        self.m_groups = a.mamba_ngroups
        self.m_conv = 4
        self.chunk = a.chunk
        self.tied = a.untied == "0"
        self.eps = 1e-5
        self.rope_theta = 10000.0
        self.init_std = 0.02


def param_shapes(cfg):
    """(name, shape, decay, init) in ringtrain's registration order (model/model.cpp)."""
    C, V = cfg.C, cfg.vocab
    L = len(cfg.pattern)
    std, rstd = cfg.init_std, cfg.init_std / math.sqrt(L)
    out = [("embed.weight", (V, C), True, ("normal", std))]
    for i, s in enumerate(cfg.pattern):
        p = f"layers.{i}"
        out.append((f"{p}.norm.weight", (C,), False, ("const", 1.0)))
        if s == "*":
            H, Hkv, D = cfg.heads, cfg.kv_heads, cfg.head_dim
            out += [(f"{p}.attn.wq", (H * D, C), True, ("normal", std)),
                    (f"{p}.attn.wk", (Hkv * D, C), True, ("normal", std)),
                    (f"{p}.attn.wv", (Hkv * D, C), True, ("normal", std)),
                    (f"{p}.attn.wo", (C, H * D), True, ("normal", rstd))]
        elif s == "-":
            F_ = cfg.mlp_hidden
            out += [(f"{p}.mlp.w_gate_up", (2 * F_, C), True, ("normal", std)),
                    (f"{p}.mlp.w_down", (C, F_), True, ("normal", rstd))]
        elif s == "G":
            K, Vv, H = cfg.gla_K, cfg.gla_V, cfg.gla_heads
            out += [(f"{p}.gla.wq", (K, C), True, ("normal", std)),
                    (f"{p}.gla.wk", (K, C), True, ("normal", std)),
                    (f"{p}.gla.wv", (Vv, C), True, ("normal", std)),
                    (f"{p}.gla.wg", (Vv, C), True, ("normal", std)),
                    (f"{p}.gla.w_gate1", (GATE_RANK, C), True, ("normal", std)),
                    (f"{p}.gla.w_gate2", (K, GATE_RANK), True, ("normal", std)),
                    (f"{p}.gla.b_gate", (K,), False, ("const", 0.0)),
                    (f"{p}.gla.norm", (Vv // H,), False, ("const", 1.0)),
                    (f"{p}.gla.wo", (C, Vv), True, ("normal", rstd))]
        elif s == "M":
            DI, GN, NH, W = cfg.m_DI, cfg.m_groups * cfg.m_state, cfg.m_heads, cfg.m_conv
            bound = 1.0 / math.sqrt(W)
            out += [(f"{p}.mamba.in_proj", (2 * DI + 2 * GN + NH, C), True, ("normal", std)),
                    (f"{p}.mamba.conv_w", (DI + 2 * GN, W), True, ("uniform", -bound, bound)),
                    (f"{p}.mamba.conv_b", (DI + 2 * GN,), False, ("uniform", -bound, bound)),
                    (f"{p}.mamba.dt_bias", (NH,), False, ("dt_bias",)),
                    (f"{p}.mamba.A_log", (NH,), False, ("a_log",)),
                    (f"{p}.mamba.D", (NH,), False, ("const", 1.0)),
                    (f"{p}.mamba.norm", (DI,), False, ("const", 1.0)),
                    (f"{p}.mamba.out_proj", (C, DI), True, ("normal", rstd))]
        else:
            raise SystemExit(f"hybrid_torch.py: unknown pattern symbol {s!r}")
    out.append(("final_norm.weight", (C,), False, ("const", 1.0)))
    if not cfg.tied:
        out.append(("lm_head.weight", (V, C), True, ("normal", std)))
    return out


def init_value(shape, how, gen):
    t = torch.empty(shape)
    if how[0] == "normal":
        t.normal_(0.0, how[1], generator=gen)
    elif how[0] == "uniform":
        t.uniform_(how[1], how[2], generator=gen)
    elif how[0] == "const":
        t.fill_(how[1])
    elif how[0] == "dt_bias":  # dt log-uniform in [1e-3, 0.1], stored as its inverse softplus
        dt = torch.exp(torch.empty(shape).uniform_(math.log(1e-3), math.log(0.1), generator=gen))
        dt = dt.clamp(min=1e-4)
        t = dt + torch.log(-torch.expm1(-dt))
    elif how[0] == "a_log":
        t = torch.log(torch.empty(shape).uniform_(1.0, 16.0, generator=gen))
    return t


def read_ringtrain_params(path):
    """bench_hybrid_step --dump-params: {name: (decay, tensor)} in order."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.index(b"DATA\n")
    lines = data[:end].decode().splitlines()
    assert lines[0] == "RTPARAMS 1", f"{path}: not a parameter dump"
    count = int(lines[1])
    flat = torch.frombuffer(bytearray(data[end + 5:]), dtype=torch.float32)
    out, offset = {}, 0
    for line in lines[2:2 + count]:
        name, decay, ndim, *dims = line.split()
        shape = tuple(int(d) for d in dims[:int(ndim)])
        n = math.prod(shape)
        out[name] = (decay == "1", flat[offset:offset + n].view(shape).clone())
        offset += n
    assert offset == flat.numel(), f"{path}: {flat.numel() - offset} values left over"
    return out


class HybridModel:
    def __init__(self, cfg, seed=1, init_from=None):
        self.cfg = cfg
        self.params, self.decay = {}, {}
        gen = torch.Generator().manual_seed(seed)
        dumped = read_ringtrain_params(init_from) if init_from else None
        for name, shape, decay, how in param_shapes(cfg):
            if dumped is not None:
                if name not in dumped:
                    raise SystemExit(f"{init_from}: no parameter {name}")
                d_decay, value = dumped.pop(name)
                if tuple(value.shape) != shape or d_decay != decay:
                    raise SystemExit(f"{name}: ringtrain has {tuple(value.shape)} decay={d_decay}, "
                                     f"this model {shape} decay={decay}")
            else:
                value = init_value(shape, how, gen)
            self.params[name] = value.contiguous().requires_grad_()
            self.decay[name] = decay
        if dumped:
            raise SystemExit(f"{init_from}: parameters this model lacks: {sorted(dumped)}")
        self.rope = None

    def num_params(self):
        return sum(p.numel() for p in self.params.values())

    def rope_table(self, T):
        D = self.cfg.head_dim
        inv = torch.tensor([self.cfg.rope_theta ** (-2.0 * i / D) for i in range(D // 2)],
                           dtype=torch.float64)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]  # as ringtrain: in double
        return torch.cos(ang).float(), torch.sin(ang).float()

    @staticmethod
    def apply_rope(x, cos, sin):  # x [T, h, D]
        half = x.size(-1) // 2
        x1, x2 = x[..., :half], x[..., half:]
        c, s = cos[:, None, :], sin[:, None, :]
        return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)

    def attention(self, p, x):
        cfg, P = self.cfg, self.params
        T = x.size(0)
        H, Hkv, D = cfg.heads, cfg.kv_heads, cfg.head_dim
        q = F.linear(x, P[p + ".wq"]).view(T, H, D)
        k = F.linear(x, P[p + ".wk"]).view(T, Hkv, D)
        v = F.linear(x, P[p + ".wv"]).view(T, Hkv, D)
        cos, sin = self.rope
        q, k = self.apply_rope(q, cos, sin), self.apply_rope(k, cos, sin)
        if Hkv != H:  # GQA: query head h reads kv head h // (H / Hkv)
            k, v = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
        out = F.scaled_dot_product_attention(q.transpose(0, 1).unsqueeze(0), k.transpose(0, 1).unsqueeze(0),
                                             v.transpose(0, 1).unsqueeze(0), is_causal=True)
        return F.linear(out[0].transpose(0, 1).reshape(T, H * D), P[p + ".wo"])

    def mlp(self, p, x):
        P = self.params
        gate, up = F.linear(x, P[p + ".w_gate_up"]).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, P[p + ".w_down"])

    def gla(self, p, x):
        cfg, P = self.cfg, self.params
        T, H = x.size(0), cfg.gla_heads
        dk, dv = cfg.gla_K // H, cfg.gla_V // H
        q = F.linear(x, P[p + ".wq"]).view(T, H, dk)
        k = F.linear(x, P[p + ".wk"]).view(T, H, dk)
        v = F.linear(x, P[p + ".wv"]).view(T, H, dv)
        gate = F.linear(x, P[p + ".wg"])
        pre = F.linear(F.linear(x, P[p + ".w_gate1"]), P[p + ".w_gate2"])
        g = (F.logsigmoid(pre + P[p + ".b_gate"]) / GATE_NORMALIZER).view(T, H, dk)
        o = gla_chunked(q, k, v, g, dk ** -0.5, cfg.chunk)
        o = F.rms_norm(o, (dv,), P[p + ".norm"], cfg.eps).reshape(T, H * dv)
        return F.linear(o * F.silu(gate), P[p + ".wo"])

    def mamba2(self, p, x):
        cfg, P = self.cfg, self.params
        T = x.size(0)
        DI, G, N, NH, HD, W = cfg.m_DI, cfg.m_groups, cfg.m_state, cfg.m_heads, cfg.m_headdim, cfg.m_conv
        z, xbc, dt_raw = F.linear(x, P[p + ".in_proj"]).split([DI, DI + 2 * G * N, NH], dim=-1)
        conv_dim = DI + 2 * G * N
        xbc = F.conv1d(xbc.t().unsqueeze(0), P[p + ".conv_w"].unsqueeze(1), P[p + ".conv_b"],
                       padding=W - 1, groups=conv_dim)[0, :, :T].t()
        xs, B, C = F.silu(xbc).split([DI, G * N, G * N], dim=-1)
        xs = xs.reshape(T, NH, HD)
        dt = F.softplus(dt_raw + P[p + ".dt_bias"])
        g = -torch.exp(P[p + ".A_log"]) * dt
        y = ssd_chunked(xs * dt.unsqueeze(-1), g, B.reshape(T, G, N), C.reshape(T, G, N), cfg.chunk)
        y = y + P[p + ".D"].unsqueeze(-1) * xs
        gated = y.reshape(T, DI) * F.silu(z)
        normed = F.rms_norm(gated.view(T, G, DI // G), (DI // G,), None, cfg.eps).view(T, DI) * P[p + ".norm"]
        return F.linear(normed, P[p + ".out_proj"])

    def loss(self, tokens, targets):
        cfg, P = self.cfg, self.params
        T = tokens.size(0)
        if self.rope is None or self.rope[0].size(0) != T:
            self.rope = self.rope_table(T)
        h = F.embedding(tokens, P["embed.weight"])
        layer = {"*": ("attn", self.attention), "-": ("mlp", self.mlp), "G": ("gla", self.gla),
                 "M": ("mamba", self.mamba2)}
        for i, s in enumerate(cfg.pattern):
            kind, fn = layer[s]
            xn = F.rms_norm(h, (cfg.C,), P[f"layers.{i}.norm.weight"], cfg.eps)
            h = h + fn(f"layers.{i}.{kind}", xn)
        hn = F.rms_norm(h, (cfg.C,), P["final_norm.weight"], cfg.eps)
        head = P["embed.weight"] if cfg.tied else P["lm_head.weight"]
        return F.cross_entropy(F.linear(hn, head), targets)


def make_optimizer(model, lr, kind):
    groups = [{"params": [p for n, p in model.params.items() if model.decay[n]], "weight_decay": 0.1},
              {"params": [p for n, p in model.params.items() if not model.decay[n]], "weight_decay": 0.0}]
    kw = dict(lr=lr, betas=(0.9, 0.95), eps=1e-8)
    if kind == "fused":
        try:
            return torch.optim.AdamW(groups, fused=True, **kw), "fused"
        except (RuntimeError, TypeError):
            kind = "foreach"
    if kind == "foreach":
        return torch.optim.AdamW(groups, foreach=True, **kw), "foreach"
    return torch.optim.AdamW(groups, foreach=False, **kw), "for-loop"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pattern", default="M-G-*-")
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=0)
    ap.add_argument("--gla-heads", type=int, default=0)
    ap.add_argument("--mamba-d-state", type=int, default=64)
    ap.add_argument("--mamba-headdim", type=int, default=64)
    ap.add_argument("--mamba-expand", type=int, default=2)
    ap.add_argument("--mamba-ngroups", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=258)
    ap.add_argument("--untied", nargs="?", const="1", default="0",
                    help="an LM head of its own (1) instead of the embedding (0, the default)")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=3,
                    help="timed steps after one warm-up step (0: the initial loss only)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--adamw", choices=["fused", "foreach", "loop"], default="fused")
    ap.add_argument("--flush-denormal", action="store_true",
                    help="torch.set_flush_denormal(True) (off by default: ringtrain does not set FTZ/DAZ)")
    ap.add_argument("--init-from", help="parameter dump of bench_hybrid_step --dump-params")
    ap.add_argument("--self-test", action="store_true",
                    help="check the chunked recurrences against a token loop, then exit")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.flush_denormal:
        torch.set_flush_denormal(True)
    if a.self_test:
        sys.exit(0 if self_test() else 1)

    cfg = Config(a)
    model = HybridModel(cfg, a.seed, a.init_from)
    optim, optim_kind = make_optimizer(model, a.lr, a.adamw)
    t = torch.arange(a.seq_len, dtype=torch.int64)
    tokens, targets = (t * 7919) % 256, (t * 7919 + 13) % 256
    print(f"torch {torch.__version__}: pattern {cfg.pattern} d_model {cfg.C} heads {cfg.heads} "
          f"kv_heads {cfg.kv_heads} head_dim {cfg.head_dim} mlp_hidden {cfg.mlp_hidden} gla_heads "
          f"{cfg.gla_heads} (dk {cfg.gla_K // cfg.gla_heads} dv {cfg.gla_V // cfg.gla_heads}) mamba heads "
          f"{cfg.m_heads} x {cfg.m_headdim} d_state {cfg.m_state} groups {cfg.m_groups} conv {cfg.m_conv} "
          f"chunk {cfg.chunk} vocab {cfg.vocab} {'tied' if cfg.tied else 'untied'}, seq_len {a.seq_len}, "
          f"{torch.get_num_threads()} threads, AdamW {optim_kind}, "
          f"{'denormals flushed, ' if a.flush_denormal else ''}"
          f"init {'from ' + a.init_from if a.init_from else 'own (seed %d)' % a.seed}")
    print(f"torch: params {model.num_params()}", flush=True)
    params = list(model.params.values())
    times, loss0 = [], None
    for step in range(a.steps + 1):
        t0 = time.perf_counter()
        optim.zero_grad(set_to_none=True)
        loss = model.loss(tokens, targets)
        if a.steps == 0:
            loss0 = loss.item()
            print(f"torch: initial loss {loss0:.6f}")
            break
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        ms = (time.perf_counter() - t0) * 1e3
        if step == 0:
            loss0 = loss.item()
        else:
            times.append(ms)
        print(f"torch: step {step}{' (warm-up)' if step == 0 else ''} loss {loss.item():.6f} "
              f"gnorm {gnorm.item():.6f} {ms:.1f} ms", flush=True)
    if not times:
        print(f"RESULT impl=torch params={model.num_params()} loss0={loss0:.6f}")
        return
    median = statistics.median(times)
    print(f"RESULT impl=torch params={model.num_params()} loss0={loss0:.6f} tokens={a.seq_len} "
          f"tokens_per_s={1e3 * a.seq_len / median:.1f} ms_per_step={median:.1f} "
          f"mean_ms={statistics.mean(times):.1f} min_ms={min(times):.1f} steps={len(times)}")


if __name__ == "__main__":
    main()
