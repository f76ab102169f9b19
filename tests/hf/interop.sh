#!/usr/bin/env bash
# ringtrain against the real Hugging Face side (issue 15): transformers builds tiny random
# models and saves them; ringtrain converts them, its logits must equal transformers' to 1e-4
# (relative to the largest logit); a run starts from the import at sp = 2 for three steps; its
# checkpoint exports back, loads in transformers and gives ringtrain's logits; bad inputs exit 2.
#   interop.sh RINGTRAIN_BINARY
# Python: $RINGTRAIN_INTEROP_PYTHON or .venv-interop/bin/python (scripts/test.sh makes it, with
# transformers, safetensors and torch from PyPI). Without it the test skips (exit 77).
set -uo pipefail

bin=$(readlink -f "$1")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
py=${RINGTRAIN_INTEROP_PYTHON:-$repo/.venv-interop/bin/python}
if ! "$py" -c "import transformers, safetensors, torch" 2>/dev/null; then
  echo "SKIP: no Python with transformers, safetensors and torch at $py (scripts/test.sh installs them)"
  exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-interop.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TQDM_DISABLE=1

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
hf() { "$py" "$here/hf_models.py" "$@"; }
# Exit code 2 and one line on stderr naming $2.
expect_user_error() {
  local what=$1 pattern=$2
  shift 2
  "$@" >out.txt 2>err.txt
  local rc=$?
  [ $rc -eq 2 ] || fail "$what: exit $rc, expected 2: $(tail -2 err.txt)"
  grep -q -- "$pattern" err.txt || fail "$what: message lacks '$pattern': $(cat err.txt)"
  [ "$(wc -l <err.txt)" -eq 1 ] || fail "$what: more than one line: $(cat err.txt)"
}

hf make models >/dev/null || { echo "FAIL: transformers could not build the models"; exit 1; }
names=$(cd models && ls)
# 96 positions: three times the original context of the RoPE-scaled models.
ids=$(seq 5 7 670 | awk '{print $1 % 251}' | paste -sd,)
pairs=()
for name in $names; do
  "$bin" convert "models/$name" "$name.h5" >convert.log 2>&1 || fail "$name: import: $(tail -2 convert.log)"
  "$bin" logits "$name.h5" --tokens $ids --out "$name.rt.npy" >/dev/null || fail "$name: logits"
  pairs+=("models/$name=$name.hf.npy")
done
hf logits $ids "${pairs[@]}" || fail "transformers' logits of the models"
for name in $names; do
  hf compare "$name.rt.npy" "$name.hf.npy" 1e-4 >cmp.txt || fail "$name: imported logits differ from transformers': $(cat cmp.txt)"
  echo "$name imported: $(cat cmp.txt)"
done

# Greedy generation of 32 tokens after a prompt of 28 (the RoPE-scaled models cross their
# original context of 32 on the way): ringtrain's K/V-cached decoding equals transformers'.
prompt=$(echo "$ids" | cut -d, -f1-28)
pairs=()
for name in $names; do
  "$bin" generate "$name.h5" --tokens "$prompt" --max-new 32 >gen.log 2>&1 || fail "$name: generate: $(tail -2 gen.log)"
  sed -n 's/^ids: //p' gen.log >"$name.rt.gen"
  pairs+=("models/$name=$name.hf.gen")
done
hf generate "$prompt" 32 "${pairs[@]}" || fail "transformers' generate"
for name in $names; do
  cmp -s "$name.rt.gen" "$name.hf.gen" || fail "$name: greedy generation differs: ringtrain $(cat "$name.rt.gen"), transformers $(cat "$name.hf.gen")"
  [ "$(tr ',' '\n' <"$name.rt.gen" | wc -l)" -eq 32 ] || fail "$name: not 32 tokens: $(cat "$name.rt.gen")"
done
echo "greedy generation equals transformers' for: $names" | tr '\n' ' '
echo

