#!/usr/bin/env bash
# The Python side of the interoperability tests (tests/hf): a venv .venv-interop with
# transformers, safetensors, tokenizers, sentencepiece, h5py and torch from PyPI, made when
# missing.
# PyPI's torch for Linux is the CUDA build (about 5 GB with its nvidia-* wheels; 2 minutes
# here); the tests run it on the CPU. Versions are pinned so that a new release cannot change
# what the tests compare against. sentencepiece 0.1.98 is the wheel nearest Debian's
# libsentencepiece 0.1.97 that ringtrain links: 0.2.x breaks ties between equally scored
# unigram segmentations the other way ("###" as "#" "##", not "##" "#").
# Without network the venv cannot be made: a warning, and tests/hf/interop.sh skips, unless
# RINGTRAIN_REQUIRE_INTEROP=1 (CI) makes it an error.
set -uo pipefail
cd "$(dirname "$0")/.."
venv=${RINGTRAIN_INTEROP_VENV:-.venv-interop}
packages=(torch==2.15.0 transformers==5.25.0 safetensors==0.8.0 tokenizers==0.23.3
          sentencepiece==0.1.98 numpy==2.4.6 h5py==3.16.0)
if "$venv/bin/python" -c "import torch, transformers, safetensors, tokenizers, sentencepiece, h5py" 2>/dev/null; then
  exit 0
fi
echo "== making $venv (${packages[*]})"
if python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "${packages[@]}"; then
  exit 0
fi
echo "warning: could not make $venv: the Hugging Face interoperability tests will skip" >&2
[ "${RINGTRAIN_REQUIRE_INTEROP:-0}" = 1 ] && exit 1
exit 0
