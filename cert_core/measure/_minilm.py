"""all-MiniLM-L6-v2 in numpy: the torch-free semantic backend (the default where onnx is not installed).

The same computation as sentence-transformers on torch (BERT encoder, 6 layers, hidden 384,
12 heads, exact GELU, LayerNorm eps 1e-12, mean pooling over the attention mask, L2
normalisation), reading ``model.safetensors`` through a memory map. Its embeddings equal the torch
backend's to 6 decimals (tests/cert_core/measure/test_semantic_backends.py); it loads in about a
second, where importing torch alone takes several.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


Array = Any  # numpy arrays of float32 / int64


def load_safetensors(path: str | os.PathLike[str]) -> dict[str, Array]:
    """Read-only numpy views of every tensor in a safetensors file (mmapped)."""
    with Path(path).open("rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    n = int.from_bytes(mm[:8], "little")
    header = json.loads(mm[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dt = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        arr = np.frombuffer(mm, dtype=dt, count=(end - start) // dt.itemsize, offset=base + start)
        out[name] = arr.reshape(info["shape"])
    return out


# erf via Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, below float32 resolution of GELU output)
_P = np.float32(0.3275911)
_A = [np.float32(c) for c in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)]


def _gelu_(x: Array) -> Array:
    """Exact GELU, 0.5 * x * (1 + erf(x / sqrt 2)), in place, with three buffers (this is a third
    of the model's time otherwise)."""
    z = x * np.float32(0.7071067811865476)
    t = np.abs(z)
    t *= _P
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * _A[4]
    for a in (_A[3], _A[2], _A[1], _A[0]):
        poly += a
        poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # 1 - erf(|x| / sqrt 2)
    np.subtract(1.0, poly, out=poly)
    np.copysign(poly, x, out=poly)
    poly += 1.0
    poly *= 0.5
    x *= poly
    return x


def _layernorm(x: Array, g: Array, b: Array, eps: float = 1e-12) -> Array:
    mu = x.mean(-1, keepdims=True)
    x = x - mu
    var = np.mean(np.square(x), -1, keepdims=True)
    x *= 1.0 / np.sqrt(var + np.float32(eps))
    x *= g
    x += b
    return x


def padded_batches(
    tokenizer: Tokenizer, texts: Sequence[str], batch_size: int
) -> Iterator[tuple[Array, Array, Array]]:
    """``(indices, input_ids, attention_mask)`` per batch of ``texts``: tokenised, longest first
    (so each batch pads little), each batch padded to its longest text."""
    ids_list = [e.ids for e in tokenizer.encode_batch(list(texts))]
    lens = np.array([len(x) for x in ids_list])
    order = np.argsort(-lens, kind="stable")
    for start in range(0, len(ids_list), batch_size):
        idx = order[start : start + batch_size]
        width = int(lens[idx].max())
        ids = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            ids[row, : lens[i]] = ids_list[i]
            mask[row, : lens[i]] = 1
        yield idx, ids, mask


def mean_pool(hidden: Array, mask: Array) -> Array:
    """Token embeddings ``(batch, tokens, dim)`` averaged over the attention mask (padding left out)."""
    m = mask.astype(np.float32)[:, :, None]
    pooled: Array = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return pooled


def embed(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    batch_size: int,
    dim: int,
    forward: Callable[[Array, Array], Array],
) -> Array:
    """L2-normalised embeddings of ``texts``, one row each: stripped (as sentence-transformers
    does), batched by :func:`padded_batches`, each batch pooled by ``forward(ids, mask)``."""
    texts = [str(t).strip() for t in texts]
    out = np.empty((len(texts), dim), dtype=np.float32)
    if not texts:
        return out
    for idx, ids, mask in padded_batches(tokenizer, texts, batch_size):
        out[idx] = forward(ids, mask)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


class NumpyEmbedder:
    """The numpy backend: an :class:`~cert_core.measure.Embedder` for BERT-style sentence models."""

    backend = "numpy"

    def __init__(self, files: Any, *, max_tokens: int = 256, batch_size: int = 16) -> None:
        model_dir = Path(files.path)
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{model_dir}: the {self.backend} backend runs BERT models with GELU only")
        self.name = files.name
        self.files = files
        self.batch_size = batch_size
        self.max_tokens = min(max_tokens, int(cfg.get("max_position_embeddings", max_tokens)))
        self.hidden = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.head_dim = self.hidden // self.heads
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json ships truncation at 128 and fixed padding to 128: the model's window is
        # 256, and batches are padded to their own longest text.
        self.tok.enable_truncation(max_length=self.max_tokens)
        self.tok.no_padding()
        self.counter = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.counter.no_truncation()
        self.counter.no_padding()

        w = load_safetensors(model_dir / "model.safetensors")
        p = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""

        def f32(key: str) -> Array:
            return np.ascontiguousarray(w[p + key], dtype=np.float32)

        self.word = w[p + "embeddings.word_embeddings.weight"]  # stays memory-mapped; rows gathered
        self.pos = f32("embeddings.position_embeddings.weight")
        self.type0 = f32("embeddings.token_type_embeddings.weight")[0]  # token_type_ids are all 0
        self.emb_ln = (f32("embeddings.LayerNorm.weight"), f32("embeddings.LayerNorm.bias"))
        scale = np.float32(1.0 / np.sqrt(self.head_dim))
        self.layers: list[dict[str, Any]] = []
        for i in range(cfg["num_hidden_layers"]):
            layer = f"encoder.layer.{i}."
            a = layer + "attention.self."
            # Q, K and V in one matrix, stored (in, out), with the 1/sqrt(d) score scale folded into Q.
            wqkv = np.concatenate(
                [f32(a + "query.weight") * scale, f32(a + "key.weight"), f32(a + "value.weight")], 0
            ).T.copy()
            bqkv = np.concatenate([f32(a + "query.bias") * scale, f32(a + "key.bias"), f32(a + "value.bias")])
            self.layers.append(
                {
                    "wqkv": wqkv,
                    "bqkv": bqkv,
                    "wo": f32(layer + "attention.output.dense.weight").T.copy(),
                    "bo": f32(layer + "attention.output.dense.bias"),
                    "ln1": (
                        f32(layer + "attention.output.LayerNorm.weight"),
                        f32(layer + "attention.output.LayerNorm.bias"),
                    ),
                    "wi": f32(layer + "intermediate.dense.weight").T.copy(),
                    "bi": f32(layer + "intermediate.dense.bias"),
                    "wo2": f32(layer + "output.dense.weight").T.copy(),
                    "bo2": f32(layer + "output.dense.bias"),
                    "ln2": (f32(layer + "output.LayerNorm.weight"), f32(layer + "output.LayerNorm.bias")),
                }
            )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.counter.encode_batch([str(t).strip() for t in texts])]

    def _forward(self, ids: Array, mask: Array) -> Array:
        B, T = ids.shape
        H, D, h = self.hidden, self.head_dim, self.heads
        x = self.word[ids.ravel()].astype(np.float32).reshape(B, T, H)
        x += self.pos[:T]
        x += self.type0
        x = _layernorm(x, *self.emb_ln, self.eps)
        bias = ((1.0 - mask.astype(np.float32)) * np.float32(np.finfo(np.float32).min))[:, None, None, :]
        for Lw in self.layers:
            x2 = x.reshape(B * T, H)
            qkv = x2 @ Lw["wqkv"]
            qkv += Lw["bqkv"]
            qkv = qkv.reshape(B, T, 3, h, D).transpose(2, 0, 3, 1, 4)  # 3,B,h,T,D
            q, k, v = qkv[0], qkv[1], qkv[2]
            s = q @ k.transpose(0, 1, 3, 2)  # B,h,T,T (Q pre-scaled)
            s += bias
            s -= s.max(-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B * T, H)
            a = ctx @ Lw["wo"]
            a += Lw["bo"]
            a += x2
            x2 = _layernorm(a, Lw["ln1"][0], Lw["ln1"][1], self.eps)
            inter = x2 @ Lw["wi"]
            inter += Lw["bi"]
            _gelu_(inter)
            o = inter @ Lw["wo2"]
            o += Lw["bo2"]
            o += x2
            x = _layernorm(o, Lw["ln2"][0], Lw["ln2"][1], self.eps).reshape(B, T, H)
        return mean_pool(x, mask)

    def encode(self, texts: Sequence[str]) -> Array:
        """L2-normalised embeddings, one row per text (texts longer than the window are cut at
        it, as sentence-transformers does; the semantic scorer splits long texts beforehand)."""
        return embed(self.tok, texts, self.batch_size, self.hidden, self._forward)
