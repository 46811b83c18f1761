from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cert_core
from cert_core import RecordError, TraceReadError, TraceRecord, TraceWriter, read_traces
from cert_core._records import check_formats, format_span_times, formats_ok
from cert_core.uncertainty import Uncertainty
from tests.conftest import make_record


def test_record_round_trips_through_dict_and_validates_against_the_shipped_schema(
    trace_schema: dict[str, Any],
) -> None:
    record = make_record(3, parent_span_id=cert_core.new_span_id(), finish_reasons=["stop"], stream=True)
    data = record.to_dict()
    jsonschema.validate(data, trace_schema)
    assert data["schema"] == "cert.trace/1"
    assert TraceRecord.from_dict(data) == record


def test_llm_record_with_unknown_price_carries_explicit_null_cost(trace_schema: dict[str, Any]) -> None:
    record = make_record(cost_usd=None, price_source=None, price_error="unknown model")
    data = record.to_dict()
    assert "cost_usd" in data
    assert data["cost_usd"] is None
    jsonschema.validate(data, trace_schema)
    function = make_record(kind="function", cost_usd=None, provider=None, operation=None)
    assert "cost_usd" not in function.to_dict()


def test_timestamps_are_utc_with_microseconds() -> None:
    ns = 1_764_000_000_123_456_789
    text = cert_core.format_timestamp(ns)
    assert text == "2025-11-24T16:00:00.123456Z"
    assert cert_core.parse_timestamp(text) == datetime(2025, 11, 24, 16, 0, 0, 123456, tzinfo=timezone.utc)
    record = make_record()
    assert record.start.tzinfo is not None
    assert record.end > record.start


@settings(max_examples=500, deadline=None)
@given(
    start_ns=st.integers(0, 4_102_444_800_000_000_000),  # up to 2100
    duration_ns=st.one_of(st.integers(0, 2_000_000), st.integers(0, 3_000_000_000_000)),
)
def test_span_times_match_the_calendar(start_ns: int, duration_ns: int) -> None:
    """The cached-second, digit-table formatting agrees with datetime, within a second and
    across second, day and year boundaries."""

    def reference(ns: int) -> str:
        stamp = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 1000 % 1_000_000:06d}Z"

    start, end = format_span_times(start_ns, duration_ns)
    assert (start, end) == (reference(start_ns), reference(start_ns + duration_ns))
    assert cert_core.format_timestamp(start_ns) == start


def test_timestamps_before_1970_and_from_floats() -> None:
    assert cert_core.format_timestamp(-1) == "1969-12-31T23:59:59.999999Z"
    assert format_span_times(-500_000_000, 10) == ("1969-12-31T23:59:59.500000Z",) * 2
    assert cert_core.format_timestamp(1.7e18) == "2023-11-14T22:13:20.000000Z"


def test_ids_are_w3c_hex() -> None:
    trace_ids = {cert_core.new_trace_id() for _ in range(1000)}
    span_ids = {cert_core.new_span_id() for _ in range(1000)}
    assert len(trace_ids) == len(span_ids) == 1000
    assert all(len(t) == 32 and int(t, 16) and t == t.lower() for t in trace_ids)
    assert all(len(s) == 16 and int(s, 16) and s == s.lower() for s in span_ids)


def test_root_ids_are_drawn_together_and_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from cert_core import _records

    pairs = [_records.new_root_ids() for _ in range(1000)]
    assert len({t for t, _ in pairs}) == len({s for _, s in pairs}) == 1000
    assert all(len(t) == 32 and int(t, 16) and len(s) == 16 and int(s, 16) for t, s in pairs)
    # A draw with an all-zero part (invalid in W3C trace context) is drawn again.
    draws = iter([0xABC, 2**100])  # 0xABC leaves the 128-bit trace id part all zero
    monkeypatch.setattr(_records._rng, "getrandbits", lambda bits: next(draws, 5))
    trace_id, span_id = _records.new_root_ids()
    assert int(trace_id, 16)
    assert int(span_id, 16)


def test_ids_stay_unique_when_the_application_seeds_random() -> None:
    import random

    random.seed(7)
    first = cert_core.new_trace_id()
    random.seed(7)
    assert cert_core.new_trace_id() != first


