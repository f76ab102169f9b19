"""The transformers side of tests/hf/interop.sh: tiny random models saved with transformers'
own save_pretrained, and transformers' logits of a ringtrain export, compared with ringtrain's.

  hf_models.py make OUT_DIR                 one directory per model class below
  hf_models.py logits IDS DIR=OUT.npy ...   transformers' logits of the ids (f32 [T, V]) for
                                            each model directory
  hf_models.py generate IDS N DIR=OUT.txt ...  transformers' greedy generate of N tokens
  hf_models.py compare A.npy B.npy TOL      max |a - b| / max |b| <= TOL, else exit 1
torch and transformers load only where needed: compare runs in a fraction of a second.
"""
import sys

import numpy as np

# Each: (name, class, config keyword arguments). Small enough for a CI second, shaped so that a
# mistake shows: GQA, head_dim != hidden / heads, tied and untied embeddings.
MODELS = [
    ("llama_gqa", "LlamaForCausalLM", "LlamaConfig",
     dict(vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
          num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5)),
    ("llama_tied_headdim", "LlamaForCausalLM", "LlamaConfig",
     dict(vocab_size=280, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
          num_attention_heads=4, num_key_value_heads=1, head_dim=24, tie_word_embeddings=True,
          rope_theta=500000.0)),
] + [
    # Every RoPE scaling, its original context (32) well below the 96 positions compared.
    (f"llama_rope_{kind}", "LlamaForCausalLM", "LlamaConfig",
     dict(vocab_size=260, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=max_pos,
          rope_parameters=dict(rope_type=kind, rope_theta=10000.0, **extra)))
    for kind, max_pos, extra in [
        ("linear", 32, dict(factor=4.0)),
        ("dynamic", 32, dict(factor=2.0)),
        ("yarn", 128, dict(factor=4.0, original_max_position_embeddings=32)),
        ("llama3", 128, dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=32)),
    ]
] + [
    # Mamba-2: groups of heads sharing B and C, chunks shorter than the sequence.
    ("mamba2", "Mamba2ForCausalLM", "Mamba2Config",
     dict(vocab_size=260, hidden_size=64, num_hidden_layers=2, state_size=16, expand=2,
          head_dim=16, num_heads=8, n_groups=2, conv_kernel=4, chunk_size=16,
          tie_word_embeddings=False)),
    # NemotronH: Mamba-2, attention without RoPE and squared-ReLU MLPs in a pattern; 6 heads of
    # 16 make a d_inner (96) that is no multiple of the width (64).
    ("nemotron_h", "NemotronHForCausalLM", "NemotronHConfig",
     dict(vocab_size=260, hidden_size=64, hybrid_override_pattern="M*-M-*-",
          num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=96,
          ssm_state_size=16, mamba_num_heads=6, mamba_head_dim=16, n_groups=2, conv_kernel=4,
          chunk_size=16, tie_word_embeddings=False)),
    ("qwen2_bias", "Qwen2ForCausalLM", "Qwen2Config",
     dict(vocab_size=270, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
          num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6)),
]


def make(out_dir):
    import torch
    import transformers
    for i, (name, cls, cfg_cls, kwargs) in enumerate(MODELS):
        torch.manual_seed(100 + i)
        config = getattr(transformers, cfg_cls)(**kwargs)
        model = getattr(transformers, cls)(config).eval()
        # Norm weights away from 1 and biases away from 0, so that one read from the wrong
        # place shows.
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname:
                    p.copy_(1 + 0.5 * torch.randn_like(p))
                if pname.endswith("bias"):
                    p.copy_(0.5 * torch.randn_like(p))
        model.save_pretrained(f"{out_dir}/{name}")
        print(name)


def logits(ids, *pairs):
    import torch
    import transformers
    tokens = torch.tensor([[int(t) for t in ids.split(",")]])
    for pair in pairs:
        model_dir, out = pair.split("=")
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        with torch.no_grad():
            np.save(out, model.eval()(tokens).logits[0].numpy().astype(np.float32))


def generate(ids, n, *pairs):
    import torch
    import transformers
    tokens = torch.tensor([[int(t) for t in ids.split(",")]])
    for pair in pairs:
        model_dir, out = pair.split("=")
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        model.generation_config.eos_token_id = None  # N tokens, whatever they are
        with torch.no_grad():
            # An explicit mask: without one, a prompt token equal to pad_token_id is masked.
            new = model.eval().generate(tokens, attention_mask=torch.ones_like(tokens),
                                        max_new_tokens=int(n), do_sample=False,
                                        pad_token_id=0)[0, tokens.shape[1]:]
        with open(out, "w") as f:
            f.write(",".join(str(t) for t in new.tolist()) + "\n")


def compare(a, b, tol):
    x, y = np.load(a).astype(np.float64), np.load(b).astype(np.float64)
    if x.shape != y.shape:
        print(f"shapes differ: {x.shape} vs {y.shape}")
        sys.exit(1)
    err = np.abs(x - y).max() / np.abs(y).max()
    print(f"max |a - b| / max |b| = {err:.2e} (tolerance {tol})")
    sys.exit(0 if err <= float(tol) else 1)


if __name__ == "__main__":
    {"make": make, "logits": logits, "generate": generate,
     "compare": compare}[sys.argv[1]](*sys.argv[2:])
