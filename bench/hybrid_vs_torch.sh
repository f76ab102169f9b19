#!/usr/bin/env bash
# Training tokens/s of the M-G-*- hybrid: ringtrain (bench/bench_hybrid_step.cpp) against the same
# model in PyTorch eager on the CPU (bench/hybrid_torch.py), side by side in one run.
#
#   bench/hybrid_vs_torch.sh [--rounds 3] [--steps 3] [--threads 2] [MODEL OPTIONS...]
#   bench/hybrid_vs_torch.sh --report DIR     # the table again, from the logs of an earlier run
#
# MODEL OPTIONS go to both programs unchanged: --d-model 512 --seq-len 4096 --heads 4
# --kv-heads 0 --gla-heads 0 --mamba-d-state 64 --mamba-headdim 64 --mamba-expand 2
# --mamba-ngroups 1 --chunk 64 --vocab 258 --untied 0|1 --lr 3e-4 --seed 1 --pattern M-G-*-
# (the defaults shown: d_model 512, one sequence of 4096 tokens per step, the recipe's other
# defaults, model/config.h).
#
# What it does:
#   1. builds bench_hybrid_step (scripts/build.sh, in $RINGTRAIN_BUILD_DIR or build/);
#   2. makes the venv .venv-bench/ with torch from PyPI when it is missing (the plain PyPI wheel
#      pulls the CUDA libraries too, ~3 GB; TORCH_PIP_ARGS="--index-url URL" names another index);
#   3. checks the chunked recurrences of hybrid_torch.py against a token loop (--self-test);
#   4. runs ringtrain, then PyTorch, `rounds` times alternately, each run one untimed warm-up step
#      and `steps` timed steps, both with OMP_NUM_THREADS=threads (torch.set_num_threads too).
#      The first ringtrain run writes its initial weights, and every PyTorch run starts from them,
#      so the two train the very same model on the same tokens (their per-step losses are printed);
#      one more PyTorch forward from its own init (same distributions, its own random numbers)
#      shows the initial loss does not hinge on sharing the weights;
#   5. prints one table: per round and the median over rounds of each program's median ms/step,
#      tokens/s and the ratio ringtrain / PyTorch, and the fastest single step of each (on a
#      machine shared with other work, the least disturbed figure); parameters and initial
#      losses of both.
# Logs stay in $OUT_DIR (default a temporary directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 steps=3 threads=2 report=
model_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --report) report=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) [ $# -ge 2 ] || { echo "hybrid_vs_torch.sh: $1 needs a value" >&2; exit 2; }
       model_args+=("$1" "$2"); shift 2 ;;
  esac
done

report() {
  .venv-bench/bin/python - "$1" <<'EOF'
import glob, re, statistics, sys
out = sys.argv[1]
rounds = len(glob.glob(f"{out}/torch.[0-9]*.log"))
threads = re.search(r"(\d+) threads", open(f"{out}/ringtrain.1.log").read()).group(1)

def result(path):
    text = open(path).read()
    line = [l for l in text.splitlines() if l.startswith("RESULT ")][-1]
    res = dict(kv.split("=", 1) for kv in line.split()[1:])
    res["losses"] = [float(x) for x in re.findall(r"step \d+.*? loss ([0-9.]+)", text)]
    res["step_ms"] = [float(x) for x in re.findall(r"step \d+ loss \S+ gnorm \S+ ([0-9.]+) ms", text)]
    res["config"] = text.splitlines()[0]
    return res

rt = [result(f"{out}/ringtrain.{r}.log") for r in range(1, rounds + 1)]
tc = [result(f"{out}/torch.{r}.log") for r in range(1, rounds + 1)]
own = result(f"{out}/torch.own-init.log")
print()
print(rt[0]["config"])
print(tc[0]["config"])
print()
print(f"| round | ringtrain ms/step | ringtrain tokens/s | PyTorch ms/step | PyTorch tokens/s | ringtrain / PyTorch |")
print(f"|---:|---:|---:|---:|---:|---:|")
for i, (a, b) in enumerate(zip(rt, tc), 1):
    print(f"| {i} | {float(a['ms_per_step']):.0f} | {float(a['tokens_per_s']):,.0f} | "
          f"{float(b['ms_per_step']):.0f} | {float(b['tokens_per_s']):,.0f} | "
          f"{float(a['tokens_per_s']) / float(b['tokens_per_s']):.2f}x |")
ms_a = statistics.median(float(a["ms_per_step"]) for a in rt)
ms_b = statistics.median(float(b["ms_per_step"]) for b in tc)
tok = int(rt[0]["tokens"])
print(f"| **median** | **{ms_a:.0f}** | **{tok * 1e3 / ms_a:,.0f}** | **{ms_b:.0f}** | "
      f"**{tok * 1e3 / ms_b:,.0f}** | **{ms_b / ms_a:.2f}x** |")
best_a = min(x for a in rt for x in a["step_ms"])
best_b = min(x for b in tc for x in b["step_ms"])
print(f"| best step | {best_a:.0f} | {tok * 1e3 / best_a:,.0f} | {best_b:.0f} | {tok * 1e3 / best_b:,.0f} | "
      f"{best_b / best_a:.2f}x |")
print()
pa, pb = int(rt[0]["params"]), int(tc[0]["params"])
la, lb, lo = float(rt[0]["loss0"]), float(tc[0]["loss0"]), float(own["loss0"])
print(f"parameters: ringtrain {pa:,}, PyTorch {pb:,}" + ("" if pa == pb else "  << DIFFERENT"))
print(f"initial loss: ringtrain {la:.6f}, PyTorch from ringtrain's weights {lb:.6f} "
      f"({100 * abs(lb - la) / la:.4f} %), PyTorch from its own init {lo:.6f} ({100 * abs(lo - la) / la:.2f} %)"
      + ("" if abs(lb - la) / la < 0.01 and abs(lo - la) / la < 0.01 else "  << MORE THAN 1 %"))
print(f"losses per step (warm-up first), round 1: ringtrain {' '.join(f'{x:.4f}' for x in rt[0]['losses'])}")
print(f"                                          PyTorch   {' '.join(f'{x:.4f}' for x in tc[0]['losses'])}")
import os
for extra in ("source.txt", "load.txt"):
    if os.path.exists(f"{out}/{extra}"):
        print(("load average (1, 5, 15 min; the benchmark itself keeps about its thread count busy, more means other work shared the cores):\n" if extra == "load.txt" else "")
              + open(f"{out}/{extra}").read().rstrip())
print(f"{len(rt)} rounds x {rt[0]['steps']} timed steps each after one warm-up, {threads} threads each; "
      f"per run the median step, then the median over rounds. Logs: {out}")
EOF
}
if [ -n "$report" ]; then report "$report"; exit 0; fi

build_dir=${RINGTRAIN_BUILD_DIR:-build}
out=${OUT_DIR:-$(mktemp -d /tmp/hybrid_vs_torch.XXXXXX)}
mkdir -p "$out"

{
  if git rev-parse --git-dir >/dev/null 2>&1; then
    echo "source: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- kernels model parallel trainer ||
      echo ', with uncommitted changes in:' $(git diff --name-only HEAD -- kernels model parallel trainer))"
  else
    echo "source: $(pwd), not a git checkout"
  fi
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores visible"
} >"$out/source.txt"
echo "== building bench_hybrid_step in $build_dir"
RINGTRAIN_BUILD_DIR=$build_dir scripts/build.sh bench_hybrid_step >"$out/build.log" 2>&1 ||
  { tail -30 "$out/build.log"; exit 1; }