BAD_FIELDS = [
    ("trace_id", "XYZ" * 10 + "ab", "trace_id"),
    ("trace_id", "0" * 32, "trace_id"),
    ("trace_id", 12, "trace_id"),
    ("span_id", "abc", "span_id"),
    ("start_time", "2026-01-31 12:00:00", "start_time"),
    ("start_time", "2026-13-31T12:00:00.000000Z", "start_time"),
    ("end_time", "2026-02-30T12:00:00.000000Z", "end_time"),
    ("duration_ms", -1, "duration_ms"),
    ("duration_ms", "12", "duration_ms"),
    ("duration_ms", True, "duration_ms"),
    ("kind", "tool", "kind"),
    ("operation", "chitchat", "operation"),
    ("cost_usd", -0.5, "cost_usd"),
    ("usage", {"input_tokens": -3}, "usage.input_tokens"),
    ("usage", {"input_tokens": 1.5}, "usage.input_tokens"),
    ("usage", {"prompt_tokens": 3}, "usage.prompt_tokens"),
    ("finish_reasons", "stop", "finish_reasons"),
    ("error", {"type": "X"}, "error.message"),
    ("stream", "yes", "stream"),
    ("uncertainty", {"tokens": 3}, "uncertainty.mean_logprob"),
    ("seq", -1, "seq"),
    ("seq", 2**63, "seq"),  # past a signed 64-bit integer, which other tools cannot hold
    ("usage", {"output_tokens": 2**64}, "usage.output_tokens"),
    ("prev", "f" * 63, "prev"),
    ("surprise", 1, "surprise"),
]


@pytest.mark.parametrize(("field", "value", "named"), BAD_FIELDS)
def test_from_dict_names_the_bad_field(
    field: str, value: Any, named: str, trace_schema: dict[str, Any]
) -> None:
    data = make_record().to_dict()
    data[field] = value
    if field in ("seq", "prev"):
        data.update({"chain": "a" * 32, "seq": 1, "prev": "0" * 64, field: value})
    with pytest.raises(RecordError) as info:
        TraceRecord.from_dict(data)
    assert info.value.field == named
    assert named in str(info.value)
    # The JSON Schema rejects the same object (except calendar dates, which a pattern cannot see).
    if "02-30" not in str(value) and "13-31" not in str(value):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, trace_schema)


@pytest.mark.parametrize("missing", ["trace_id", "span_id", "start_time", "end_time", "duration_ms", "kind"])
def test_missing_required_field_is_named(missing: str) -> None:
    data = make_record().to_dict()
    del data[missing]
    with pytest.raises(RecordError, match=f"^{missing}: required field is missing"):
        TraceRecord.from_dict(data)


def test_chain_fields_go_together() -> None:
    data = make_record().to_dict()
    data["chain"] = "a" * 32
    with pytest.raises(RecordError, match="go together"):
        TraceRecord.from_dict(data)


LEGACY = {
    "timestamp": "2025-01-15T10:30:00Z",
    "platform": "openai",
    "model": "gpt-3.5-turbo",
    "function": "my_function",
    "input_data": "What is 2+2?",
    "output_data": "2+2 equals 4",
    "context": "Ground truth context for evaluation",
    "cost": 0.000011,
    "confidence": 0.94,
    "metadata": {"tokens": {"prompt": 12, "completion": 5}, "latency_ms": 234, "service": "bot"},
}


