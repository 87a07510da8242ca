#!/usr/bin/env python3
"""Makes the model-format fixtures of Tests/BitNetTests/Fixtures/formats (run by hand, not by CI).

A small random BitNet b1.58 model (the 2B4T architecture: ReLU², sub-norms, GQA, tied embeddings, rope
theta 500000) is written by the reference tools:
  hf-packed/      config.json + model.safetensors in microsoft/bitnet-b1.58-2B-4T's layout (uint8-packed codes,
                  bf16 weight_scale = 1/beta for BitLinear, bf16 embeddings and norms)
  hf-bf16/        the -bf16 master-weight variant (AutoBitLinear, online absmean quantization)
  model-*.gguf    written with the `gguf` package: TQ1_0 and TQ2_0 quantized by gguf's numpy code, F16, Q8_0,
                  and I2_S laid out as bitnet.cpp's quantize_i2_s does (x86: 128-element blocks, scale at n/4)
  codecs.gguf     random tensors of F32, F16, BF16, Q8_0, Q4_0, Q6_K, TQ1_0, TQ2_0 with their f32 source and
                  gguf's own dequantization (codecs-ref.safetensors) for the codec tests
  reference.json  the token sequence and transformers' float32 logits of each HF variant (reference-*.bin)

Usage: .venv-formats/bin/python scripts/make_format_fixtures.py [OUT_DIR]
(venv: python3 -m venv .venv-formats && .venv-formats/bin/pip install /opt/wheels/torch-*.whl numpy
 safetensors 'transformers>=4.52' gguf)
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import gguf
from safetensors.torch import save_file
from transformers import BitNetConfig, BitNetForCausalLM

OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/BitNetTests/Fixtures/formats"
SEED = 1234
V, D, F, L, H, KV = 256, 256, 256, 2, 4, 2
HD = D // H
CTX = 64

rng = np.random.default_rng(SEED)
torch.manual_seed(SEED)
TOKENS = [int(t) for t in rng.integers(0, V, 16)]


def bf16_round(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16).to(torch.float32).numpy()


# ---- master weights (bf16 values), HF names and rotate_half row order ----
# Embedding scale 0.1 keeps the tied head's logits near unit spread, so the softmax (and the KL test) is not one-hot.
master = {"model.embed_tokens.weight": bf16_round(rng.normal(0, 0.1, (V, D))),
          "model.norm.weight": bf16_round(1 + 0.1 * rng.normal(size=D))}
LINEARS = {"self_attn.q_proj": (D, D), "self_attn.k_proj": (KV * HD, D), "self_attn.v_proj": (KV * HD, D),
           "self_attn.o_proj": (D, D), "mlp.gate_proj": (F, D), "mlp.up_proj": (F, D), "mlp.down_proj": (D, F)}
for l in range(L):
    p = f"model.layers.{l}."
    for n, shape in LINEARS.items():
        master[p + n + ".weight"] = bf16_round(rng.normal(0, 0.02, shape))
    master[p + "input_layernorm.weight"] = bf16_round(1 + 0.1 * rng.normal(size=D))
    master[p + "post_attention_layernorm.weight"] = bf16_round(1 + 0.1 * rng.normal(size=D))
    master[p + "self_attn.attn_sub_norm.weight"] = bf16_round(1 + 0.1 * rng.normal(size=D))
    master[p + "mlp.ffn_sub_norm.weight"] = bf16_round(1 + 0.1 * rng.normal(size=F))


def is_linear(name):
    return any(name.endswith(n + ".weight") for n in LINEARS)


# ---- offline ternarization as BitNet b1.58 (absmean), 1/beta stored in bf16 like 2B4T ----
codes, beta = {}, {}
for name, w in master.items():
    if is_linear(name):
        b = np.float32(np.abs(w).mean())
        codes[name] = np.clip(np.round(w / b), -1, 1).astype(np.int8)
        inv = torch.tensor([1.0 / b], dtype=torch.bfloat16)
        beta[name] = np.float32(1.0 / inv.to(torch.float32).item())  # the scale BitLinear effectively applies


def pack(c):
    """transformers' pack_weights: code+1 of row i*rows/4 + r into bits 2i..2i+1 of packed row r."""
    u = (c + 1).astype(np.uint8)
    pr = u.shape[0] // 4
    out = np.zeros((pr, u.shape[1]), dtype=np.uint8)
    for i in range(4):
        out |= u[i * pr:(i + 1) * pr] << (2 * i)
    return out