bench="$build_dir/bench/bench_hybrid_step"

venv=.venv-bench
py="$venv/bin/python"
if ! { [ -x "$py" ] && "$py" -c 'import torch' 2>/dev/null; }; then
  echo "== making $venv with torch (pip)"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet torch ${TORCH_PIP_ARGS:-}
fi
OMP_NUM_THREADS=$threads "$py" bench/hybrid_torch.py --self-test --threads "$threads"

export OMP_NUM_THREADS=$threads
params="$out/params.bin"
for r in $(seq 1 "$rounds"); do
  echo "before round $r ringtrain: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/load.txt"
  echo "== round $r/$rounds: ringtrain"
  dump=()
  [ "$r" = 1 ] && dump=(--dump-params "$params")
  "$bench" --steps "$steps" "${dump[@]}" "${model_args[@]}" | tee "$out/ringtrain.$r.log"
  echo "before round $r torch:     $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/load.txt"
  echo "== round $r/$rounds: torch"
  "$py" bench/hybrid_torch.py --steps "$steps" --threads "$threads" --init-from "$params" \
    "${model_args[@]}" | tee "$out/torch.$r.log"
done
echo "after the last round:       $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/load.txt"
echo "== torch from its own init: the initial loss only"
"$py" bench/hybrid_torch.py --steps 0 --threads "$threads" "${model_args[@]}" | tee "$out/torch.own-init.log"
report "$out"