def test_legacy_cert_record_is_converted(trace_schema: dict[str, Any]) -> None:
    record = TraceRecord.from_dict(LEGACY)
    assert record.schema == cert_core.LEGACY_SCHEMA
    assert record.kind == "llm"
    assert record.provider == "openai"
    assert record.request_model == record.response_model == "gpt-3.5-turbo"
    assert record.input == "What is 2+2?"
    assert record.output == "2+2 equals 4"
    assert record.reference == "Ground truth context for evaluation"
    assert record.cost_usd == pytest.approx(0.000011)
    assert record.evaluation == {"confidence": 0.94}
    assert record.usage == cert_core.Usage(input_tokens=12, output_tokens=5)
    assert record.duration_ms == 234
    assert record.start_time == "2025-01-15T10:30:00.000000Z"
    assert record.end_time == "2025-01-15T10:30:00.234000Z"
    assert record.metadata == {"service": "bot"}
    assert record.function == "my_function"
    # Same line, same ids: reading a legacy log twice is stable.
    assert TraceRecord.from_dict(dict(LEGACY)).trace_id == record.trace_id
    jsonschema.validate(record.to_dict(), trace_schema)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"cost": "cheap"}, "cost"),
        ({"metadata": {"latency_ms": -5}}, "metadata.latency_ms"),
        ({"metadata": {"tokens": {"prompt": "12"}}}, "metadata.tokens.prompt"),
        ({"platform": 3}, "platform"),
        ({"confidence": 7}, "confidence"),
        ({"metadata": {"latency_ms": 1e300}}, "metadata.latency_ms"),
        ({"metadata": {"latency_ms": 10**400}}, "metadata.latency_ms"),
        ({"cost": 10**400}, "cost"),  # too large for a float
        ({"metadata": {"tokens": {"completion": 2**63}}}, "metadata.tokens.completion"),
        ({"timestamp": "9999-12-31T23:59:59.999999", "metadata": {"latency_ms": 5}}, "metadata.latency_ms"),
    ],
)
def test_bad_legacy_record_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(RecordError) as info:
        TraceRecord.from_dict({**LEGACY, **change})
    assert info.value.field == field


@pytest.mark.parametrize(
    ("timestamp", "start_time"),
    [
        ("2025-01-15T10:30:00", "2025-01-15T10:30:00.000000Z"),  # no zone: UTC
        ("2025-01-15T10:30:00Z", "2025-01-15T10:30:00.000000Z"),
        ("2025-01-15T10:30:00+05:30", "2025-01-15T05:00:00.000000Z"),
        ("2025-01-15T10:30:00-05:00", "2025-01-15T15:30:00.000000Z"),
        ("2025-01-15T10:30:00-0500", "2025-01-15T15:30:00.000000Z"),
        ("1969-12-31T23:59:59.5", "1969-12-31T23:59:59.500000Z"),  # before 1970, not rounded up
    ],
)
def test_legacy_timestamps_keep_their_zone_and_instant(timestamp: str, start_time: str) -> None:
    record = TraceRecord.from_dict({**LEGACY, "timestamp": timestamp})
    assert record.start_time == start_time
    assert record.end - record.start == timedelta(milliseconds=234)


def test_records_are_immutable_and_replace_copies() -> None:
    record = make_record()
    with pytest.raises(AttributeError):
        record.output = "changed"  # type: ignore[misc]
    changed = record.replace(output="changed")
    assert changed.output == "changed"
    assert record.output == "answer 0"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
hex_id = st.integers(1, 2**128 - 1).map(lambda n: f"{n:032x}")
span = st.integers(1, 2**64 - 1).map(lambda n: f"{n:016x}")
stamp = st.integers(0, 4_000_000_000_000_000).map(lambda us: cert_core.format_timestamp(us * 1000))
counts = st.integers(0, 10**9)


