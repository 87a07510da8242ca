#!/usr/bin/env python3
"""PyTorch oracle for bitnet-swift: the network of docs/MODEL.md, written independently in torch.

Runs inside the venv that scripts/setup_oracle.sh makes:

    .venv-oracle/bin/python scripts/torch_reference.py fixtures --out Tests/BitNetTests/Fixtures/torch
    .venv-oracle/bin/python scripts/torch_reference.py logits --model M.safetensors --tokens 1,5,7 --out L.f32
    .venv-oracle/bin/python scripts/torch_reference.py train-bench --arch fp --vocab 1024 --dim 256 \
        --layers 4 --heads 4 --kv-heads 4 --ffn-dim 688 --ffn swiglu --batch 8 --ctx 128 --steps 10 --threads 2

Everything is float32. Quantizers follow MODEL.md (Eq. 1-7, 14-15 of the BitNet paper); the
backward pass is the straight-through estimator written as in the paper's Appendix D:
x + (quant(x) - x).detach() and w + (wquant(w) - w).detach().
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# The keys of the model config, exactly those of docs/MODEL.md (and of ModelConfig.swift).
CONFIG_KEYS = (
    "arch", "vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len",
    "ffn", "sub_norm", "norm_eps", "rope_theta", "tie_embeddings", "norm_groups", "quant_groups",
    "act_bits", "act_scope_train", "unsigned_after_nonlinearity",
)
ARCHS = ("fp", "bitnet-b1.58", "bitnet-b1")
EPS_Q = 1e-5  # epsilon of Eq. 3 and Eq. 6


def make_config(arch: str, vocab_size: int, dim: int, n_layers: int, n_heads: int, n_kv_heads: int,
                ffn_dim: int, max_seq_len: int, ffn: str, tie_embeddings: bool, sub_norm: bool = True,
                norm_eps: float = 1e-5, rope_theta: float = 10000.0, norm_groups: int = 1,
                quant_groups: int = 1, act_bits: int = 8, act_scope_train: str = "per_token",
                unsigned_after_nonlinearity: bool = False) -> dict:
    cfg = dict(arch=arch, vocab_size=vocab_size, dim=dim, n_layers=n_layers, n_heads=n_heads,
               n_kv_heads=n_kv_heads, ffn_dim=ffn_dim, max_seq_len=max_seq_len, ffn=ffn,
               sub_norm=sub_norm, norm_eps=norm_eps, rope_theta=rope_theta,
               tie_embeddings=tie_embeddings, norm_groups=norm_groups, quant_groups=quant_groups,
               act_bits=act_bits, act_scope_train=act_scope_train,
               unsigned_after_nonlinearity=unsigned_after_nonlinearity)
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    keys = set(cfg)
    if keys != set(CONFIG_KEYS):
        raise ValueError(f"config keys differ from MODEL.md: missing {sorted(set(CONFIG_KEYS) - keys)}, "
                         f"extra {sorted(keys - set(CONFIG_KEYS))}")
    if cfg["arch"] not in ARCHS:
        raise ValueError(f"arch {cfg['arch']!r} not in {ARCHS}")
    if cfg["ffn"] not in ("swiglu", "relu2"):
        raise ValueError(f"ffn {cfg['ffn']!r}")
    if cfg["act_scope_train"] not in ("per_token", "per_tensor"):
        raise ValueError(f"act_scope_train {cfg['act_scope_train']!r}")
    d, h, kv = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
    if d % h or (d // h) % 2 or h % kv:
        raise ValueError("dim must be a multiple of n_heads, head_dim even, n_heads a multiple of n_kv_heads")
    hd = d // h
    if d % cfg["norm_groups"] or cfg["ffn_dim"] % cfg["norm_groups"]:
        raise ValueError("norm_groups must divide dim and ffn_dim")
    for n in (d, cfg["ffn_dim"], kv * hd):
        if n % cfg["quant_groups"]:
            raise ValueError("quant_groups must divide every linear's rows and columns")


def config_json(cfg: dict) -> str:
    """The config as stored in the metadata: compact JSON, keys sorted (as ModelConfig.jsonString)."""
    return json.dumps({k: cfg[k] for k in CONFIG_KEYS}, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# Quantizers (MODEL.md "BitLinear"): forward values only; callers wrap them in the STE.
# ---------------------------------------------------------------------------------------------

def _group_mean(w: torch.Tensor, groups: int, absolute: bool) -> torch.Tensor:
    """Per-group mean (of |W| or W) over blocks of out/G rows; accumulated in float64, returned as
    float32 of shape [G, 1] (the Swift side also accumulates in Double)."""
    v = w.reshape(groups, -1)
    if absolute:
        v = v.abs()
    return v.to(torch.float64).mean(dim=1, keepdim=True).to(torch.float32)


def weight_quant_b158(w: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Eq. 3-5: beta = mean|W|, RoundClip(W / (beta + eps), -1, 1) * beta."""
    v = w.reshape(groups, -1)
    beta = _group_mean(w, groups, absolute=True)
    q = torch.round(v / (beta + EPS_Q)).clamp(-1, 1) * beta
    return q.reshape(w.shape)


