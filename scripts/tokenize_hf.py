#!/usr/bin/env python3
"""Tokenise text with a Hugging Face tokenizer.json (the `tokenizers` library) into a token file
that `ringtrain data import --format tokens` reads: one document per input file (or per line of
a .jsonl file, its "text" field), each ended with the end-of-sequence token.

  scripts/tokenize_hf.py TOKENIZER.json --eos '</s>' --out TOKENS.npy FILE...
  ringtrain data import --format tokens --vocab-size V --eos-id E --out CORPUS.h5 TOKENS.npy

It prints the import command with V and E filled in. No C++ library for tokenizer.json is kept
up the way `tokenizers` itself is, so this script uses it rather than a reimplementation.
"""
import argparse
import json
import sys

import numpy as np
from tokenizers import Tokenizer


def documents(paths):
    for path in paths:
        if path.endswith((".jsonl", ".ndjson")):
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            yield json.loads(line)["text"]
                        except (ValueError, KeyError, TypeError) as e:
                            sys.exit(f"{path}:{n}: {e}; expected an object with a \"text\" string")
        else:
            with open(path, encoding="utf-8") as f:
                yield f.read()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tokenizer")
    p.add_argument("--eos", required=True, help="the end-of-sequence token, e.g. '</s>' or '<|endoftext|>'")
    p.add_argument("--out", required=True)
    p.add_argument("files", nargs="+")
    a = p.parse_args()
    tok = Tokenizer.from_file(a.tokenizer)
    # Special tokens written in a text ("</s>" in a document about tokenizers) are text: the
    # only <eos> of a document is the one that ends it (ringtrain splits documents there).
    tok.encode_special_tokens = True
    eos = tok.token_to_id(a.eos)
    if eos is None:
        sys.exit(f"{a.tokenizer}: no token {a.eos!r}; expected its end-of-sequence token")
    ids = []
    docs = 0
    for text in documents(a.files):
        if text:
            ids.extend(tok.encode(text, add_special_tokens=False).ids)
            ids.append(eos)
            docs += 1
    np.save(a.out, np.asarray(ids, dtype=np.uint32))
    vocab = tok.get_vocab_size(with_added_tokens=True)
    print(f"wrote {a.out}: {docs} documents, {len(ids)} tokens")
    print(f"ringtrain data import --format tokens --vocab-size {vocab} --eos-id {eos} "
          f"--out CORPUS.h5 {a.out}")


if __name__ == "__main__":
    main()
