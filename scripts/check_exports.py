#!/usr/bin/env python3
"""Checks files written by `bitnet convert` with the reference tools (run by hand, not by CI).

  check_exports.py hf HF_DIR OUR_LOGITS.bin TOKENS      transformers' logits vs ours (from `bitnet logits`): KL, argmax
  check_exports.py gguf FILE.gguf                       gguf's reader: metadata, tensor types/shapes, dequantization
  check_exports.py generate HF_DIR PROMPT N             transformers' greedy continuation (its tokenizer.json, no BOS)

TOKENS is comma-separated; OUR_LOGITS.bin is float32 [tokens x vocab].
"""
import sys

import numpy as np


def check_hf(d, ours_path, tokens):
    import torch
    from transformers import AutoModelForCausalLM

    ids = [int(t) for t in tokens.split(",")]
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids]), use_cache=False).logits[0].double().numpy()
    ours = np.fromfile(ours_path, dtype="<f4").reshape(len(ids), -1).astype(np.float64)
    lp = ref - np.log(np.exp(ref - ref.max(-1, keepdims=True)).sum(-1, keepdims=True)) - ref.max(-1, keepdims=True)
    lq = ours - np.log(np.exp(ours - ours.max(-1, keepdims=True)).sum(-1, keepdims=True)) - ours.max(-1, keepdims=True)
    kl = (np.exp(lp) * (lp - lq)).sum(-1)
    print(f"transformers vs bitnet-swift: max KL per position {kl.max():.3e}, argmax equal at "
          f"{(ref.argmax(-1) == ours.argmax(-1)).sum()}/{len(ids)} positions")


def check_gguf(path):
    import gguf

    r = gguf.GGUFReader(path)
    for k, f in r.fields.items():
        if k.startswith("tokenizer.ggml.") and len(f.data) > 8:
            print(f"{k}: {len(f.data)} items")
        elif not k.startswith("GGUF."):
            v = f.contents() if hasattr(f, "contents") else f.parts[-1]
            print(f"{k}: {str(v)[:80]}")
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type)
        vals = np.unique(np.abs(deq[deq != 0])) if t.tensor_type.name.startswith("TQ") else []
        extra = f", {len(vals)} distinct |w|" if len(vals) else ""
        print(f"{t.name:28s} {t.tensor_type.name:6s} {list(t.shape)} finite={np.isfinite(deq).all()}{extra}")


def generate(d, prompt, n):
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    tok = Tokenizer.from_file(d + "/tokenizer.json")
    ids = tok.encode(prompt, add_special_tokens=False).ids
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=int(n), do_sample=False, eos_token_id=None, pad_token_id=0)
    print(tok.decode(out[0].tolist(), skip_special_tokens=False))


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "hf":
        check_hf(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        check_gguf(sys.argv[2])
