#!/usr/bin/env bash
# The synthetic passkey corpora of recipes/passkey-*.yaml: 6000 training documents of 2^k + 1
# tokens, k = 8..12 (pow2: dataset decomposition keeps each document whole, key and question in
# one sequence), decomposed into buckets 2^8..2^12, and 100 validation documents of 2^10..2^12
# pairs, and the corpus of recipes/passkey-retrieval.yaml beside DIR:
#   bench/make_passkey_corpus.sh [DIR=runs/passkey]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-runs/passkey}
bin=${RINGTRAIN_BIN:-build/ringtrain}
mkdir -p "$dir"
"$bin" data synth --task passkey --out "$dir/train.h5" --docs 6000 --min-len 256 --max-len 4096 --length-dist pow2 --seed 1
"$bin" data synth --task passkey --out "$dir/val.h5" --docs 100 --min-len 1024 --max-len 4096 --length-dist pow2 --seed 2
"$bin" data decompose "$dir/train.h5" --min-len 256 --max-len 4096
# recipes/passkey-retrieval.yaml: 24000 documents asking their question 1 to 4 times.
q4="$(dirname "$dir")/passkey-q4"
mkdir -p "$q4"
"$bin" data synth --task passkey --out "$q4/train.h5" --docs 24000 --min-len 256 --max-len 4096 --length-dist pow2 --questions 4 --seed 3
"$bin" data decompose "$q4/train.h5" --min-len 256 --max-len 4096
