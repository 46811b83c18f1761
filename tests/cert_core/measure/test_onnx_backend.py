"""The onnx backend (the model's graph built at load time, on ONNX Runtime) against the numpy
backend, with the real packaged model. The numpy backend is itself pinned to the torch reference
in tests/cert_core/measure/test_semantic_backends.py."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import numpy as np
import pytest

from cert_core.measure import ModelError, SemanticScorer, load_embedder

LONG = " ".join(f"word{i}" for i in range(400))  # about 1,200 tokens: cut at the 256-token window

TEXTS = [
    "?",
    "OK",
    "Yes.",
    "a",
    "Paris",
    "The Eiffel Tower is in Paris.",
    "Apple reported quarterly revenue of $89.5 billion, down 1 percent year over year.",
    "  leading and trailing spaces are stripped, as sentence-transformers does  ",
    "Ünïcödé àccents and CJK 東京 and emoji 🙂 go through the same tokenizer.",
    "Привет, как дела? 北京是中国的首都。 القاهرة هي عاصمة مصر.",
    "👍👍👍",
    "def add(a, b):\n    return a + b",
    LONG,
    "A much longer passage about the quarterly results. " * 12,
]


@pytest.fixture(scope="module")
def numpy_embedder() -> Any:
    return load_embedder(backend="numpy")


@pytest.fixture(scope="module")
def onnx_embedder() -> Any:
    pytest.importorskip("onnx", reason="the onnx backend needs pytest-cert[onnx]")
    pytest.importorskip("onnxruntime", reason="the onnx backend needs pytest-cert[onnx]")
    return load_embedder(backend="onnx")


def test_load_embedder_returns_the_onnx_backend(onnx_embedder: Any) -> None:
    from cert_core.measure._onnx import OnnxEmbedder

    assert isinstance(onnx_embedder, OnnxEmbedder)
    assert onnx_embedder.backend == "onnx"
    assert onnx_embedder.name == "all-MiniLM-L6-v2"
    assert (onnx_embedder.max_tokens, onnx_embedder.hidden) == (256, 384)
    vectors = onnx_embedder.encode(TEXTS)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert onnx_embedder.encode([]).shape == (0, 384)


def test_embeddings_agree_with_the_numpy_backend(numpy_embedder: Any, onnx_embedder: Any) -> None:
    assert numpy_embedder.count_tokens([LONG])[0] > 256  # the window really is exceeded
    a, b = numpy_embedder.encode(TEXTS), onnx_embedder.encode(TEXTS)
    cosines = (a.astype(np.float64) * b).sum(axis=1)
    assert cosines.min() >= 0.999, dict(zip(TEXTS, cosines, strict=True))
    # Measured: about 4e-7 (float32 rounding in another order of operations).
    assert np.abs(a - b).max() < 1e-5


def test_count_tokens_is_the_numpy_backends(numpy_embedder: Any, onnx_embedder: Any) -> None:
    counts = onnx_embedder.count_tokens(TEXTS)
    assert counts == numpy_embedder.count_tokens(TEXTS)
    assert counts[0] == 3  # [CLS] ? [SEP]
    assert max(counts) > 256  # counted without truncation


def test_padding_does_not_change_an_embedding(onnx_embedder: Any) -> None:
    # One batch of very different lengths: the short texts are padded to the longest.
    batch = ["OK", "The Eiffel Tower is in Paris.", LONG, "Ünïcödé 東京 🙂", "Yes."]
    assert len(batch) <= onnx_embedder.batch_size
    together = onnx_embedder.encode(batch)
    for text, vector in zip(batch, together, strict=True):
        np.testing.assert_allclose(onnx_embedder.encode([text])[0], vector, atol=1e-6, err_msg=text)


def test_the_graph_ignores_padded_tokens(onnx_embedder: Any) -> None:
    # The graph's own output (pooled, before normalisation) for one text, unpadded and padded
    # with 30 tokens of nonsense that the mask switches off.
    ids = np.array([[101, 3000, 2003, 1999, 3000, 1012, 102]], dtype=np.int64)
    mask = np.ones_like(ids)
    padded_ids = np.concatenate([ids, np.full((1, 30), 2000, dtype=np.int64)], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((1, 30), dtype=np.int64)], axis=1)
    alone = onnx_embedder._forward(ids, mask)
    padded = onnx_embedder._forward(padded_ids, padded_mask)
    assert alone.shape == padded.shape == (1, 384)
    np.testing.assert_allclose(padded, alone, atol=1e-6)


def test_the_graph_uses_exact_gelu_and_fused_attention(numpy_embedder: Any) -> None:
    pytest.importorskip("onnx")
    from cert_core.measure._onnx import build_graph

    graph, weights = build_graph(numpy_embedder)
    ops = Counter(node.op_type for node in graph.graph.node)
    assert ops["Attention"] == ops["BiasGelu"] == 6  # one per layer; BiasGelu is erf-based
    assert ops["LayerNormalization"] == 13  # the embeddings' and two per layer
    assert not {"FastGelu", "Tanh"} & set(ops)  # the tanh approximation would change results
    # The weights stay out of the serialised graph: ONNX Runtime reads the arrays in place.
    assert len(graph.SerializeToString()) < 100_000
    assert sum(a.nbytes for a in weights.values()) > 80_000_000


def test_threads_is_passed_to_onnx_runtime(numpy_embedder: Any, onnx_embedder: Any) -> None:
    from cert_core.measure._onnx import OnnxEmbedder

    single = OnnxEmbedder(onnx_embedder.files, threads=1)
    assert single.session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(single.encode(TEXTS[:4]), onnx_embedder.encode(TEXTS[:4]), atol=1e-6)


def test_semantic_scores_agree_with_the_numpy_backend(numpy_embedder: Any, onnx_embedder: Any) -> None:
    reference = (
        "The board declared a dividend of $0.24 per share. Revenue fell 3 percent to $2.1 billion. "
        "The chief executive said demand in Europe recovered in the second half."
    )
    pairs = [
        ("A dividend of $0.24 per share was declared.", reference),
        ("Revenue rose sharply.", reference),
        ("The weather in Lisbon was sunny.", reference),
    ]
    fast = SemanticScorer(onnx_embedder).score_many(pairs)
    slow = SemanticScorer(numpy_embedder).score_many(pairs)
    assert [r.flags for r in fast] == [r.flags for r in slow]
    np.testing.assert_allclose([r.score for r in fast], [r.score for r in slow], atol=1e-5)


def test_auto_chooses_onnx_where_it_is_installed(onnx_embedder: Any) -> None:
    assert load_embedder().backend == "onnx"


@pytest.mark.parametrize("module", ["onnx", "onnxruntime"])
def test_auto_chooses_numpy_without_onnx(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    assert load_embedder().backend == "numpy"


@pytest.mark.parametrize("module", ["onnx", "onnxruntime"])
def test_the_onnx_backend_without_onnx_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ModelError) as info:
        load_embedder(backend="onnx")
    message = str(info.value)
    assert message.startswith("the onnx semantic backend needs onnx and onnxruntime (")
    assert module in message
    assert message.endswith('pip install "pytest-cert[onnx]"')


def test_unknown_backend_lists_onnx() -> None:
    with pytest.raises(ValueError, match=r"known: auto, numpy, sentence-transformers, onnx$"):
        load_embedder(backend="ort")


def test_auto_uses_numpy_with_a_warning_when_onnx_fails_to_import(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from cert_core.measure import _semantic

    real = _semantic.importlib.import_module

    def broken(name: str) -> Any:
        if name == "onnx":  # as an onnx built for another protobuf fails
            raise TypeError("Descriptors cannot be created directly")
        return real(name)

    monkeypatch.setattr(_semantic.importlib, "import_module", broken)
    with caplog.at_level("WARNING", logger="cert_core"):
        assert load_embedder().backend == "numpy"
    assert "TypeError: Descriptors cannot be created directly" in caplog.text
    assert "using the numpy backend" in caplog.text
    with pytest.raises(ModelError, match="TypeError: Descriptors cannot be created directly"):
        load_embedder(backend="onnx")


def test_auto_uses_numpy_with_a_warning_when_onnx_runtime_refuses_the_graph(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")

    class Refused(Exception):  # ONNX Runtime's own errors derive from Exception alone
        pass

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Refused("no kernel for Attention")

    monkeypatch.setattr(ort, "InferenceSession", refuse)
    with caplog.at_level("WARNING", logger="cert_core"):
        assert load_embedder().backend == "numpy"
    assert "refused the graph built from the model: no kernel for Attention" in caplog.text
    with pytest.raises(
        ModelError, match=r"failed to load on the onnx backend: ValueError: .*no kernel for Attention"
    ):
        load_embedder(backend="onnx")