config = dict(architectures=["BitNetForCausalLM"], model_type="bitnet", vocab_size=V, hidden_size=D,
              intermediate_size=F, num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=KV,
              hidden_act="relu2", max_position_embeddings=CTX, rms_norm_eps=1e-5, rope_theta=500000.0,
              tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, torch_dtype="bfloat16")


def write_hf(dirname, linear_class, mode, packed):
    d = os.path.join(OUT, dirname)
    os.makedirs(d, exist_ok=True)
    cfg = dict(config, quantization_config=dict(quant_method="bitnet", linear_class=linear_class, quantization_mode=mode))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    tensors = {}
    for name, w in master.items():
        if is_linear(name) and packed:
            tensors[name] = torch.from_numpy(pack(codes[name]))
            tensors[name.replace(".weight", ".weight_scale")] = torch.tensor([1.0 / beta[name]], dtype=torch.bfloat16)
        else:
            tensors[name] = torch.from_numpy(w).to(torch.bfloat16)
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    return d


def reference_logits(d):
    model = BitNetForCausalLM.from_pretrained(d, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([TOKENS]), use_cache=False).logits[0].float().numpy()
    return out


os.makedirs(OUT, exist_ok=True)
ref = {"tokens": TOKENS, "vocab_size": V, "files": {}}
for dirname, lc, mode, packed in [("hf-packed", "bitlinear", "offline", True), ("hf-bf16", "autobitlinear", "online", False)]:
    d = write_hf(dirname, lc, mode, packed)
    logits = reference_logits(d)
    logits.astype("<f4").tofile(os.path.join(OUT, f"reference-{dirname}.bin"))
    ref["files"][dirname] = f"reference-{dirname}.bin"
    print(dirname, "logits", logits.shape, "argmax", logits.argmax(-1).tolist())

# Check the packing direction against transformers' own unpack_weights.
from transformers.integrations.bitnet import unpack_weights
n0 = "model.layers.0.mlp.gate_proj.weight"
assert (unpack_weights(torch.from_numpy(pack(codes[n0])), dtype=torch.float32).numpy() == codes[n0]).all()