def weight_quant_b1(w: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Eq. 1-2 with beta of Eq. 9: alpha = mean(W), beta = mean|W|, Sign(W - alpha) * beta, Sign(0) = -1."""
    v = w.reshape(groups, -1)
    alpha = _group_mean(w, groups, absolute=False)
    beta = _group_mean(w, groups, absolute=True)
    q = torch.where(v - alpha > 0, 1.0, -1.0).to(w.dtype) * beta
    return q.reshape(w.shape)


def act_quant(x: torch.Tensor, bits: int, scope: str, groups: int = 1, unsigned: bool = False) -> torch.Tensor:
    """Eq. 6-7 (absmax, signed) or the unsigned min/max variant (eta of Eq. 15), per token
    (one scale per token and block of in/G features) or per tensor (one per block over all tokens)."""
    shape = x.shape
    v = x.reshape(-1, groups, shape[-1] // groups)  # [tokens, G, in/G]
    red = (0, 2) if scope == "per_tensor" else (2,)
    if unsigned:
        qmax = float(2 ** bits - 1)
        lo = v.amin(dim=red, keepdim=True)
        hi = v.amax(dim=red, keepdim=True)
        s = qmax / (hi - lo + EPS_Q)
        q = torch.round((v - lo) * s).clamp(0, qmax) / s + lo
    else:
        qp = float(2 ** (bits - 1) - 1)
        qn = -float(2 ** (bits - 1))
        gamma = v.abs().amax(dim=red, keepdim=True)
        s = qp / (gamma + EPS_Q)
        q = torch.round(v * s).clamp(qn, qp) / s
    return q.reshape(shape)


# ---------------------------------------------------------------------------------------------
# Modules; their state_dict names are the tensor names of MODEL.md.
# ---------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float, groups: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps, self.groups = eps, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        v = x.reshape(*shape[:-1], self.groups, shape[-1] // self.groups)
        v = v * torch.rsqrt(v.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return v.reshape(shape) * self.weight


class Linear(nn.Module):
    """BitLinear of Eq. 9 for the two BitNets (the RMSNorm in front of it is a separate module,
    as in MODEL.md), plain y = x W^T for `fp`. `unsigned` marks the input of w2."""

    def __init__(self, n_in: int, n_out: int, cfg: dict, unsigned: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.arch = cfg["arch"]
        self.groups = cfg["quant_groups"]
        self.bits = cfg["act_bits"]
        self.unsigned = unsigned and cfg["unsigned_after_nonlinearity"]
        self.scope = "per_token"  # set by Transformer.set_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if self.arch == "fp":
            return F.linear(x, w)
        wq = weight_quant_b158(w, self.groups) if self.arch == "bitnet-b1.58" else weight_quant_b1(w, self.groups)
        xq = act_quant(x, self.bits, self.scope, self.groups, self.unsigned)
        # Straight-through estimator, Appendix D.
        x_ste = x + (xq - x).detach()
        w_ste = w + (wq - w).detach()
        return F.linear(x_ste, w_ste)


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [T, head_dim/2] for pairs (2i, 2i+1): freq_i = theta^(-2i/head_dim), angle = p * freq_i.
    Computed in float64 and rounded once to float32."""
    i = torch.arange(0, head_dim // 2, dtype=torch.float64)
    freq = theta ** (-2.0 * i / head_dim)
    ang = torch.arange(seq_len, dtype=torch.float64)[:, None] * freq[None, :]
    return torch.cos(ang).to(torch.float32), torch.sin(ang).to(torch.float32)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, hd]; rotates consecutive pairs (llama2.c / GGUF order)."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y0 = x0 * cos - x1 * sin
    y1 = x0 * sin + x1 * cos
    return torch.stack((y0, y1), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d, h, kv = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
        hd = d // h
        self.h, self.kv, self.hd = h, kv, hd
        self.wq = Linear(d, h * hd, cfg)
        self.wk = Linear(d, kv * hd, cfg)
        self.wv = Linear(d, kv * hd, cfg)
        if cfg["sub_norm"]:
            self.sub_norm = RMSNorm(h * hd, cfg["norm_eps"], cfg["norm_groups"])
        self.wo = Linear(h * hd, d, cfg)
        self.use_sdpa = False

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.wk(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.wv(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.kv != self.h:  # GQA: head h reads kv head h // (n_heads / n_kv_heads)
            rep = self.h // self.kv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if self.use_sdpa:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)
            mask = torch.ones(t, t, dtype=torch.bool).triu(1)
            s = s.masked_fill(mask, float("-inf"))
            o = torch.softmax(s, dim=-1) @ v
        o = o.transpose(1, 2).reshape(b, t, self.h * self.hd)
        if hasattr(self, "sub_norm"):
            o = self.sub_norm(o)
        return self.wo(o)


class FeedForward(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d, f = cfg["dim"], cfg["ffn_dim"]
        self.kind = cfg["ffn"]
        self.w1 = Linear(d, f, cfg)
        self.w3 = Linear(d, f, cfg)
        if cfg["sub_norm"]:
            self.sub_norm = RMSNorm(f, cfg["norm_eps"], cfg["norm_groups"])
        self.w2 = Linear(f, d, cfg, unsigned=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.w1(x)
        a = F.silu(a) if self.kind == "swiglu" else F.relu(a).square()
        g = a * self.w3(x)
        if hasattr(self, "sub_norm"):
            g = self.sub_norm(g)
        return self.w2(g)


class Block(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.attention_norm = RMSNorm(cfg["dim"], cfg["norm_eps"], cfg["norm_groups"])
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg["dim"], cfg["norm_eps"], cfg["norm_groups"])
        self.feed_forward = FeedForward(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg["vocab_size"], cfg["dim"])
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg["n_layers"])])
        # The final norm is a plain RMSNorm over dim (it feeds no BitLinear).
        self.norm = RMSNorm(cfg["dim"], cfg["norm_eps"], 1)
        if not cfg["tie_embeddings"]:
            self.output = nn.Linear(cfg["dim"], cfg["vocab_size"], bias=False)
        self.set_mode(training=True)

    def set_mode(self, training: bool, sdpa: bool = False) -> None:
        """Activation scope: act_scope_train while training, per token at inference (MODEL.md)."""
        scope = self.cfg["act_scope_train"] if training else "per_token"
        for m in self.modules():
            if isinstance(m, Linear):
                m.scope = scope
            if isinstance(m, Attention):
                m.use_sdpa = sdpa

    def output_weight(self) -> torch.Tensor:
        return self.tok_embeddings.weight if self.cfg["tie_embeddings"] else self.output.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] int64 -> logits [B, T, vocab]; positions 0..T-1."""
        t = tokens.shape[1]
        cos, sin = rope_tables(t, self.cfg["dim"] // self.cfg["n_heads"], float(self.cfg["rope_theta"]))
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return F.linear(self.norm(x), self.output_weight())


def param_names(cfg: dict) -> list[str]:
    """The tensor names of MODEL.md, in its order."""
    names = ["tok_embeddings.weight"]
    for l in range(cfg["n_layers"]):
        p = f"layers.{l}."
        names += [p + "attention_norm.weight", p + "attention.wq.weight", p + "attention.wk.weight",
                  p + "attention.wv.weight"]
        if cfg["sub_norm"]:
            names.append(p + "attention.sub_norm.weight")
        names += [p + "attention.wo.weight", p + "ffn_norm.weight", p + "feed_forward.w1.weight",
                  p + "feed_forward.w3.weight"]
        if cfg["sub_norm"]:
            names.append(p + "feed_forward.sub_norm.weight")
        names.append(p + "feed_forward.w2.weight")
    names.append("norm.weight")
    if not cfg["tie_embeddings"]:
        names.append("output.weight")
    return names


def init_weights(model: Transformer, seed: int) -> None:
    """normal(0, 0.02) for linears and the embedding, 1 + 0.1 * normal for norm weights,
    drawn from one generator in MODEL.md's tensor order."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    names = param_names(model.cfg)
    assert sorted(names) == sorted(params), (sorted(names), sorted(params))
    with torch.no_grad():
        for n in names:
            p = params[n]
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            p.copy_(1.0 + 0.1 * r if p.dim() == 1 else 0.02 * r)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

_ST_DTYPES = {torch.float32: "F32", torch.int32: "I32"}


def write_safetensors(path: str, tensors: dict, metadata: dict) -> None:
    """A standard safetensors file written by hand so that its bytes are reproducible (the
    safetensors library orders metadata keys at random): u64 LE header length, JSON header
    (`__metadata__` first, then the tensors in the given order, offsets back to back), padded with
    spaces to a multiple of 8, then the raw little-endian data."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, off = [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype not in _ST_DTYPES:
            raise ValueError(f"{name}: dtype {t.dtype} not supported")
        b = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def save_model(model: Transformer, path: str) -> None:
    params = dict(model.named_parameters())
    tensors = {n: params[n].detach().to(torch.float32) for n in param_names(model.cfg)}
    write_safetensors(path, tensors, {"bitnet.config": config_json(model.cfg), "format": "bitnet-swift"})


def load_model(path: str) -> Transformer:
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        if "bitnet.config" not in meta:
            raise SystemExit(f"{path}: no bitnet.config in the safetensors metadata")
        cfg = json.loads(meta["bitnet.config"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model = Transformer(cfg)
    names = param_names(cfg)
    missing = [n for n in names if n not in tensors]
    extra = [n for n in tensors if n not in names]
    if missing or extra:
        raise SystemExit(f"{path}: missing tensors {missing}, unexpected tensors {extra}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in names:
            t = tensors[n]
            if tuple(t.shape) != tuple(params[n].shape):
                raise SystemExit(f"{path}: {n} has shape {tuple(t.shape)}, expected {tuple(params[n].shape)}")
            params[n].copy_(t.to(torch.float32))
    return model


# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------

FIXTURE_SEED = {"fp": 1001, "bitnet-b1.58": 1002, "bitnet-b1": 1003}
FIXTURE_TOKEN_SEED = 2024


def fixture_config(arch: str) -> dict:
    return make_config(arch, vocab_size=67, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=48,
                       max_seq_len=16, ffn="relu2" if arch == "bitnet-b1.58" else "swiglu",
                       tie_embeddings=(arch == "fp"), sub_norm=True, norm_eps=1e-5, rope_theta=10000.0,
                       norm_groups=1, quant_groups=1, act_bits=8, act_scope_train="per_token",
                       unsigned_after_nonlinearity=False)


def cmd_fixtures(args) -> None:
    torch.set_num_threads(1)  # one thread: deterministic reductions
    os.makedirs(args.out, exist_ok=True)
    for arch in ARCHS:
        cfg = fixture_config(arch)
        model = Transformer(cfg)
        init_weights(model, FIXTURE_SEED[arch])
        model.set_mode(training=True)
        gen = torch.Generator().manual_seed(FIXTURE_TOKEN_SEED)
        tokens = torch.randint(0, cfg["vocab_size"], (2, 9), generator=gen, dtype=torch.int64)
        logits = model(tokens[:, :8])
        loss = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), tokens[:, 1:9].reshape(-1))
        model.zero_grad(set_to_none=True)
        loss.backward()
        params = dict(model.named_parameters())
        expected = {
            "tokens": tokens.to(torch.int32).contiguous(),
            "logits": logits.detach().contiguous(),
            "loss": loss.detach().reshape(1).contiguous(),
        }
        for n in param_names(cfg):
            expected["grad." + n] = params[n].grad.detach().contiguous()
        mpath = os.path.join(args.out, f"{arch}.safetensors")
        epath = os.path.join(args.out, f"{arch}.expected.safetensors")
        save_model(model, mpath)
        write_safetensors(epath, expected, {
            "bitnet.config": config_json(cfg), "format": "bitnet-swift-oracle",
            "torch_version": torch.__version__, "weight_seed": str(FIXTURE_SEED[arch]),
            "token_seed": str(FIXTURE_TOKEN_SEED)})
        # Re-load the model file and check the forward is reproduced from it.
        again = load_model(mpath)
        again.set_mode(training=True)
        with torch.no_grad():
            d = (again(tokens[:, :8]) - logits.detach()).abs().max().item()
        if d != 0.0:
            raise SystemExit(f"{arch}: reloaded model differs by {d}")
        print(f"{arch}: loss {loss.item():.6f}, {len(param_names(cfg))} tensors, "
              f"{os.path.getsize(mpath)} + {os.path.getsize(epath)} bytes -> {mpath}, {epath}")
    readme = os.path.join(args.out, "README.md")
    with open(readme, "w") as f:
        f.write(
            "Made by `scripts/torch_reference.py` (PyTorch %s, float32, one thread) from docs/MODEL.md:\n"
            "`<arch>.safetensors` is a tiny random model, `<arch>.expected.safetensors` holds `tokens`, the `logits`\n"
            "of tokens[:, :8], the cross-entropy `loss` vs tokens[:, 1:9] and its STE gradient `grad.<tensor>`.\n"
            "Regenerate: `scripts/setup_oracle.sh && .venv-oracle/bin/python scripts/torch_reference.py fixtures "
            "--out Tests/BitNetTests/Fixtures/torch`\n" % torch.__version__)
    print(f"wrote {readme}")


def cmd_logits(args) -> None:
    model = load_model(args.model)
    model.set_mode(training=False)
    toks = [int(t) for t in args.tokens.replace(" ", "").split(",") if t != ""]
    v = model.cfg["vocab_size"]
    if not toks or any(t < 0 or t >= v for t in toks):
        raise SystemExit(f"tokens must be a non-empty list of ids in [0, {v})")
    if len(toks) > model.cfg["max_seq_len"]:
        print(f"warning: {len(toks)} tokens exceed max_seq_len {model.cfg['max_seq_len']}", file=sys.stderr)
    with torch.no_grad():
        logits = model(torch.tensor([toks], dtype=torch.int64))[0]
    arr = logits.to(torch.float32).contiguous().numpy().astype("<f4")
    with open(args.out, "wb") as f:
        f.write(arr.tobytes())
    print(f"wrote {args.out}: float32 little-endian [{len(toks)}, {v}]")


def cmd_train_bench(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = make_config(args.arch, vocab_size=args.vocab, dim=args.dim, n_layers=args.layers, n_heads=args.heads,
                      n_kv_heads=args.kv_heads or args.heads, ffn_dim=args.ffn_dim,
                      max_seq_len=max(args.ctx, 1), ffn=args.ffn, tie_embeddings=True, sub_norm=True)
    model = Transformer(cfg)
    init_weights(model, args.seed)
    model.set_mode(training=True, sdpa=not args.exact_attention)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed + 1)
    total = args.warmup_steps + args.steps
    data = torch.randint(0, args.vocab, (total, args.batch, args.ctx + 1), generator=gen, dtype=torch.int64)

    fwd = model
    compile_status = "off"
    if args.compile:
        try:
            fwd = torch.compile(model)
            compile_status = "on"
        except Exception as e:  # noqa: BLE001
            compile_status = f"failed: {type(e).__name__}: {e}"[:300]
            fwd = model

    def step(i: int) -> float:
        nonlocal fwd, compile_status
        x, y = data[i, :, :-1], data[i, :, 1:]
        opt.zero_grad(set_to_none=True)
        try:
            logits = fwd(x)
        except Exception as e:  # noqa: BLE001  (torch.compile fails lazily, at the first call)
            if fwd is model:
                raise
            compile_status = f"failed: {type(e).__name__}: {e}"[:300]
            fwd = model
            logits = fwd(x)
        loss = F.cross_entropy(logits.reshape(-1, args.vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    losses = []
    t_warm = time.perf_counter()
    for i in range(args.warmup_steps):
        losses.append(step(i))
    warm_s = time.perf_counter() - t_warm
    times = []
    for i in range(args.warmup_steps, total):
        t0 = time.perf_counter()
        losses.append(step(i))
        times.append(time.perf_counter() - t0)
    step_s = sum(times) / len(times)  # mean over the timed steps
    out = {
        "tokens_per_s": round(args.batch * args.ctx / step_s, 1),
        "step_seconds": round(step_s, 4),
        "params": n_params,
        "torch_version": torch.__version__,
        "threads": args.threads,
        "arch": args.arch,
        "step_seconds_median": round(sorted(times)[len(times) // 2], 4),
        "step_seconds_min": round(min(times), 4),
        "step_seconds_max": round(max(times), 4),
        "timed_steps": len(times),
        "warmup_steps": args.warmup_steps,
        "warmup_seconds": round(warm_s, 2),
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
        "attention": "exact" if args.exact_attention else "sdpa",
        "compile": compile_status if args.compile else "off",
        "loadavg_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews the timings
    }
    print(json.dumps(out))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("fixtures", help="write the tiny models and their expected logits/loss/gradients")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_fixtures)

    p = sub.add_parser("logits", help="float32 LE logits [tokens x vocab] of a model file for one sequence")
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", required=True, help="comma-separated ids, e.g. 1,5,7")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_logits)

    p = sub.add_parser("train-bench", help="time full training steps; prints one JSON line")
    p.add_argument("--arch", choices=["fp", "bitnet-b1.58", "bitnet-b1"], required=True)
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--kv-heads", type=int, default=0, help="default: --heads")
    p.add_argument("--ffn-dim", type=int, required=True)
    p.add_argument("--ffn", choices=["swiglu", "relu2"], default="swiglu")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--ctx", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="try torch.compile (falls back if it fails)")
    p.add_argument("--exact-attention", action="store_true",
                   help="explicit softmax attention as in the fixtures instead of scaled_dot_product_attention")
    p.set_defaults(func=cmd_train_bench)

    args = ap.parse_args(argv)
    if args.cmd == "train-bench" and args.steps < 1:
        ap.error("--steps must be >= 1")
    args.func(args)


if __name__ == "__main__":
    main()
