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
source "$(dirname "$0")/lib.sh"
need_python "transformers, safetensors, torch"
enter_scratch interop
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TQDM_DISABLE=1
hf() { "$py" "$here/hf_models.py" "$@"; }

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
# original context of 32 on the way; Mamba-2's chunks of 16 are crossed too): ringtrain's
# decoding with K/V caches and recurrent and conv states equals transformers'.
prompt=$(echo "$ids" | cut -d, -f1-28)
pairs=()
generating=$names
for name in $generating; do
  "$bin" generate "$name.h5" --tokens "$prompt" --max-new 32 >gen.log 2>&1 || fail "$name: generate: $(tail -2 gen.log)"
  sed -n 's/^ids: //p' gen.log >"$name.rt.gen"
  pairs+=("models/$name=$name.hf.gen")
done
hf generate "$prompt" 32 "${pairs[@]}" || fail "transformers' generate"
for name in $generating; do
  cmp -s "$name.rt.gen" "$name.hf.gen" || fail "$name: greedy generation differs: ringtrain $(cat "$name.rt.gen"), transformers $(cat "$name.hf.gen")"
  [ "$(tr ',' '\n' <"$name.rt.gen" | wc -l)" -eq 32 ] || fail "$name: not 32 tokens: $(cat "$name.rt.gen")"
done
echo "greedy generation equals transformers' for: $generating" | tr '\n' ' '
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

# recipes/extend-context.yaml as the README runs it (8 ranks, sp = 8), dry: the recipe, a
# 32000-token corpus decomposed up to 64K and the layout are valid (the weights are TinyLlama's
# size, 1.1B: the shape check of checkpoint.init_from is the one tested above).
"$py" -c "
import numpy as np
rng = np.random.default_rng(0)
docs = [t for n in [70000, 30000, 9000, 5000, 2000, 1500] for t in list(rng.integers(3, 32000, n)) + [2]]
np.save('long.npy', np.asarray(docs, dtype=np.uint16))"
"$bin" data import --format tokens --vocab-size 32000 --eos-id 2 --out long.h5 long.npy >/dev/null || fail "long corpus"
"$bin" data decompose long.h5 --min-len 1024 --max-len 65536 >/dev/null || fail "decompose to 64K"
mpirun --oversubscribe -np 8 "$bin" train "$repo/recipes/extend-context.yaml" --dry-run \
  --set data.corpus=long.h5 --set run.device=cpu --set run.precision=f32 \
  --set 'checkpoint.init_from=""' --set run.out_dir="$work/extend" >extend.log 2>&1 ||
  fail "extend-context.yaml dry run: $(grep -i error extend.log | head -2)"
grep -q "world 8 = dp 1 x sp 8" extend.log && grep -q "1100.048M parameters" extend.log &&
  grep -q "dry run: recipe, corpus and layout are valid" extend.log ||
  fail "extend-context.yaml plan: $(grep -E 'world|parameters|dry run' extend.log)"

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
cp -r models/nemotron_h bad_moe
sed -i '/"layers_block_type"/,/]/s/"mlp"/"moe"/' bad_moe/config.json
expect_user_error "NemotronH with experts" "mixture-of-experts layers ('E') are not supported" "$bin" convert bad_moe bad.h5
expect_user_error "token over the vocabulary" "token 300 is outside the vocabulary" "$bin" logits llama_gqa.h5 --tokens 1,300

finish interop
