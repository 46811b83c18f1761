"""measure() with the real packaged all-MiniLM-L6-v2 model (no network, no mock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cert_core import TraceRecord
from cert_core.measure import (
    DEFAULT_MODEL,
    EntailmentError,
    Measurement,
    Measurer,
    ModelError,
    Preset,
    load_nli_model,
    measure,
    resolve_model,
)
from tests.conftest import make_record

CONTEXT = (
    "Apple reported quarterly revenue of $89.5 billion, down 1 percent year over year. "
    "Services revenue reached an all-time high of $22.3 billion. "
    "The board declared a cash dividend of $0.24 per share."
)


@pytest.fixture(scope="module")
def measurer() -> Measurer:
    # Every component computed, so the tests see the semantic score whatever the preset weights.
    return Measurer(semantic_unweighted=True)


def test_packaged_weights_are_verified() -> None:
    files = resolve_model(DEFAULT_MODEL)
    assert files.weights_sha256 == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    with pytest.raises(ModelError, match=r"has SHA-256 .* expected 0000"):
        resolve_model(DEFAULT_MODEL, sha256="0" * 64)


def test_unknown_model_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such folder"):
        resolve_model(tmp_path / "missing")
    with pytest.raises(ModelError, match=r"model\.safetensors is missing"):
        resolve_model(tmp_path)


def test_supported_answer_scores_above_a_contradicted_one(measurer: Measurer) -> None:
    good = measurer.measure("Apple's revenue was $89.5B, down 1%.", CONTEXT)
    bad = measurer.measure("Apple's revenue was $95.2B, up 8%.", CONTEXT)
    assert good.confidence is not None
    assert bad.confidence is not None
    assert good.confidence > bad.confidence + 0.15
    assert good.passed is True
    assert bad.passed is False
    assert bad.unsupported_terms[:2] == ["$95.2B", "8%"]
    assert good.semantic is not None
    assert 0.5 < good.semantic <= 1.0
    assert good.not_measured == {"entailment": "no NLI model configured"}
    assert "unsupported: '$95.2B', '8%'" in bad.explanation
    assert bad.explanation.startswith(f"confidence {bad.confidence:.2f} < threshold {bad.threshold:.2f}")


def test_semantic_similarity_orders_paraphrase_above_unrelated(measurer: Measurer) -> None:
    scorer = measurer.semantic_scorer()
    assert scorer is not None
    close, far = scorer.score_many(
        [
            ("The cat sat on the mat.", "A cat was sitting on the mat."),
            ("The cat sat on the mat.", "Quarterly revenue fell by one percent."),
        ]
    )
    assert close.score > 0.8
    assert far.score < 0.3


def test_measurements_are_deterministic_and_batch_equals_single(measurer: Measurer) -> None:
    pairs = [("Services revenue hit a record $22.3 billion.", CONTEXT), ("The dividend is $0.24.", CONTEXT)]
    batch = measurer.measure_many(pairs)
    single = [measurer.measure(a, r) for a, r in pairs]
    assert [m.confidence for m in batch] == pytest.approx([m.confidence for m in single], abs=1e-5)
    assert batch == measurer.measure_many(pairs)


def test_long_reference_is_split_into_passages_and_flagged(measurer: Measurer) -> None:
    filler = " ".join(f"Paragraph {i} talks about the weather in town number {i}." for i in range(60))
    reference = filler + " The dividend declared by the board is $0.24 per share."
    result = measurer.measure("The board declared a dividend of $0.24 per share.", reference)
    assert any(f.startswith("reference compared as") for f in result.flags)
    scorer = measurer.semantic_scorer()
    assert scorer is not None
    assert len(scorer.passages(reference)) > 4
    # The supporting sentence at the very end is found, not truncated away.
    without = measurer.measure("The board declared a dividend of $0.24 per share.", filler)
    assert result.semantic is not None
    assert without.semantic is not None
    assert result.semantic > without.semantic + 0.3


def test_threshold_and_preset(measurer: Measurer) -> None:
    answer = "Apple's revenue was $89.5B."
    partly = "Apple's revenue was $89.5B, up 8%."
    assert measurer.measure(partly, CONTEXT, threshold=0.99).passed is False
    assert measurer.measure(partly, CONTEXT, threshold=0.0).passed is True
    grounding_only = Preset("strict-terms", threshold=0.9, weights={"grounding": 1.0})
    result = measurer.measure(answer, CONTEXT, preset=grounding_only)
    assert result.weights == {"grounding": 1.0}
    assert result.confidence == result.grounding
    assert result.preset == "strict-terms"
    with pytest.raises(ValueError, match="unknown preset 'nope'; known: "):
        measurer.measure(answer, CONTEXT, preset="nope")
    with pytest.raises(ValueError, match="threshold must be a number between 0 and 1"):
        measurer.measure(answer, CONTEXT, threshold=1.5)


@pytest.mark.parametrize(
    ("answer", "reference", "message"),
    [
        ("", CONTEXT, "answer is empty"),
        ("   ", CONTEXT, "answer is empty"),
        (None, CONTEXT, "answer must be a string, got NoneType"),
        ("x", 42, "reference must be a string, got int"),
        ("x", "", "reference is empty"),
    ],
)
def test_bad_input_names_the_argument(measurer: Measurer, answer: Any, reference: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measurer.measure(answer, reference)


def test_bad_pair_in_a_batch_names_its_index(measurer: Measurer) -> None:
    with pytest.raises(ValueError, match="reference of pair 1 is empty"):
        measurer.measure_many([("a b c", CONTEXT), ("a b c", "")])
    with pytest.raises(ValueError, match="pair 0 must be"):
        measurer.measure_many(["just text"])  # type: ignore[list-item]


def test_a_model_that_fails_its_check_is_not_measured_not_guessed() -> None:
    broken = Measurer(semantic_sha256="0" * 64)
    both = Preset("both", threshold=0.5, weights={"semantic": 1.0, "grounding": 1.0})
    result = broken.measure("Apple's revenue was $89.5B.", CONTEXT, preset=both)
    assert result.semantic is None
    assert "expected 0000" in result.not_measured["semantic"]
    assert result.weights == {"grounding": 1.0}
    assert result.confidence == result.grounding


def test_nothing_measurable_gives_no_verdict() -> None:
    result = Measurer(semantic_enabled=False).measure("Yes.", CONTEXT)
    assert result.confidence is None
    assert result.passed is None
    assert set(result.not_measured) == {"semantic", "grounding", "claims", "entailment"}
    assert result.explanation.startswith("not measured: ")


def test_measurement_fills_a_trace_records_evaluation(
    trace_schema: dict[str, Any], measurer: Measurer
) -> None:
    m = measurer.measure("Services revenue was $22.3 billion.", CONTEXT)
    record = make_record(reference=CONTEXT, evaluation=m.to_dict())
    data = record.to_dict()
    jsonschema.validate(data, trace_schema)
    assert data["evaluation"]["confidence"] == m.confidence
    assert isinstance(record, TraceRecord)


def test_module_level_measure_uses_the_default_measurer() -> None:
    result = measure("Services revenue was $22.3 billion.", CONTEXT)
    assert isinstance(result, Measurement)
    assert result.confidence is not None


def test_an_unweighted_semantic_score_is_not_computed_unless_asked() -> None:
    unweighted = Preset("no-semantic", threshold=0.5, weights={"grounding": 1.0})
    weighted = Preset("with-semantic", threshold=0.5, weights={"semantic": 1.0, "grounding": 1.0})
    lazy = Measurer()
    result = lazy.measure("Services revenue was $22.3 billion.", CONTEXT, preset=unweighted)
    assert result.semantic is None
    assert "not weighted by preset 'no-semantic'" in result.not_measured["semantic"]
    assert lazy._semantic is None  # the model was not even loaded
    assert result.confidence == result.grounding
    counted = lazy.measure("Services revenue was $22.3 billion.", CONTEXT, preset=weighted)
    assert counted.semantic is not None
    assert "semantic" not in counted.not_measured
    asked = Measurer(semantic_unweighted=True).measure(
        "Services revenue was $22.3 billion.", CONTEXT, preset=unweighted
    )
    assert asked.semantic == counted.semantic
    assert asked.confidence == result.confidence  # shown, not counted


@pytest.fixture(scope="module")
def tiny_nli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 1-layer BERT NLI classifier, saved like a downloaded model."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-nli")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "revenue", "was", "dividend", "apple"]
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(vocab))
    config = transformers.BertConfig(
        vocab_size=len(words),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
        num_labels=3,
        id2label={0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"},
        label2id={"ENTAILMENT": 0, "NEUTRAL": 1, "CONTRADICTION": 2},
    )
    import torch

    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_nli_loader_scores_entailment_with_a_local_model(tiny_nli: Path, measurer: Measurer) -> None:
    nli = load_nli_model(tiny_nli)
    scores = nli.entailment([("the revenue was", "apple revenue"), ("the dividend", "the revenue")])
    assert len(scores) == 2
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == nli.entailment([("the revenue was", "apple revenue"), ("the dividend", "the revenue")])
    with_nli = Measurer(entailment=nli)
    weighted = Preset("with-nli", threshold=0.5, weights={"semantic": 1, "grounding": 1, "entailment": 1})
    result = with_nli.measure("Apple's revenue was $89.5B.", CONTEXT, preset=weighted)
    assert result.entailment is not None
    assert "entailment" not in result.not_measured
    assert set(result.weights) == {"semantic", "grounding", "entailment"}


def test_nli_loader_refuses_a_model_without_an_entailment_label(tiny_nli: Path, tmp_path: Path) -> None:
    import shutil

    import transformers

    copy = tmp_path / "no-entail"
    shutil.copytree(tiny_nli, copy)
    config = transformers.AutoConfig.from_pretrained(copy)
    config.id2label = {0: "A", 1: "B", 2: "C"}
    config.label2id = {"A": 0, "B": 1, "C": 2}
    config.save_pretrained(copy)
    with pytest.raises(EntailmentError, match="name no single 'entailment' class"):
        load_nli_model(copy)
    with pytest.raises(EntailmentError, match=r"no config\.json"):
        load_nli_model(tmp_path / "nowhere")


def test_a_failing_entailment_plugin_is_reported_not_scored() -> None:
    class Broken:
        name = "broken"

        def entailment(self, pairs: Any) -> list[float]:
            raise RuntimeError("model crashed")

    result = Measurer(entailment=Broken(), semantic_enabled=False).measure("Revenue was $89.5B.", CONTEXT)
    assert result.entailment is None
    assert result.not_measured["entailment"] == "RuntimeError: model crashed"


def test_packaged_presets_come_from_calibration() -> None:
    from cert_core.measure import PRESETS

    general = PRESETS["general"]
    assert general.source["script"] == "bench/validate.py --write-presets"
    assert "HaluEval" in general.source["data"]
    for name in ("financial", "legal", "healthcare"):
        assert PRESETS[name].weights == general.weights
        assert PRESETS[name].threshold >= general.threshold
    assert PRESETS["healthcare"].threshold >= PRESETS["financial"].threshold


class _Keyword:
    """A custom scorer: 1.0 when the answer names the keyword, else 0.0; None for empty keyword."""

    def __init__(self, keyword: str, weight: float = 1.0, name: str = "keyword") -> None:
        self.name, self.weight, self.keyword = name, weight, keyword

    def score(self, answer: str, reference: str) -> float | None:
        if not self.keyword:
            return None
        return 1.0 if self.keyword in answer else 0.0


def test_extra_component_joins_the_weighted_mean() -> None:
    measurer = Measurer(semantic_enabled=False)
    answer, reference = "Paris is the capital of France.", "The capital of France is Paris."
    plain = measurer.measure(answer, reference)
    with_extra = measurer.measure(answer, reference, components=[_Keyword("Lyon", weight=1.0)])
    assert with_extra.extra == {"keyword": 0.0}
    assert with_extra.weights == {"claims": 0.5, "keyword": 0.5}
    assert plain.claims is not None
    assert with_extra.confidence == pytest.approx(plain.claims / 2)
    assert "keyword 0.00 (weight 0.5)" in with_extra.explanation


def test_extra_component_that_cannot_judge_is_not_measured_not_scored() -> None:
    measurer = Measurer(semantic_enabled=False)
    m = measurer.measure("Paris is in France.", "Paris is in France.", components=[_Keyword("")])
    assert m.extra == {"keyword": None}
    assert m.not_measured["keyword"] == "the scorer returned no score"
    assert m.weights == {"claims": 1.0}


def test_broken_extra_component_is_reported_with_its_error() -> None:
    class Broken(_Keyword):
        def score(self, answer: str, reference: str) -> float | None:
            raise RuntimeError("judge offline")

    class OutOfRange(_Keyword):
        def score(self, answer: str, reference: str) -> float | None:
            return 1.5

    measurer = Measurer(semantic_enabled=False)
    m = measurer.measure("Paris.", "Paris.", components=[Broken("x"), OutOfRange("x", name="range")])
    assert m.not_measured["keyword"] == "RuntimeError: judge offline"
    assert m.not_measured["range"] == "the scorer returned 1.5, not a number in [0, 1]"


@pytest.mark.parametrize(
    ("component", "problem"),
    [
        (_Keyword("x", name="grounding"), "already taken"),
        (_Keyword("x", name="not valid"), "must be an identifier"),
        (_Keyword("x", weight=-1), "weight must be a number >= 0"),
    ],
)
def test_bad_extra_components_are_refused(component: _Keyword, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Measurer(semantic_enabled=False).measure("a b", "a b", components=[component])
