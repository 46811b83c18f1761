"""The numpy backend against the sentence-transformers reference, with the real packaged model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cert_core.measure import ModelError, SemanticScorer, load_embedder

TEXTS = [
    "Paris",
    "The Eiffel Tower is in Paris.",
    "Apple reported quarterly revenue of $89.5 billion, down 1 percent year over year.",
    "I like crime fiction! Didn't know RDJ was in there. Jake Gyllenhaal starred as well.",
    "  leading and trailing spaces are stripped, as sentence-transformers does  ",
    "Ünïcödé àccents and CJK 東京 and emoji 🙂 go through the same tokenizer.",
    " ".join(f"word{i}" for i in range(400)),  # beyond the 256-token window: cut at it by both
    "A much longer passage about the quarterly results. " * 12,
]


def test_numpy_backend_matches_the_torch_reference() -> None:
    pytest.importorskip("sentence_transformers", reason="the reference backend needs pytest-cert[torch]")
    fast = load_embedder(backend="numpy")
    reference = load_embedder(backend="sentence-transformers")
    a, b = fast.encode(TEXTS), reference.encode(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384)
    cosines = (a * b).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
    assert fast.count_tokens(TEXTS) == reference.count_tokens(TEXTS)


def test_embeddings_are_normalised_and_deterministic() -> None:
    embedder = load_embedder(backend="numpy")
    assert embedder.backend == "numpy"
    first = embedder.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(first, embedder.encode(TEXTS))
    # Batching does not change a text's embedding.
    alone = embedder.encode([TEXTS[2]])[0]
    np.testing.assert_allclose(alone, first[2], atol=1e-5)


def test_cache_serves_repeated_texts() -> None:
    calls: list[int] = []
    embedder = load_embedder()

    class Counting:
        name, backend, max_tokens = embedder.name, "counting", embedder.max_tokens

        def encode(self, texts: list[str]) -> np.ndarray:
            calls.append(len(texts))
            return embedder.encode(texts)

        def count_tokens(self, texts: list[str]) -> list[int]:
            return embedder.count_tokens(texts)

    scorer = SemanticScorer(Counting())
    reference = "The board declared a dividend of $0.24 per share. Revenue fell."
    scorer.score_many([("A dividend of $0.24.", reference), ("Revenue fell.", reference)])
    assert sum(calls) == 2 + len(scorer.passages(reference))
    scorer.score_many([("A dividend of $0.24.", reference)])
    assert sum(calls) == 2 + len(scorer.passages(reference))  # nothing new to embed


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(
        ValueError, match="unknown semantic backend 'tf'; known: auto, numpy, sentence-transformers"
    ):
        load_embedder(backend="tf")


def test_a_folder_that_is_not_a_bert_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelError, match="failed to load"):
        load_embedder(tmp_path)


def test_the_default_backend_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from cert_core.measure import Measurer\n"
        "measurer = Measurer(semantic_unweighted=True)\n"
        "m = measurer.measure('Paris is the capital.', 'Paris is the capital of France.')\n"
        "assert m.semantic is not None\n"
        "print(sorted(k for k in ('torch', 'sentence_transformers', 'transformers') if k in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
