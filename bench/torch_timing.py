"""What the PyTorch baselines (attention_torch.py, glr_fla.py) share: the time of one call of a
GPU step, the mean of `reps` calls after `warmup` untimed ones, synchronised at both ends."""
import time

import torch


def seconds_per_call(step, reps=10, warmup=3):
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps
