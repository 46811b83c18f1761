from __future__ import annotations

import math
import sys
from typing import Any

import jsonschema
import msgspec
import pytest

from cert_core import RecordError, TraceRecord
from cert_core.uncertainty import LOGPROB_FLOOR, Uncertainty, logprob_stats, top_k_entropy
from tests.conftest import make_record


def test_mean_logprob_and_perplexity_by_hand() -> None:
    stats = logprob_stats([-0.1, -0.2, -0.3])
    assert stats is not None
    assert stats.tokens == 3
    assert stats.mean_logprob == pytest.approx(-0.2)
    assert stats.perplexity == pytest.approx(math.exp(0.2))  # 1.2214...
    assert stats.mean_entropy is None  # no top logprobs: not measured, not 0
    assert stats.top_k is None
    assert stats.source == "openai.logprobs"


def test_entropy_of_two_tokens_by_hand() -> None:
    # Top-2 logprobs log(0.3), log(0.1): renormalised to 0.75 and 0.25, so
    # H = -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.215762... + 0.346574... = 0.562335 nats.
    assert top_k_entropy([math.log(0.3), math.log(0.1)]) == pytest.approx(0.5623351446188083)
    # Equal alternatives: log(k), whatever their common probability.
    assert top_k_entropy([-7.0, -7.0, -7.0, -7.0]) == pytest.approx(math.log(4))
    assert top_k_entropy([-1e-9]) == 0.0  # k = 1: one certain token


def test_mean_entropy_is_over_tokens_with_top_logprobs() -> None:
    tops = [[math.log(0.5), math.log(0.5)], [0.0], []]  # ln 2, 0, and a token without alternatives
    stats = logprob_stats([-0.7, 0.0, -0.1], tops, source="test")
    assert stats is not None
    assert stats.mean_entropy == pytest.approx(math.log(2) / 2)
    assert stats.top_k == 2
    assert stats.source == "test"


def test_k_equal_one_has_zero_entropy_not_null() -> None:
    stats = logprob_stats([-0.01, -0.02], [[-0.01], [-0.02]])
    assert stats is not None
    assert stats.top_k == 1
    assert stats.mean_entropy == 0.0


def test_no_tokens_is_not_measured() -> None:
    assert logprob_stats([]) is None
    assert logprob_stats([], [[]]) is None


def test_certain_tokens_give_perplexity_one() -> None:
    stats = logprob_stats([0.0, -0.0, 0.0])
    assert stats is not None
    assert stats.mean_logprob == 0.0
    assert math.copysign(1.0, stats.mean_logprob) == 1.0  # written as 0.0, not -0.0
    assert stats.perplexity == 1.0


def test_minus_infinity_and_tiny_positives_are_clamped() -> None:
    stats = logprob_stats([-math.inf, 1e-9])
    assert stats is not None
    assert stats.mean_logprob == LOGPROB_FLOOR / 2
    assert math.isfinite(stats.perplexity)
    # An alternative at -inf has probability 0: it adds nothing to the entropy.
    assert top_k_entropy([math.log(0.5), math.log(0.5), -math.inf]) == pytest.approx(math.log(2))


def test_very_negative_logprobs_saturate_perplexity_instead_of_overflowing() -> None:
    stats = logprob_stats([-9999.0])
    assert stats is not None
    assert stats.perplexity == sys.float_info.max
    # Underflow in the top-k distribution: every alternative is far below the first.
    assert top_k_entropy([-800.0, -5000.0, -9999.0]) == 0.0
    # All alternatives far out but equal: still log(k), thanks to the max shift.
    assert top_k_entropy([-9000.0, -9000.0]) == pytest.approx(math.log(2))


def test_entropy_is_accurate_for_a_near_certain_token() -> None:
    # p = (1 - e, e) with e = 1e-12: H = -(1-e) ln(1-e) - e ln e ~= e (1 - ln e)
    e = 1e-12
    h = top_k_entropy([math.log1p(-e), math.log(e)])
    assert h == pytest.approx(e * (1 - math.log(e)), rel=1e-6)


@pytest.mark.parametrize("bad", [[math.nan], [-0.1, math.nan, -0.2], [math.inf]])
def test_nan_or_plus_infinity_is_an_error(bad: list[float]) -> None:
    with pytest.raises(ValueError, match=r"NaN|inf"):
        logprob_stats(bad)


def test_nan_in_top_logprobs_is_an_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        logprob_stats([-0.1], [[-0.1, math.nan]])


def test_integers_are_read_as_numbers() -> None:
    # JSON may carry a logprob of 0 as an integer.
    stats = logprob_stats([0, -1], [[0, -1], [-1]])
    assert stats is not None
    assert stats.mean_logprob == -0.5


def test_field_round_trips_and_validates(trace_schema: dict[str, Any]) -> None:
    stats = logprob_stats([-0.1, -0.2, -0.3], [[-0.1, -2.4], [-0.2, -1.7], [-0.3, -1.4]])
    record = make_record(uncertainty=stats)
    data = record.to_dict()
    jsonschema.validate(data, trace_schema)
    assert set(data["uncertainty"]) == {
        "tokens",
        "mean_logprob",
        "perplexity",
        "mean_entropy",
        "top_k",
        "source",
    }
    assert TraceRecord.from_dict(data) == record
    assert msgspec.json.decode(msgspec.json.encode(record), type=TraceRecord) == record
    # Without top logprobs the two fields are written as null, not left out.
    plain = make_record(uncertainty=logprob_stats([-0.5])).to_dict()
    assert plain["uncertainty"]["mean_entropy"] is None
    assert plain["uncertainty"]["top_k"] is None
    jsonschema.validate(plain, trace_schema)


def test_records_without_the_field_still_read(trace_schema: dict[str, Any]) -> None:
    data = make_record().to_dict()
    assert "uncertainty" not in data
    assert TraceRecord.from_dict(data).uncertainty is None
    jsonschema.validate(data, trace_schema)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tokens": 0}, "uncertainty.tokens"),
        ({"mean_logprob": 0.5}, "uncertainty.mean_logprob"),
        ({"perplexity": 0.9}, "uncertainty.perplexity"),
        ({"mean_entropy": -0.1}, "uncertainty.mean_entropy"),
        ({"top_k": 0}, "uncertainty.top_k"),
        ({"surprise": 1}, "uncertainty.surprise"),
    ],
)
def test_bad_uncertainty_is_named_and_the_schema_agrees(
    change: dict[str, Any], named: str, trace_schema: dict[str, Any]
) -> None:
    data = make_record(uncertainty=logprob_stats([-0.1], [[-0.1, -3.0]])).to_dict()
    data["uncertainty"].update(change)
    with pytest.raises(RecordError, match=named.replace(".", r"\.")) as info:
        TraceRecord.from_dict(data)
    assert info.value.field == named
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, trace_schema)


def test_missing_part_is_named() -> None:
    data = make_record(uncertainty=logprob_stats([-0.1])).to_dict()
    del data["uncertainty"]["mean_entropy"]
    with pytest.raises(RecordError, match=r"uncertainty\.mean_entropy: required field is missing"):
        TraceRecord.from_dict(data)


def test_uncertainty_is_immutable() -> None:
    stats = Uncertainty(
        tokens=1, mean_logprob=-0.1, perplexity=1.1, mean_entropy=None, top_k=None, source="x"
    )
    with pytest.raises(AttributeError):
        stats.tokens = 2  # type: ignore[misc]
