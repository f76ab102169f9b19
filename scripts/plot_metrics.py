#!/usr/bin/python3
"""Draws loss (and validation loss), learning rate and throughput from a ringtrain metrics.jsonl.

usage: plot_metrics.py METRICS.jsonl [OUT.png]    (default: next to the log, metrics.png)
Uses Debian's python3-matplotlib (/usr/bin/python3).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.join(os.path.dirname(path) or ".", "metrics.png")
    steps, val = [], []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as e:
                    print(f"error: {path}:{n}: not a JSON record ({e.msg})", file=sys.stderr)
                    return 2
                (val if "val_loss" in r else steps).append(r)
    except OSError as e:
        print(f"error: {path}: {e.strerror}", file=sys.stderr)
        return 2
    if not steps:
        print(f"error: {path}: no step records", file=sys.stderr)
        return 2

    x = [r["step"] for r in steps]
    fig, axes = plt.subplots(4, 1, figsize=(8, 11), sharex=True)
    axes[0].plot(x, [r["loss"] for r in steps], label="train")
    if val:
        axes[0].plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
    axes[0].set_ylabel("loss (nats/token)")
    axes[0].legend()
    axes[1].plot(x, [r["lr"] for r in steps])
    axes[1].set_ylabel("learning rate")
    # One axis per quantity: thousands of tokens/s and a percentage do not share a scale.
    axes[2].plot(x, [r["tokens_per_s"] / 1e3 for r in steps])
    axes[2].set_ylabel("k tokens/s")
    axes[3].plot(x, [100 * r["mfu"] for r in steps])
    axes[3].set_ylabel("MFU %")
    axes[3].set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(os.path.basename(os.path.dirname(os.path.abspath(path))))
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
