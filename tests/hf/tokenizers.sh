#!/usr/bin/env bash
# Tokenizers against their own libraries (issue 15): a SentencePiece model and a byte-level BPE
# tokenizer.json, trained here on real text (this repository's sources and transformers' own,
# about 4 MB). `data import --tokenizer` (libsentencepiece) and scripts/tokenize_hf.py + `data
# import --format tokens` must give exactly the ids of the Python packages, and decoding them
# must give each text back; pre-tokenized .npy and llm.c .bin import; bad token files exit 2.
#   tokenizers.sh RINGTRAIN_BINARY
set -uo pipefail

bin=$(readlink -f "$1")
source "$(dirname "$0")/lib.sh"
need_python "sentencepiece, tokenizers, h5py, transformers"
enter_scratch tokenizers
ref() { "$py" "$here/tokenizer_ref.py" "$@"; }

# Real text: the repository's sources and documents, and transformers' Python sources.
site=$("$py" -c "import transformers, os; print(os.path.dirname(transformers.__file__))")
mkdir text
(cd "$repo" && git ls-files '*.cpp' '*.h' '*.md' '*.cu' '*.sh' '*.py' '*.yaml') |
  while read -r f; do cp "$repo/$f" "text/$(echo "$f" | tr / _)"; done
find "$site" -maxdepth 1 -name '*.py' | sort | head -40 | while read -r f; do cp "$f" "text/tf_$(basename "$f")"; done
files=(text/*)
mb=$(cat "${files[@]}" | wc -c)
[ "$mb" -gt 3000000 ] || fail "only $mb bytes of text"

ref train_spm spm "${files[@]}" || fail "sentencepiece training"
"$bin" data import --tokenizer spm.model --out spm.h5 "${files[@]}" >import.log 2>&1 || fail "import with spm.model: $(tail -2 import.log)"
ref check spm spm.model spm.h5 "${files[@]}" || fail "SentencePiece ids or round trip"

# Task documents in the model's tokens (data synth and eval --tokenizer): each of exactly the
# length asked for (2^k + 1 under pow2), ending in the model's <eos>, whose text (decoded by the
# Python package) holds the key twice; and eval of a model of that vocabulary reads it.
"$bin" data synth --task passkey --tokenizer spm.model --docs 12 --min-len 256 --max-len 2048 \
  --length-dist pow2 --questions 2 --out synth.h5 >synth.log 2>&1 || fail "data synth --tokenizer: $(tail -2 synth.log)"
"$py" - synth.h5 spm.model <<'PY' || fail "data synth --tokenizer: documents"
import re, sys
import h5py, numpy as np, sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
with h5py.File(sys.argv[1], "r") as f:
    tokens, offsets = f["tokens"][:].astype(np.int64), f["doc_offsets"][:]
    assert f.attrs["vocab_size"] == sp.get_piece_size(), f.attrs["vocab_size"]
for d in range(len(offsets) - 1):
    doc = tokens[offsets[d]:offsets[d + 1]].tolist()
    n = len(doc) - 1
    assert n & (n - 1) == 0 and 256 <= n <= 2048, f"document {d}: {len(doc)} tokens"
    assert doc[-1] == sp.eos_id() and sp.eos_id() not in doc[:-1], f"document {d}: <eos>"
    keys = re.findall(r"pass key is:(\d{5})\.", sp.decode(doc[:-1]))
    assert len(keys) >= 2 and len(set(keys)) == 1, f"document {d}: keys {keys}"
print(f"{len(offsets) - 1} documents of 2^k + 1 tokens, each with its key")
PY
cat >recipe.yaml <<YAML
run: {name: spm, out_dir: $work/run-spm, seed: 3}
model: {d_model: 32, heads: 2, pattern: "M*-", vocab_size: $("$py" -c "import sentencepiece as s; print(s.SentencePieceProcessor(model_file='spm.model').get_piece_size())")}
data: {corpus: $work/synth.h5, seq_len: 256}
train: {steps: 2, tokens_per_step: 512}
schedule: {warmup_steps: 1}
YAML
"$bin" train recipe.yaml >train.log 2>&1 || fail "a model of the SentencePiece vocabulary: $(tail -2 train.log)"
"$bin" eval run-spm/checkpoints/step-0000002.h5 --task passkey --lengths 300,1k --depths 0.5 \
  --samples 2 --tokenizer spm.model >eval.log 2>&1 || fail "eval --tokenizer: $(tail -2 eval.log)"
grep -Eq "expected [^,]*[0-9]{5}" eval.log || fail "eval --tokenizer: no key in $(cat eval.log)"

ref train_bpe tokenizer.json "${files[@]}" || fail "tokenizers training"
"$py" "$repo/scripts/tokenize_hf.py" tokenizer.json --eos '</s>' --out bpe.npy "${files[@]}" >tok.log || fail "tokenize_hf.py"
import=$(grep "^ringtrain data import" tok.log | sed "s|^ringtrain|$bin|; s|CORPUS.h5|bpe.h5|")
$import >import.log 2>&1 || fail "import of tokenize_hf.py's tokens: $(tail -2 import.log)"
ref check bpe tokenizer.json bpe.h5 "${files[@]}" || fail "tokenizer.json ids or round trip"

# llm.c's .bin (header, u16; <eos> 9 before each document) gives the same corpus as the .npy.
"$py" - <<'PY'
import numpy as np
docs = [[5, 6, 7], [8], [1, 2, 3, 4]]
flat = [t for d in docs for t in [9] + d]
np.save("a.npy", np.asarray([t for d in docs for t in d + [9]], dtype=np.int64))
header = np.zeros(256, dtype=np.int32); header[0], header[1], header[2] = 20240520, 1, len(flat)
open("a.bin", "wb").write(header.tobytes() + np.asarray(flat, dtype=np.uint16).tobytes())
np.asarray(flat, dtype=np.uint16).tofile("raw.bin")
np.save("big.npy", np.asarray([1, 2, 70000, 9], dtype=np.uint32))
PY
"$bin" data import --format tokens --vocab-size 10 --eos-id 9 --out npy.h5 a.npy >/dev/null || fail "npy import"
"$bin" data import --format tokens --vocab-size 10 --eos-id 9 --out bin.h5 a.bin >/dev/null || fail "llm.c .bin import"
"$bin" data import --format tokens --vocab-size 10 --eos-id 9 --token-dtype u16 --out raw.h5 raw.bin >/dev/null || fail "raw .bin import"
for f in npy bin raw; do
  "$bin" inspect $f.h5 >$f.txt || fail "inspect $f.h5"
done
# The same 11 tokens in 3 documents from each (llm.c's leading <eos> makes an empty document).
grep -q "^11 tokens | 3 documents | vocabulary 10 (pretokenized, eos 9)" npy.txt || fail "npy.h5: $(cat npy.txt)"
for f in bin raw; do
  [ "$(sed -n 2p $f.txt)" = "$(sed -n 2p npy.txt)" ] || fail "$f.h5 differs from npy.h5: $(sed -n 2p $f.txt)"
done
expect_user_error "token over the vocabulary" "big.npy: token 70000 at index 2 is outside the vocabulary \[0, 10)" \
  "$bin" data import --format tokens --vocab-size 10 --eos-id 9 --out x.h5 big.npy
expect_user_error "raw .bin without a dtype" "raw.bin: no llm.c header" \
  "$bin" data import --format tokens --vocab-size 10 --eos-id 9 --out x.h5 raw.bin
head -c 20 a.npy >cut.npy
expect_user_error "truncated .npy" "cut.npy: not a NumPy token array" \
  "$bin" data import --format tokens --vocab-size 10 --eos-id 9 --out x.h5 cut.npy
expect_user_error "not a SentencePiece model" "--tokenizer a.npy: not a SentencePiece model" \
  "$bin" data import --tokenizer a.npy --out x.h5 text/README.md

finish tokenizers
