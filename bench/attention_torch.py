#!/usr/bin/env python3
"""The baseline of bench_attention on a GPU: PyTorch's scaled_dot_product_attention, causal,
one sequence of L tokens, 8 heads of 64, forward + backward, in f32 (what ringtrain's kernels
compute today) and bf16 (FlashAttention's precision). FLOPs as in bench_attention.cpp:
3.5 x the causal forward's 4 L^2 D H / 2.
    python3 bench/attention_torch.py [L ...]
"""
import sys

import torch
import torch.nn.functional as F
from torch_timing import seconds_per_call

H, D = 8, 64


def time_fwd_bwd(L, dtype, reps=10):
    q, k, v = (torch.randn(1, H, L, D, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
    dout = torch.randn(1, H, L, D, device="cuda", dtype=dtype)

    def step():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.backward(dout)

    return seconds_per_call(step, reps)


def main():
    lengths = [int(a) for a in sys.argv[1:]] or [1024, 2048, 4096, 8192, 16384]
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    print("L        f32 ms   f32 TFLOP/s   bf16 ms   bf16 TFLOP/s   (causal SDPA fwd+bwd, H=8, D=64)")
    for L in lengths:
        flops = 3.5 * 4.0 * L * L * D * H / 2.0
        row = f"{L:<8d}"
        for dtype in (torch.float32, torch.bfloat16):
            s = time_fwd_bwd(L, dtype)
            row += f" {s * 1e3:8.3f} {flops / s / 1e12:12.2f}  "
        print(row)


if __name__ == "__main__":
    main()