@st.composite
def records(draw: st.DrawFn) -> TraceRecord:
    kind = draw(st.sampled_from(["llm", "function"]))
    optional = {
        "parent_span_id": span,
        "provider": st.text(max_size=20),
        "operation": st.sampled_from(["chat", "text_completion", "embeddings", "responses"]),
        "request_model": st.text(max_size=20),
        "response_model": st.text(max_size=20),
        "input": json_values,
        "output": json_values,
        "usage": st.builds(
            cert_core.Usage,
            input_tokens=counts,
            output_tokens=counts,
            cache_read_input_tokens=counts,
            cache_creation_input_tokens=counts,
            reasoning_tokens=counts,
        ),
        "usage_estimated": st.booleans(),
        "cost_usd": st.floats(0, 1e6, allow_nan=False),
        "price_source": st.text(max_size=20),
        "price_error": st.text(max_size=20),
        "finish_reasons": st.lists(st.text(max_size=10), max_size=3),
        "stream": st.booleans(),
        "ttft_ms": st.floats(0, 1e6, allow_nan=False),
        "incomplete": st.booleans(),
        "uncertainty": st.builds(
            Uncertainty,
            tokens=st.integers(1, 10**9),
            mean_logprob=st.floats(-1e4, 0),
            perplexity=st.floats(1, 1.7976931348623157e308),
            mean_entropy=st.none() | st.floats(0, 20),
            top_k=st.none() | st.integers(1, 20),
            source=st.text(max_size=20),
        ),
        "error": st.builds(
            cert_core.CallError,
            type=st.text(max_size=10),
            message=st.text(max_size=30),
            status=st.none() | counts,
        ),
        "request": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        "function": st.text(max_size=20),
        "test_id": st.text(max_size=40),
        "reference": json_values,
        "evaluation": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        "metadata": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        "replayed": st.booleans(),
    }
    fields: dict[str, Any] = {}
    for name, strategy in optional.items():
        if draw(st.booleans()):
            fields[name] = draw(strategy)
    start = draw(stamp)
    return TraceRecord(
        schema=cert_core.SCHEMA,
        trace_id=draw(hex_id),
        span_id=draw(span),
        start_time=start,
        end_time=start,
        duration_ms=draw(st.floats(0, 1e9, allow_nan=False)),
        kind=kind,
        **fields,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(records(), min_size=1, max_size=5))
def test_any_valid_record_survives_write_then_read_unchanged(
    batch: list[TraceRecord], tmp_path: Path, trace_schema: dict[str, Any]
) -> None:
    path = tmp_path / f"{cert_core.new_span_id()}.jsonl"
    with TraceWriter(path) as writer:
        for record in batch:
            writer.write(record)
    back = list(read_traces(path))
    assert [r.replace(chain=None, seq=None, prev=None) for r in back] == batch
    assert [r.seq for r in back] == list(range(len(batch)))
    for line in path.read_bytes().splitlines():
        jsonschema.validate(msgspec.json.decode(line), trace_schema)


def _line(**changes: Any) -> dict[str, Any]:
    data = make_record(chain="c" * 32, seq=0, prev="0" * 64).to_dict()
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_line(error={"type": "E", "message": "m", "extra": 1}), id="error-extra-key"),
        pytest.param(_line(usage={"input_tokens": 1, "extra": 1}), id="usage-extra-key"),
        pytest.param(_line(chain=None), id="seq-and-prev-without-chain"),
        pytest.param(_line(seq=None), id="chain-and-prev-without-seq"),
        pytest.param(_line(prev=None), id="chain-and-seq-without-prev"),
        pytest.param(_line(chain=None, prev=None), id="seq-alone"),
        pytest.param(_line(chain="0" * 32), id="all-zero-chain"),
        pytest.param(_line(trace_id="A" * 32), id="upper-case-id"),
        pytest.param(_line(kind="tool"), id="unknown-kind"),
        pytest.param(_line(extra=1), id="unknown-field"),
        pytest.param(_line(seq=2**63), id="seq-past-64-bits"),
    ],
)
def test_schema_and_reader_reject_the_same_lines(
    data: dict[str, Any], trace_schema: dict[str, Any], tmp_path: Path
) -> None:
    """What the shipped JSON Schema accepts, the reader reads, and what one refuses the other does."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, trace_schema)
    path = tmp_path / "t.jsonl"
    path.write_bytes(msgspec.json.encode(data) + b"\n")
    with pytest.raises(TraceReadError, match=r"t\.jsonl:1: "):
        list(read_traces(path))


def test_schema_requires_an_llm_records_cost_which_the_reader_takes_as_unknown(
    trace_schema: dict[str, Any], tmp_path: Path
) -> None:
    data = _line(cost_usd=None)
    assert data["kind"] == "llm"
    with pytest.raises(jsonschema.ValidationError, match="cost_usd"):
        jsonschema.validate(data, trace_schema)
    jsonschema.validate({**data, "cost_usd": None}, trace_schema)  # unknown, stated
    path = tmp_path / "t.jsonl"
    path.write_bytes(msgspec.json.encode(data) + b"\n")
    (record,) = read_traces(path)
    assert record.cost_usd is None


# Malformed values of the right length (msgspec checks lengths while decoding, before either check).
CORRUPTIONS = [
    ("trace_id", "A" * 32),
    ("trace_id", "0" * 32),
    ("span_id", "0" * 16),
    ("span_id", "0123456789abcdeg"),
    ("parent_span_id", "0" * 16),
    ("parent_span_id", "0123456789ABCDEF"),
    ("chain", "0" * 32),
    ("chain", None),
    ("seq", None),
    ("prev", None),
    ("prev", "f" * 63 + "G"),
    ("start_time", "2026-02-30T12:00:00.000000Z"),
    ("start_time", "2026-01-31T12:00:00,000000Z"),
    ("end_time", "2026-01-31T24:00:00.000000Z"),
    ("end_time", "2026-01-31T12:00:60.000000Z"),
    ("end_time", "2026-01-31T12:0a:00.000000Z"),
    # In the record's own minute, so a block in one minute holds it as its latest stamp.
    ("end_time", lambda stamp: stamp[:17] + "60" + stamp[19:]),
    ("start_time", lambda stamp: stamp[:17] + "7" + stamp[18:]),
]


@st.composite
def blocks(draw: st.DrawFn) -> list[TraceRecord]:
    """A reader's block: valid records, all chained or none, stamps in one minute or spread."""
    batch = draw(st.lists(records(), min_size=1, max_size=12))
    if draw(st.booleans()):  # one minute: the fast calendar path
        base = draw(st.integers(0, 4_000_000_000)) * 60_000_000
        stamps = [cert_core.format_timestamp((base + draw(st.integers(0, 59_999_999))) * 1000) for _ in batch]
        batch = [r.replace(start_time=s, end_time=s) for r, s in zip(batch, stamps, strict=True)]
    if draw(st.booleans()):
        chain = draw(hex_id)
        batch = [
            r.replace(chain=chain, seq=i, prev=draw(st.sampled_from(["0" * 64, "ab" * 32])))
            for i, r in enumerate(batch)
        ]
    return batch


