#!/usr/bin/env bash
# Import, export and generation speed at 1.1B parameters (TinyLlama's shape, random weights),
# each beside transformers doing the same on the same machine:
#   import   ringtrain convert HF_DIR model.h5        vs  from_pretrained (bf16 file -> f32)
#   export   ringtrain convert model.h5 OUT --dtype bf16  vs  save_pretrained (bf16)
#   generate 32 greedy tokens after 64, K/V cache      vs  model.generate on the CPU
#   bench/convert_1b.sh [BUILD_DIR]     (needs .venv-interop: scripts/setup-interop.sh; ~20 GB disk)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$(readlink -f "${1:-$repo/build}/ringtrain")
py=$repo/.venv-interop/bin/python
work=${TMPDIR:-/tmp}/ringtrain-convert-1b
rm -rf "$work" && mkdir -p "$work" && cd "$work"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
export TQDM_DISABLE=1
"$py" - <<'PY'
import time, torch, transformers
cfg = transformers.LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                               num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4)
torch.manual_seed(0)
with torch.device("meta"):
    model = transformers.LlamaForCausalLM(cfg)
model = model.to_empty(device="cpu").to(torch.bfloat16)
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.02)
print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e9:.3f}B")
model.save_pretrained("hf")
t = time.time(); m = transformers.LlamaForCausalLM.from_pretrained("hf", dtype=torch.float32)
print(f"transformers from_pretrained (bf16 -> f32): {time.time() - t:.1f} s")
t = time.time(); m.to(torch.bfloat16).save_pretrained("hf-resaved")
print(f"transformers save_pretrained (bf16): {time.time() - t:.1f} s")
ids = torch.arange(64).unsqueeze(0) * 7 % 32000
m = m.to(torch.float32).eval()
m.generation_config.eos_token_id = None
t = time.time()
out = m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                 pad_token_id=0)  # the explicit mask: the prompt starts with token 0
dt = time.time() - t
print(f"transformers generate 32 after 64 (f32, CPU): {dt:.1f} s, {32 / dt:.2f} tokens/s")
open("hf.gen", "w").write(",".join(str(x) for x in out[0, 64:].tolist()) + "\n")
PY
t0=$(date +%s.%N); "$bin" convert hf model.h5 | head -1; t1=$(date +%s.%N)
echo "ringtrain convert HF -> checkpoint: $(echo "$t1 - $t0" | bc) s"
t0=$(date +%s.%N); "$bin" convert model.h5 out --dtype bf16; t1=$(date +%s.%N)
echo "ringtrain convert checkpoint -> HF (bf16): $(echo "$t1 - $t0" | bc) s"
prompt=$(seq 0 63 | awk '{print $1 * 7 % 32000}' | paste -sd,)
"$bin" generate model.h5 --tokens "$prompt" --max-new 32 | tee rt.gen
sed -n 's/^ids: //p' rt.gen | cmp -s - hf.gen && echo "greedy tokens equal transformers'" || echo "greedy tokens differ from transformers'"
du -sh hf model.h5 out
