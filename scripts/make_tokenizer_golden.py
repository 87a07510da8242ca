#!/usr/bin/env python3
"""Writes Tests/BitNetTests/Fixtures/tokenizer/golden.json, the reference the Swift tokenizer tests check.

1. Byte-level BPE: loads Fixtures/tokenizer/tokenizer.json (made by our Swift trainer from corpus.txt
   at vocab 400; see ByteLevelBPETests.testFixtureTokenizerIsReproducible) with the Hugging Face
   `tokenizers` library and records, for each tricky string, the pre-token words and the ids it gives.
2. llama2.c: re-implements llama2.c's `encode` loop in plain Python (quadratic, as in run.c) over
   ../shared/data/stories260K/tok512.bin and records the ids for a few strings.

Usage (once; the venv is git-ignored):
    python3 -m venv .venv-oracle && .venv-oracle/bin/pip install tokenizers
    .venv-oracle/bin/python scripts/make_tokenizer_golden.py
"""
import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "BitNetTests" / "Fixtures" / "tokenizer"
TOK512 = ROOT.parent / "shared" / "data" / "stories260K" / "tok512.bin"

CORPUS = (FIXTURES / "corpus.txt").read_text(encoding="utf-8")

BPE_CASES = [
    "",
    "a",
    " ",
    "Hello, world!",
    "The keeper's ledger",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\nand\r\n\r\nCRLF",
    "I'm you're they've we'll he'd it's 'tis o'clock",
    "'S 'T 'RE uppercase contractions aren't special",
    "don'tx ''' '' 's",
    "emoji 😀👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷",
    "CJK 漢字かなカナ 한국어 灯台はとても美しいです",
    "combining e\u0301 vs \u00e9, Zalgo a\u0301\u0302\u0303\u0304",
    "numbers 12345 3.14 1,000,000 ① ② ½ Ⅻ ٣",
    "\u00a0nbsp\u3000ideographic\u2003em\u2028line\u2029para",
    "\x0bvt\x0c ff \x85nel \x1cfs \x1f",
    "mixed   \n\n  spaces\t \t end",
    "trailing newline\n",
    "\n\n\n",
    "  ",
    "x  ",
    " \n x",
    "punctuation!!! ...??? --- (brackets) [and] {braces} <angle> «guillemets»",
    "München „Wunderschön“ C'était « magnifique » Ευχαριστώ Спасибо",
    "ſtraße İstanbul ǅ ﬁ",
    "Devanagari नमस्ते Arabic مرحبا Hebrew שלום Thai สวัสดี",
    "email@example.com https://example.org/path?q=1&r=2#frag",
    "code: for (i = 0; i < n; i++) { x += a[i] * b[i]; }",
    "\u0000null\u0001ctrl\u007fdel",
    "a" * 200,
    "abc" * 100,
    "1234567890" * 10,
    " " * 40 + "x",
    "\n" * 30,
    "漢" * 150,
    "😀" * 30,
    CORPUS[:1500],
]

LLAMA2C_CASES = [
    "Once upon a time",
    "Once upon a time, there was a little girl named Lily.",
    "Hello, world!",
    "",
    " leading space",
    "Tom and Lily's dog\nran fast.",
    "café 😀 漢字",
]


def load_llama2c(path, vocab_size):
    data = path.read_bytes()
    (max_len,) = struct.unpack_from("<i", data, 0)
    off = 4
    pieces, scores = [], []
    for _ in range(vocab_size):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append(data[off:off + n])
        scores.append(score)
        off += n
    return pieces, scores


def llama2c_encode(text, pieces, scores):
    """llama2.c's encode(): dummy prefix, per-character lookup with byte fallback, best-score merges."""
    lookup = {}
    for i, p in enumerate(pieces):
        lookup.setdefault(p, i)
    raw = text.encode("utf-8")
    tokens = []
    if raw:
        tokens.append(lookup[b" "])
    i = 0
    while i < len(raw):
        j = i + 1
        while j < len(raw) and j - i < 4 and (raw[j] & 0xC0) == 0x80:
            j += 1
        ch = raw[i:j]
        if ch in lookup:
            tokens.append(lookup[ch])
        else:
            tokens.extend(b + 3 for b in ch)
        i = j
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for k in range(len(tokens) - 1):
            merged = pieces[tokens[k]] + pieces[tokens[k + 1]]
            idx = lookup.get(merged)
            if idx is not None and scores[idx] > best_score:
                best_score, best_id, best_idx = scores[idx], idx, k
        if best_idx == -1:
            break
        tokens[best_idx:best_idx + 2] = [best_id]
    return tokens


def compact_json(value, indent=0):
    """Indented JSON that keeps each test case (a dict inside a list) on one line."""
    pad = " " * indent
    if isinstance(value, dict):
        items = [f"{pad}  {json.dumps(k)}: {compact_json(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = [f"{pad}  {json.dumps(v, ensure_ascii=False)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False)


def main():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(FIXTURES / "tokenizer.json"))
    cases = []
    for text in BPE_CASES:
        ids = tok.encode(text, add_special_tokens=False).ids
        words = [text[s:e] for _, (s, e) in tok.pre_tokenizer.pre_tokenize_str(text)]
        assert "".join(words) == text, repr(text)
        assert tok.decode(ids, skip_special_tokens=False) == text, repr(text)
        cases.append({"text": text, "pretokens": words, "ids": ids})

    golden = {
        "generator": "scripts/make_tokenizer_golden.py",
        "tokenizers_version": __import__("tokenizers").__version__,
        "tokenizer": "tokenizer.json",
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "cases": cases,
    }
    if TOK512.exists():
        pieces, scores = load_llama2c(TOK512, 512)
        golden["llama2c"] = {
            "file": "stories260K/tok512.bin",
            "vocab_size": 512,
            "cases": [{"text": t, "ids": llama2c_encode(t, pieces, scores)} for t in LLAMA2C_CASES],
        }
    else:
        print(f"warning: {TOK512} not found; no llama2c cases", file=sys.stderr)

    out = FIXTURES / "golden.json"
    out.write_text(compact_json(golden) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(cases)} BPE cases)")


if __name__ == "__main__":
    main()