@settings(max_examples=200, deadline=None)
@given(block=blocks(), corruption=st.none() | st.tuples(st.integers(0, 11), st.sampled_from(CORRUPTIONS)))
def test_block_check_passes_exactly_the_blocks_whose_every_record_passes(
    block: list[TraceRecord], corruption: tuple[int, tuple[str, Any]] | None
) -> None:
    if corruption is not None:
        index, (field, value) = corruption
        index %= len(block)
        if callable(value):
            value = value(getattr(block[index], field))
        block[index] = msgspec.structs.replace(block[index], **{field: value})
    every_record_passes = all(check_formats(r) is None for r in block)
    if corruption is not None and corruption[1][0] not in ("parent_span_id", "chain", "seq", "prev"):
        assert not every_record_passes  # the corruption is one the per-record check rejects
    if not every_record_passes:
        assert not formats_ok(block)
    else:
        # The fast path answers "check each" only for the cases it documents.
        uniform = len({r.chain is None for r in block}) == 1
        ids = [i for r in block for i in (r.trace_id, r.span_id, r.parent_span_id, r.chain) if i]
        assert formats_ok(block) is (uniform and not any("0" * 16 in i for i in ids))


def test_block_check_passes_an_empty_block_and_blank_lines_read_as_nothing(tmp_path: Path) -> None:
    assert formats_ok([])
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\n\n \n")
    assert list(read_traces(blank)) == []


def test_block_check_judges_each_id_alone() -> None:
    # Zeros ending one id and starting the next make no all-zero id, and pass on the fast path.
    block = [
        make_record().replace(trace_id="1" * 24 + "0" * 8, span_id="0" * 8 + "1" * 8),
        make_record().replace(trace_id="0" * 8 + "2" * 24),
    ]
    assert all(check_formats(r) is None for r in block)
    assert formats_ok(block)
    # An id with a stray space is caught although spaces separate the ids.
    bad = [*block, msgspec.structs.replace(make_record(), span_id="1" * 8 + " " + "1" * 7)]
    assert check_formats(bad[-1]) is not None
    assert not formats_ok(bad)