# ---- GGUF files through the gguf package ----
def permute(w, n_head):
    """llama.cpp convert_hf_to_gguf's LlamaModel.permute: rotate_half rows -> consecutive pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GG = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
GL = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
      "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.attn_sub_norm": "attn_sub_norm",
      "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
      "mlp.down_proj": "ffn_down", "mlp.ffn_sub_norm": "ffn_sub_norm"}


def gguf_name(n):
    if n in GG:
        return GG[n]
    parts = n.split(".")
    return f"blk.{parts[2]}." + GL[".".join(parts[3:-1])] + ".weight"


def quantize_i2_s(x):
    """bitnet.cpp quantize_i2_s (x86): scale = max|x|; 0/1/2 for -/0/+; byte j of a 128-block holds j, j+32, j+64, j+96."""
    flat = x.reshape(-1).astype(np.float64)
    q8 = np.where(np.abs(flat) < 1e-6, 1, np.where(flat > 0, 2, 0)).astype(np.uint8)
    blocks = q8.reshape(-1, 4, 32)  # [block, group, pos]
    packed = (blocks[:, 0] << 6) | (blocks[:, 1] << 4) | (blocks[:, 2] << 2) | blocks[:, 3]
    out = np.zeros(flat.size // 4 + 32, dtype=np.uint8)
    out[: flat.size // 4] = packed.reshape(-1)
    out[flat.size // 4: flat.size // 4 + 4] = np.frombuffer(struct.pack("<f", np.abs(flat).max()), dtype=np.uint8)
    return out


def write_gguf(fname, arch, linear_type):
    path = os.path.join(OUT, fname)
    w = gguf.GGUFWriter(path, arch)
    w.add_context_length(CTX)
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_dimension_count(HD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(500000.0)
    w.add_vocab_size(V)
    w.add_string(f"{arch}.hidden_activation", "relu2")
    w.add_file_type({"TQ1_0": 36, "TQ2_0": 37, "F16": 1, "Q8_0": 7, "I2_S": 40}[linear_type])
    i2s = []
    for name, m in master.items():
        g = gguf_name(name)
        if not is_linear(name):
            if name == "model.embed_tokens.weight":
                w.add_tensor(g, m.astype(np.float16))
            else:
                w.add_tensor(g, m.astype(np.float32))
            continue
        # What the model computes with, as llama.cpp's converter writes it. llama.cpp runs the bitnet archs with NEOX
        # RoPE (llama_model_rope_type) and its BitnetModel converter does not permute q/k: rows stay in HF order.
        t = (codes[name] * beta[name]).astype(np.float32)
        if arch == "llama":
            t = permute(t, H if name.endswith("q_proj.weight") else KV) if name.endswith(("q_proj.weight", "k_proj.weight")) else t
        if linear_type == "F16":
            w.add_tensor(g, t.astype(np.float16))
        elif linear_type == "I2_S":
            raw = quantize_i2_s(t)
            # gguf does not know bitnet.cpp's type 36: write as I8 bytes, then patch the tensor info below.
            w.add_tensor(g, raw.view(np.int8).reshape(1, -1), raw_dtype=gguf.GGMLQuantizationType.I8)
            i2s.append((g, t.shape))
        else:
            qt = getattr(gguf.GGMLQuantizationType, linear_type)
            w.add_tensor(g, gguf.quants.quantize(t, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if i2s:
        patch_i2s(path, i2s)
    print("wrote", path, os.path.getsize(path), "bytes")


def patch_i2s(path, tensors):
    """Rewrites the dims and type of I8-placeholder tensor infos to I2_S [cols, rows]."""
    data = bytearray(open(path, "rb").read())
    for name, (rows, cols) in tensors:
        key = struct.pack("<Q", len(name)) + name.encode()
        at = data.index(key) + len(key)
        nd = struct.unpack_from("<I", data, at)[0]
        assert nd == 2
        struct.pack_into("<QQI", data, at + 4, cols, rows, 36)
    open(path, "wb").write(bytes(data))


write_gguf("model-tq1_0.gguf", "bitnet", "TQ1_0")
write_gguf("model-tq2_0.gguf", "bitnet", "TQ2_0")
write_gguf("model-f16.gguf", "bitnet", "F16")
write_gguf("model-q8_0.gguf", "bitnet", "Q8_0")
write_gguf("model-i2_s.gguf", "bitnet-25", "I2_S")

# Check the files with gguf's reader: every tensor we wrote reads back (I2_S is unknown to it: skipped).
for fname in ["model-tq1_0.gguf", "model-tq2_0.gguf", "model-f16.gguf", "model-q8_0.gguf"]:
    r = gguf.GGUFReader(os.path.join(OUT, fname))
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type)
        assert np.isfinite(deq).all()

# ---- codec fixture: one tensor of each type with its source values and gguf's dequantization ----
cw = gguf.GGUFWriter(os.path.join(OUT, "codecs.gguf"), "codecs")
src, deq = {}, {}
for qt in ["F32", "F16", "BF16", "Q8_0", "Q4_0", "TQ1_0", "TQ2_0"]:
    x = rng.normal(0, 1, (4, 512)).astype(np.float32)
    if qt.startswith("TQ"):
        x = (np.clip(np.round(x), -1, 1) * np.float32(0.37)).astype(np.float32)
        x[0, :256] = 0  # an all-zero block
    t = getattr(gguf.GGMLQuantizationType, qt)
    q = gguf.quants.quantize(x, t)
    cw.add_tensor(qt.lower(), q, raw_dtype=t)
    src[qt.lower()] = x
    deq[qt.lower()] = gguf.quants.dequantize(q, t).reshape(x.shape).astype(np.float32)
# Q6_K: gguf has no quantizer; random blocks with a finite f16 super-scale, decoded by gguf.
blocks = rng.integers(0, 256, (8, 210), dtype=np.uint8)
blocks[:, 208:210] = np.frombuffer(np.float16(0.013).tobytes(), dtype=np.uint8)
cw.add_tensor("q6_k", blocks.reshape(4, -1), raw_dtype=gguf.GGMLQuantizationType.Q6_K)
deq["q6_k"] = gguf.quants.dequantize(blocks.reshape(4, -1), gguf.GGMLQuantizationType.Q6_K).reshape(4, 512).astype(np.float32)
cw.add_string("codecs.string", "héllo")
cw.add_array("codecs.ints", [1, -2, 3])
cw.add_bool("codecs.flag", True)
cw.add_float64("codecs.f64", 0.125)
cw.write_header_to_file()
cw.write_kv_data_to_file()
cw.write_tensors_to_file()
cw.close()
save_file({f"src.{k}": torch.from_numpy(v) for k, v in src.items()} | {f"deq.{k}": torch.from_numpy(v) for k, v in deq.items()},
          os.path.join(OUT, "codecs-ref.safetensors"))

with open(os.path.join(OUT, "reference.json"), "w") as f:
    json.dump(ref, f, indent=2, sort_keys=True)
print("done:", sorted(os.listdir(OUT)))
