#!/usr/bin/env python3
"""Summarises two metrics.jsonl logs, dataset decomposition against concat-and-chunk:
per sequence length and over the run, wall time and attention GFLOP per step (step 1 left
out), and the wall-clock time (sum of step times up to that step) at which the validation loss
first reaches the target.

usage: dd_compare.py DD_METRICS.jsonl CC_METRICS.jsonl [TARGET_VAL_LOSS]
"""
import json
import sys


def load(path):
    steps, evals = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            (evals if "val_loss" in r else steps).append(r)
    return steps, evals


def summary(name, steps, evals, target):
    body = steps[1:]
    ms = sum(r["ms"] for r in body) / len(body)
    attn = sum(r["attention_gflop"] for r in body) / len(body)
    model = sum(r["model_gflop"] for r in body) / len(body)
    elapsed, clock = 0.0, {}
    for r in steps:
        elapsed += r["ms"] / 1000
        clock[r["step"]] = elapsed
    reached = next((e for e in evals if target is not None and e["val_loss"] <= target), None)
    when = f"{clock[reached['step']]:.1f} s (step {reached['step']})" if reached else "not reached"
    by_len = {}
    for r in body:
        by_len.setdefault(r["seq_len"], []).append(r)
    for length, rows in sorted(by_len.items()):
        print(f"  {name} seq_len {length:6d}: {len(rows):5d} steps, "
              f"{sum(r['ms'] for r in rows) / len(rows):8.1f} ms/step, attention "
              f"{sum(r['attention_gflop'] for r in rows) / len(rows):7.2f} of "
              f"{sum(r['model_gflop'] for r in rows) / len(rows):7.2f} GFLOP/step")
    print(f"{name}: {len(steps)} steps, {ms:.1f} ms/step, model {model:.1f} GFLOP/step of which "
          f"attention {attn:.2f}; final val loss {evals[-1]['val_loss'] if evals else float('nan'):.4f}; "
          f"val loss <= {target}: {when}")
    return clock.get(reached["step"]) if reached else None


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    target = float(sys.argv[3]) if len(sys.argv) == 4 else None
    dd = summary("decomposed", *load(sys.argv[1]), target)
    cc = summary("concat_chunk", *load(sys.argv[2]), target)
    if dd and cc:
        print(f"time to target: concat_chunk / decomposed = {cc / dd:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
