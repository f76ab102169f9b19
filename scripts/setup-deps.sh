#!/usr/bin/env bash
# Installs the Debian packages ringtrain builds and tests with, when they are missing.
# Idempotent and quiet when everything is there. Needs root (or sudo) to install.
set -euo pipefail

packages=(
  cmake g++ make pkg-config
  libopenmpi-dev openmpi-bin          # MPI between CPU ranks
  libhdf5-dev                         # corpora and checkpoints
  libyaml-cpp-dev                     # recipes
  nlohmann-json3-dev                  # JSONL import (SAX reader with a depth limit), config.json
  libsentencepiece-dev                # data import --tokenizer (SentencePiece models)
  libopenblas-openmp-dev              # CPU GEMM (the OpenMP build: no oversubscription inside omp regions)
  libgtest-dev libbenchmark-dev       # tests and benchmarks
  python3-matplotlib                  # scripts/plot_metrics.py
  clang-format                        # scripts/check-format.sh (CI fails on unformatted files)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/ringtrain-apt.log 2>&1; then
  $sudo apt-get update >>/tmp/ringtrain-apt.log 2>&1
  $sudo apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/ringtrain-apt.log 2>&1 || {
    echo "setup-deps: apt-get failed, see /tmp/ringtrain-apt.log" >&2
    tail -5 /tmp/ringtrain-apt.log >&2
    exit 1
  }
fi