# Three steps from each import at sp = 2, then back to transformers.
printf 'the quick brown fox %d jumps over the lazy dog\n' $(seq 1 400) >text.txt
"$bin" data import --out corpus.h5 text.txt >/dev/null || fail "data import"
pairs=()
for name in $names; do
  "$bin" inspect "$name.h5" | sed -n '/^model:/,/^[a-z]/p' | sed '$d' >model.yaml
  cat >recipe.yaml <<YAML
run: {name: interop, out_dir: $work/run-$name, seed: 3}
$(cat model.yaml)
data: {corpus: $work/corpus.h5, seq_len: 64}
optim: {lr: 0.001}
schedule: {warmup_steps: 1}
train: {steps: 3, tokens_per_step: 256}
checkpoint: {init_from: $work/$name.h5}
parallel: {sp: 2}
YAML
  mpirun --oversubscribe -np 2 "$bin" train recipe.yaml >train.log 2>&1 || fail "$name: 3 steps at sp = 2: $(tail -3 train.log)"
  grep -q "initialised the weights from $work/$name.h5" train.log || fail "$name: the run did not start from the import"
  trained=run-$name/checkpoints/step-0000003.h5
  "$bin" convert "$trained" "export-$name" >export.log 2>&1 || fail "$name: export: $(tail -2 export.log)"
  "$bin" logits "$trained" --tokens $ids --out "$name.trained.rt.npy" >/dev/null || fail "$name: trained logits"
  pairs+=("export-$name=$name.trained.hf.npy")
done
hf logits $ids "${pairs[@]}" || fail "transformers could not load the exports"
for name in $names; do
  hf compare "$name.trained.rt.npy" "$name.trained.hf.npy" 1e-4 >cmp.txt || fail "$name: exported logits differ: $(cat cmp.txt)"
  echo "$name trained 3 steps at sp = 2 and exported: $(cat cmp.txt)"
  hf compare "$name.trained.rt.npy" "$name.rt.npy" 1e-6 >/dev/null && fail "$name: three steps changed nothing"
done

# Bad inputs: exit 2, one line naming the file, the tensor or the key.
cp -r models/llama_gqa bad
st=bad/model.safetensors
head -c 1000 models/llama_gqa/model.safetensors >$st
expect_user_error "truncated safetensors" "model.safetensors: not a valid safetensors file: header length" "$bin" convert bad bad.h5
"$py" - "$work/models/llama_gqa/model.safetensors" "$work/$st" <<'PY'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
header["model.norm.weight"]["data_offsets"][1] += 10**9  # past the end of the file
text = json.dumps(header).encode()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + data[8 + n:])
PY
expect_user_error "offsets past the end" "tensor model.norm.weight: data_offsets .* lie outside the data" "$bin" convert bad bad.h5
cp models/llama_gqa/model.safetensors bad/
sed -i 's/"LlamaForCausalLM"/"FalconForCausalLM"/' bad/config.json
expect_user_error "unknown architecture" "config.json: architecture FalconForCausalLM is not supported" "$bin" convert bad bad.h5
cp models/llama_gqa/config.json bad/
sed -i 's/"intermediate_size": 160/"intermediate_size": 128/' bad/config.json
expect_user_error "shape mismatch" "tensor model.layers.0.mlp.gate_proj.weight has shape \[160, 64\]; config.json.s model needs \[128, 64\]" "$bin" convert bad bad.h5
cp models/llama_gqa/config.json bad/
sed -i 's/"hidden_act": "silu"/"hidden_act": "gelu"/' bad/config.json
expect_user_error "an activation ringtrain lacks" "config.json: hidden_act = \"gelu\" is not supported" "$bin" convert bad bad.h5
expect_user_error "token over the vocabulary" "token 300 is outside the vocabulary" "$bin" logits llama_gqa.h5 --tokens 1,300

[ $failures -eq 0 ] && echo "interop: ok" || echo "interop: $failures failure(s)"
[ $failures -eq 0 ]
