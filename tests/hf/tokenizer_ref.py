"""The reference side of tests/hf/tokenizers.sh: the sentencepiece and tokenizers packages.

  tokenizer_ref.py train_spm MODEL_PREFIX FILE...      a SentencePiece model (lossless settings)
  tokenizer_ref.py train_bpe TOKENIZER.json FILE...    a byte-level BPE tokenizer.json
  tokenizer_ref.py check KIND MODEL CORPUS.h5 FILE...  the corpus's documents equal the
      library's ids of each file plus <eos>, and decoding them gives the file back
"""
import sys

import h5py
import numpy as np

SPECIALS = ["<unk>", "<s>", "</s>"]


def train_spm(prefix, *files):
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(
        input=",".join(files), model_prefix=prefix, vocab_size=3000, model_type="unigram",
        character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, max_sentence_length=1 << 16,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)


def train_bpe(path, *files):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train(list(files), trainers.BpeTrainer(vocab_size=4000, special_tokens=SPECIALS,
                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                               show_progress=False))
    tok.save(path)


def check(kind, model, corpus, *files):
    if kind == "spm":
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=model)
        encode, decode, eos = sp.encode, sp.decode, sp.eos_id()
    else:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(model)
        tok.encode_special_tokens = True  # as scripts/tokenize_hf.py
        encode = lambda t: tok.encode(t, add_special_tokens=False).ids
        decode = lambda ids: tok.decode(ids, skip_special_tokens=False)
        eos = tok.token_to_id("</s>")
    with h5py.File(corpus, "r") as f:
        tokens = f["tokens"][:].astype(np.int64)
        offsets = f["doc_offsets"][:]
    texts = [open(p, encoding="utf-8").read() for p in files]
    texts = [t for t in texts if t]
    if len(texts) != len(offsets) - 1:
        sys.exit(f"{len(offsets) - 1} documents in {corpus}, {len(texts)} files")
    total = 0
    for i, text in enumerate(texts):
        ours = tokens[offsets[i]:offsets[i + 1]].tolist()
        ref = list(encode(text)) + [eos]
        if ours != ref:
            at = next(k for k in range(min(len(ours), len(ref))) if ours[k] != ref[k]) \
                if any(a != b for a, b in zip(ours, ref)) else min(len(ours), len(ref))
            sys.exit(f"{files[i]}: ids differ at token {at}: ringtrain {ours[at:at + 5]}, "
                     f"reference {ref[at:at + 5]} ({len(ours)} vs {len(ref)} tokens)")
        # SentencePiece writes a space as U+2581 and decodes every U+2581 as a space: a text
        # holding that character itself (transformers' Llama tokenizer does) comes back with
        # spaces there, from the library as from ringtrain.
        restored = text.replace("\u2581", " ") if kind == "spm" else text
        if decode(ours[:-1]) != restored:
            sys.exit(f"{files[i]}: decoding ringtrain's ids does not give the text back")
        total += len(ours)
    print(f"{kind}: {len(texts)} documents, {sum(map(len, texts)) / 1e6:.1f} MB, {total} tokens: "
          f"ids equal the reference, decode restores every text"
          + (" (U+2581 as a space)" if kind == "spm" else ""))


if __name__ == "__main__":
    {"train_spm": train_spm, "train_bpe": train_bpe, "check": check}[sys.argv[1]](*sys.argv[2:])
