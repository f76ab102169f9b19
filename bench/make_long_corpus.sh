#!/usr/bin/env bash
# A corpus of more than 1M byte tokens from this repository's own text, repeated, for the
# million-token recipes and benchmarks: bench/make_long_corpus.sh OUT.h5 [COPIES=6]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/make_long_corpus.sh OUT.h5 [COPIES]}
copies=${2:-6}
mkdir -p "$(dirname "$out")"
files=$(git ls-files '*.md' '*.h' '*.cpp' '*.yaml' '*.sh' 'CMakeLists.txt')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq 1 "$copies"); do cat $files >"$tmp/copy$i.txt"; done
"${RINGTRAIN_BIN:-build/ringtrain}" data import --out "$out" "$tmp"/copy*.txt
