#!/usr/bin/env python3
"""The baseline of bench_glr's GLA case on a GPU: fla's chunk_gla (flash-linear-attention's
Triton kernels, the fla-core package), forward + backward, one sequence of T tokens, 2 heads,
dk 64, dv 128, the decay fixed at -0.05 per step and channel as in bench_glr.cpp, in f32 (what
ringtrain's GLR kernels compute) and bf16. FLOPs per token as bench_glr.cpp counts them, with
its chunk of 64, so the TFLOP/s columns compare like for like.
    python3 bench/glr_fla.py [T ...]
fla is not installed on the GPU machines: scripts/gpu-check.sh installs the fla-core wheel that
scripts/gpu-deps.sh fetched (.whl/), when it is there.
"""
import sys

import torch
from fla.ops.gla import chunk_gla
from torch_timing import seconds_per_call

H, DK, DV, CHUNK = 2, 64, 128, 64


def flops_per_token():
    fwd = 4.0 * DK * DV + CHUNK * (DK + DV)
    bwd = 8.0 * DK * DV + CHUNK * (3.0 * DK + 2.0 * DV)
    return H * (fwd + bwd)


def time_fwd_bwd(T, dtype, reps=10):
    q, k = (torch.randn(1, T, H, DK, device="cuda", dtype=dtype, requires_grad=True) for _ in range(2))
    v = torch.randn(1, T, H, DV, device="cuda", dtype=dtype, requires_grad=True)
    g = torch.full((1, T, H, DK), -0.05, device="cuda", dtype=dtype, requires_grad=True)
    dout = torch.randn(1, T, H, DV, device="cuda", dtype=dtype)

    def step():
        o, _ = chunk_gla(q, k, v, g)
        o.backward(dout)

    return seconds_per_call(step, reps)


def main():
    lengths = [int(a) for a in sys.argv[1:]] or [1024, 4096, 16384, 65536]
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    print("T        f32 ms   f32 TFLOP/s   bf16 ms   bf16 TFLOP/s   (fla chunk_gla fwd+bwd, H=2, dk=64, dv=128)")
    for T in lengths:
        row = f"{T:<8d}"
        for dtype in (torch.float32, torch.bfloat16):
            try:
                s = time_fwd_bwd(T, dtype)
                row += f" {s * 1e3:8.3f} {flops_per_token() * T / s / 1e12:12.3f}  "
            except Exception as e:  # one dtype fla does not take must not hide the other
                row += f" {'n/a':>8} {'n/a':>12}  ({type(e).__name__}: {str(e)[:60]})"
        print(row)


if __name__ == "__main__":
    main()
