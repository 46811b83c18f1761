"""The trace record, schema ``cert.trace/1``: one JSON object per line.

Field names follow the OpenTelemetry GenAI semantic conventions where one exists, so an export to
OTel spans is a rename. The JSON Schema shipped in ``cert_core/schemas/trace.schema.json`` is the
contract; the msgspec types below enforce the same rules at C speed when a line is decoded (a
JSON Schema validator is far too slow for the reader's hot path; a test keeps the two in agreement).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from operator import attrgetter, itemgetter
from typing import Annotated, Any, Final, Literal

import msgspec

from .uncertainty import Uncertainty

__all__ = [
    "LEGACY_SCHEMA",
    "MAX_COUNT",
    "SCHEMA",
    "CallError",
    "RecordError",
    "TraceRecord",
    "Usage",
    "check_formats",
    "format_span_times",
    "format_timestamp",
    "formats_ok",
    "from_legacy",
    "json_fallback",
    "new_root_ids",
    "new_span_id",
    "new_trace_id",
    "parse_timestamp",
]

SCHEMA: Final = "cert.trace/1"
#: Value of ``schema`` on records converted from the original CERT framework's log format.
LEGACY_SCHEMA: Final = "cert.legacy"

Kind = Literal["llm", "function"]
Operation = Literal["chat", "text_completion", "embeddings", "responses"]


class RecordError(ValueError):
    """A value that does not fit schema ``cert.trace/1``; ``field`` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# Our own generator, seeded from the OS and reseeded in forked children: ids must stay unique
# even when the application seeds the global ``random`` module (tests often do).
_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)


# bytes.hex() is about twice as fast as "%032x" formatting; these run once or twice per call.
def new_trace_id() -> str:
    """A random W3C trace id: 32 lowercase hex digits, never all zero."""
    return (_rng.getrandbits(128) or 1).to_bytes(16, "big").hex()


def new_root_ids() -> tuple[str, str]:
    """A new trace id and the id of its root span, drawn at once (a root span starts every
    traced call made outside another)."""
    ids = _rng.getrandbits(192).to_bytes(24, "big").hex()
    trace_id, span_id = ids[:32], ids[32:]
    if trace_id == "0" * 32 or span_id == "0" * 16:  # one chance in 2**64: draw again
        return new_trace_id(), new_span_id()
    return trace_id, span_id


def new_span_id() -> str:
    """A random W3C span id: 16 lowercase hex digits, never all zero."""
    return (_rng.getrandbits(64) or 1).to_bytes(8, "big").hex()


_last_second: tuple[int | None, str] = (None, "")  # no second yet (-1 is a real one: 1969)
# "000" to "999": a microsecond count is written as two of these (a third cheaper than "%06d").
_DIGITS3 = tuple(f"{i:03d}" for i in range(1000))


def _second(seconds: int) -> tuple[int | None, str]:
    """The second's ``YYYY-MM-DDTHH:MM:SS.``, cached: records made in the same second share it."""
    global _last_second
    cached = _last_second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds)))
    return cached


def format_timestamp(ns: int) -> str:
    """UTC ISO 8601 with microseconds and a ``Z`` suffix, from nanoseconds since the epoch."""
    seconds, micros = divmod(int(ns) // 1000, 1_000_000)
    cached = _last_second  # one read: another thread may replace it, never half-update it
    if cached[0] != seconds:
        cached = _second(seconds)
    return f"{cached[1]}{_DIGITS3[micros // 1000]}{_DIGITS3[micros % 1000]}Z"


def format_span_times(start_ns: int, duration_ns: int) -> tuple[str, str]:
    """``(start_time, end_time)`` of a span, as :func:`format_timestamp` writes them; a span
    within one second (nearly all) formats its second once.

    One division of the (three-digit) nanosecond count, then only one-digit integers; each
    stamp is one f-string, a single allocation where ``+`` would make three.
    """
    seconds, ns = divmod(start_ns, 1_000_000_000)
    cached = _last_second
    if cached[0] != seconds:
        cached = _second(seconds)
    digits, second, us = _DIGITS3, cached[1], ns // 1000
    start = f"{second}{digits[us // 1000]}{digits[us % 1000]}Z"
    end_ns = ns + duration_ns
    if 0 <= end_ns < 1_000_000_000:
        us = end_ns // 1000
        return start, f"{second}{digits[us // 1000]}{digits[us % 1000]}Z"
    return start, format_timestamp(start_ns + duration_ns)


def parse_timestamp(value: str) -> datetime:
    """Parse a record timestamp (``Z`` or an explicit offset) into an aware UTC datetime."""
    parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return parsed.astimezone(timezone.utc)


# Ids, timestamps and hashes are checked by check_formats() after decoding: string methods are
# several times cheaper than msgspec's per-field regex calls on the reader's hot path.
# Their lengths are checked by msgspec (in C) while decoding.
TraceId = Annotated[str, msgspec.Meta(min_length=32, max_length=32)]
SpanId = Annotated[str, msgspec.Meta(min_length=16, max_length=16)]
Timestamp = Annotated[str, msgspec.Meta(min_length=27, max_length=27)]
Hash = Annotated[str, msgspec.Meta(min_length=64, max_length=64)]
#: The largest token count or ``seq`` a record may hold: a signed 64-bit integer, what
#: databases, numpy and other tools can hold.
MAX_COUNT = 2**63 - 1
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
Millis = Annotated[float, msgspec.Meta(ge=0)]
Usd = Annotated[float, msgspec.Meta(ge=0)]

# What a pattern or range failure means, in words, for error messages.
_EXPECTED = {
    "trace_id": "32 lowercase hex digits, not all zero",
    "chain": "32 lowercase hex digits, not all zero",
    "span_id": "16 lowercase hex digits, not all zero",
    "parent_span_id": "16 lowercase hex digits, not all zero",
    "start_time": "a UTC timestamp like 2026-01-31T12:00:00.000000Z",
    "end_time": "a UTC timestamp like 2026-01-31T12:00:00.000000Z",
    "prev": "64 lowercase hex digits",
}


# gc=False: records hold no reference cycles, and not tracking millions of them in the garbage
# collector is a large part of the reader's speed.
class _Struct(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True, gc=False
):
    pass


class Usage(_Struct, frozen=True):
    """Token counts of one LLM call; absent counts are 0.

    ``input_tokens`` counts every input token, cached ones included (OpenAI's ``prompt_tokens``;
    for Anthropic the connector adds the cache tokens to the API's ``input_tokens``), and
    ``output_tokens`` includes ``reasoning_tokens``, as the OTel GenAI conventions define them.
    """

    input_tokens: Count = 0
    output_tokens: Count = 0
    cache_read_input_tokens: Count = 0
    cache_creation_input_tokens: Count = 0
    reasoning_tokens: Count = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class CallError(_Struct, frozen=True):
    """An exception the traced call raised: its type, message and, for HTTP errors, status."""

    type: str
    message: str
    status: int | None = None


class TraceRecord(_Struct, frozen=True, kw_only=True):
    """One traced call: an LLM request (``kind="llm"``) or a decorated function (``"function"``).

    Immutable; :meth:`replace` makes a changed copy. Timestamps are kept as their wire strings so a
    record round-trips byte for byte; :attr:`start` and :attr:`end` give aware datetimes.
    Every record states its ``schema`` (:data:`SCHEMA` for records made now). ``cost_usd`` is
    ``None`` when the price is unknown, and ``price_error`` then says why: it is
    never a guess. ``uncertainty`` is set only when the provider returned token logprobs.
    ``chain``, ``seq`` and ``prev`` are set when a :class:`~cert_core.TraceWriter` writes the record.
    """

    # Required, with no default: msgspec would otherwise accept a line that does not state its
    # schema, and a default would be left out of the written line.
    schema: Literal["cert.trace/1", "cert.legacy"]
    trace_id: TraceId
    span_id: SpanId
    parent_span_id: SpanId | None = None
    start_time: Timestamp
    end_time: Timestamp
    duration_ms: Millis
    kind: Kind
    provider: str | None = None
    operation: Operation | None = None
    request_model: str | None = None
    response_model: str | None = None
    input: Any = None
    output: Any = None
    usage: Usage | None = None
    usage_estimated: bool | None = None
    cost_usd: Usd | None = None
    price_source: str | None = None
    price_error: str | None = None
    finish_reasons: list[str] | None = None
    stream: bool | None = None
    ttft_ms: Millis | None = None
    incomplete: bool | None = None
    uncertainty: Uncertainty | None = None
    error: CallError | None = None
    request: dict[str, Any] | None = None
    function: str | None = None
    test_id: str | None = None
    reference: Any = None
    evaluation: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    replayed: bool | None = None
    chain: TraceId | None = None
    seq: Count | None = None
    prev: Hash | None = None

    @property
    def start(self) -> datetime:
        return parse_timestamp(self.start_time)

    @property
    def end(self) -> datetime:
        return parse_timestamp(self.end_time)

    def replace(self, **changes: Any) -> TraceRecord:
        """A copy with some fields changed."""
        return msgspec.structs.replace(self, **changes)

    def to_dict(self, *, chain: bool = True) -> dict[str, Any]:
        """The JSON object of this record: absent optional fields are left out, except that an LLM
        record always carries ``cost_usd`` (``null`` when the price is unknown)."""
        out: dict[str, Any] = msgspec.to_builtins(self, enc_hook=json_fallback)
        if self.kind == "llm" and self.cost_usd is None:
            out["cost_usd"] = None
        if not chain:
            for name in _CHAIN_FIELDS:
                out.pop(name, None)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TraceRecord:
        """Validate one decoded JSON object and build the record.

        Raises :class:`RecordError` naming the offending field. Objects in the original CERT
        framework's format (``timestamp``, ``input_data``, ...) are converted, see :func:`from_legacy`.
        """
        if not isinstance(data, Mapping):
            raise RecordError("<line>", f"expected a JSON object, got {type(data).__name__}")
        if "schema" not in data:
            if "timestamp" in data:
                return from_legacy(data)
            raise RecordError("schema", "required field is missing")
        try:
            record = msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise _record_error(exc, data) from None
        problem = check_formats(record)
        if problem is not None:
            raise problem
        return record


_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def _is_lower_hex(value: str) -> bool:
    # bytes.fromhex is C-fast, but it also takes upper case and spaces: an even-length string of
    # n characters with no upper case that decodes to n/2 bytes holds lowercase hex digits only.
    try:
        return len(bytes.fromhex(value)) * 2 == len(value) and value.lower() == value
    except ValueError:
        return False


_HEX_BYTES = b"0123456789abcdef"
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_STAMPS_SHAPE = b"0000-00-00T00:00:00.000000Z" * 2
_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_checked_seconds = b""


def check_formats(record: TraceRecord) -> RecordError | None:
    """The format rules msgspec's types leave to us: hex ids, timestamps, chain fields.

    msgspec has already checked every type and length. This runs for every line the reader
    decodes, so it is a handful of C-level byte operations: deleting the hex digits from all ids
    must leave nothing, mapping every digit of the timestamps to 0 must give the fixed shape, and
    the calendar check runs only when the second changes.
    """
    global _checked_seconds
    parent, chain, prev = record.parent_span_id, record.chain, record.prev
    ids = (record.trace_id + record.span_id + (parent or "") + (chain or "") + (prev or "")).encode()
    if (
        ids.translate(None, _HEX_BYTES)
        or record.trace_id == _ZERO_TRACE
        or record.span_id == _ZERO_SPAN
        or parent == _ZERO_SPAN
        or chain == _ZERO_TRACE
        or (chain is None) is not (prev is None)
        or (chain is None) is not (record.seq is None)
    ):
        return _format_error(record)
    stamps = (record.start_time + record.end_time).encode()
    if stamps.translate(_DIGITS_TO_ZERO) != _STAMPS_SHAPE:
        return _format_error(record)
    if stamps[:19] != _checked_seconds or stamps[27:46] != _checked_seconds:
        for field in ("start_time", "end_time"):
            value = getattr(record, field)
            try:
                datetime.fromisoformat(value[:19])
            except ValueError:
                return RecordError(field, f"not a valid date and time: {value!r}")
        _checked_seconds = stamps[27:46]
    return None


_trace_ids, _span_ids, _parents = attrgetter("trace_id"), attrgetter("span_id"), attrgetter("parent_span_id")
_chains, _seqs, _prevs = attrgetter("chain"), attrgetter("seq"), attrgetter("prev")
_starts, _ends = attrgetter("start_time"), attrgetter("end_time")
_second_of = itemgetter(slice(0, 19))
_STAMP_SHAPE = _STAMPS_SHAPE[:27]
_valid_seconds: set[str] = set()


def formats_ok(records: Sequence[TraceRecord]) -> bool:
    """:func:`check_formats` for a block of records at once: ``True`` when every record passes.

    ``False`` means at least one may not, and the caller checks each with :func:`check_formats`
    (which names the field); it is also the answer for blocks this fast path does not cover
    (chained and unchained records mixed, an id holding a run of 16 zeros). Each test is
    one C-level pass over all the block's values (``map`` with ``attrgetter``, ``join``,
    ``translate``), about half the cost of checking record by record.
    """
    n = len(records)
    if not n:
        return True  # a block of blank lines
    chains = list(map(_chains, records))
    unchained = chains.count(None)
    if unchained:
        prevs_absent = list(map(_prevs, records)).count(None)
        if unchained != n or prevs_absent != n or list(map(_seqs, records)).count(None) != n:
            return False
    else:
        prevs = list(map(_prevs, records))
        if None in prevs or None in map(_seqs, records):
            return False
        if "".join(prevs).encode().translate(None, _HEX_BYTES):
            return False
    ids = [*map(_trace_ids, records), *map(_span_ids, records), *filter(None, map(_parents, records))]
    if not unchained:
        # A block is usually one writer's lines, one chain: its id is then checked once.
        ids += chains if chains.count(chains[0]) != n else chains[:1]
    # One space between ids, so that each id is judged alone: deleting the hex digits must leave
    # exactly the spaces between them, and no id may be all zeros (lengths are msgspec's check,
    # so an all-zero id is a run of 16 zeros; a valid id holding such a run takes the slow path).
    joined = " ".join(ids)
    if joined.encode().translate(None, _HEX_BYTES) != b" " * (len(ids) - 1) or _ZERO_SPAN in joined:
        return False
    starts, ends = list(map(_starts, records)), list(map(_ends, records))
    stamps = "".join(starts) + "".join(ends)
    if stamps.encode().translate(_DIGITS_TO_ZERO) != _STAMP_SHAPE * (2 * n):
        return False
    # The calendar: every distinct second must be a real date and time. With the shape checked,
    # the first stamp's minute can only occur at the start of a stamp, so counting it tells
    # whether all stamps fall in that minute; their seconds fields (tens digit 0 to 5, read in
    # one slice) are then valid, and one second of the minute stands for all.
    minute = stamps[:17]
    if stamps.count(minute) == 2 * n and not stamps[17::27].strip("012345"):
        seconds = {minute + "00"}
    else:
        seconds = set(map(_second_of, starts)) | set(map(_second_of, ends))
    for second in seconds - _valid_seconds:
        try:
            datetime.fromisoformat(second)
        except ValueError:
            return False
        if len(_valid_seconds) > 4096:
            _valid_seconds.clear()
        _valid_seconds.add(second)
    return True


def _format_error(record: TraceRecord) -> RecordError:
    """Which id is wrong, for the message (slow path, only for bad records)."""

    def bad(value: str, length: int) -> bool:
        return len(value) != length or not _is_lower_hex(value) or not value.strip("0")

    for field, length in (("trace_id", 32), ("span_id", 16), ("parent_span_id", 16), ("chain", 32)):
        value = getattr(record, field)
        if value is not None and bad(value, length):
            return RecordError(field, f"expected {_EXPECTED[field]}, got {_short(value)}")
    chained = {"chain": record.chain, "seq": record.seq, "prev": record.prev}
    present = [name for name, value in chained.items() if value is not None]
    if present and len(present) < 3:
        missing = next(name for name, value in chained.items() if value is None)
        return RecordError(
            missing, f"missing, but {' and '.join(present)} given: chain, seq and prev go together"
        )
    if record.prev is not None and not _is_lower_hex(record.prev):
        return RecordError("prev", f"expected {_EXPECTED['prev']}, got {_short(record.prev)}")
    for field in ("start_time", "end_time"):
        value = getattr(record, field)
        if not _TS.fullmatch(value):
            return RecordError(field, f"expected {_EXPECTED[field]}, got {_short(value)}")
    return RecordError("<record>", "ids, timestamps or chain fields malformed")


_CHAIN_FIELDS = ("chain", "seq", "prev")
_ERROR_PATH = re.compile(r"^(.*?)(?: - at `\$\.?([^`]*)`)?$", re.S)
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`")


def json_fallback(value: Any) -> Any:
    """How values JSON cannot express are written, so a record with odd user data is kept rather
    than lost: its ``repr``. (msgspec itself writes sets and tuples as arrays, bytes as base64,
    datetimes as ISO 8601 and dataclasses as objects.)"""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    return repr(value)


def _record_error(exc: msgspec.ValidationError, data: Any) -> RecordError:
    """Turn msgspec's message (``Expected `int` >= 0 - at `$.usage.input_tokens```) into ours."""
    match = _ERROR_PATH.match(str(exc))
    assert match is not None
    problem, path = match.group(1), match.group(2) or ""
    if m := _MISSING.fullmatch(problem):
        return RecordError(".".join(p for p in (path, m.group(1)) if p), "required field is missing")
    if m := _UNKNOWN.fullmatch(problem):
        return RecordError(".".join(p for p in (path, m.group(1)) if p), f"unknown field (schema {SCHEMA})")
    field = path or "<record>"
    value: Any = data
    for part in re.split(r"\.|\[(\d+)\]", path):
        if not part:
            continue
        try:
            value = value[int(part)] if part.isdigit() and isinstance(value, list) else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            value = None
            break
    if "matching regex" in problem and field in _EXPECTED:
        problem = f"expected {_EXPECTED[field]}"
    elif field == "duration_ms" or field.endswith("_ms") or field == "cost_usd":
        problem = problem.replace("`float`", "number").replace("`", "")
    else:
        problem = problem.replace("`", "")
    return RecordError(field, f"{problem}, got {_short(value)}" if path else problem)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _legacy_field(
    data: Mapping[str, Any], name: str, types: tuple[type, ...], where: str | None = None
) -> Any:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        expected = " or ".join(t.__name__ for t in types)
        raise RecordError(where or name, f"expected {expected}, got {type(value).__name__} {_short(value)}")
    return value


_ZONE = re.compile(r"(Z|[+-]\d{2}(:?\d{2})?)$")  # an explicit zone ends an ISO 8601 date-time
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def from_legacy(data: Mapping[str, Any]) -> TraceRecord:
    """Convert one line of the original CERT framework's log.

    Mapping: ``timestamp`` -> ``start_time``, ``metadata.latency_ms`` -> ``duration_ms`` (and
    ``end_time``), ``platform`` -> ``provider``, ``model`` -> request and response model,
    ``input_data``/``output_data`` -> ``input``/``output``, ``context`` -> ``reference``,
    ``cost`` -> ``cost_usd``, ``confidence`` -> ``evaluation.confidence``,
    ``metadata.tokens.prompt/completion`` -> ``usage``. Ids are derived from the line's content,
    so reading the same log twice gives the same ids. Such records carry no chain.
    """
    raw_ts = _legacy_field(data, "timestamp", (str,))
    if raw_ts is None:
        raise RecordError("timestamp", "required field is missing")
    try:
        # The original framework wrote UTC; a timestamp without a zone is taken as UTC.
        start = parse_timestamp(raw_ts if _ZONE.search(raw_ts, 11) else raw_ts + "Z")  # after the date
    except ValueError:
        raise RecordError("timestamp", f"not an ISO 8601 date/time: {raw_ts!r}") from None
    metadata = dict(_legacy_field(data, "metadata", (dict,)) or {})
    latency = metadata.pop("latency_ms", None)
    if latency is not None and (
        not isinstance(latency, (int, float)) or isinstance(latency, bool) or latency < 0
    ):
        raise RecordError("metadata.latency_ms", f"must be a number >= 0, got {_short(latency)}")
    try:
        duration = float(latency or 0.0)
    except OverflowError:  # an int too large for a float
        raise RecordError("metadata.latency_ms", f"must be a number >= 0, got {_short(latency)}") from None
    tokens = metadata.pop("tokens", None)
    usage: Usage | None = None
    if tokens is not None:
        if not isinstance(tokens, dict):
            raise RecordError("metadata.tokens", f"expected object, got {_short(tokens)}")
        counts = {}
        for legacy_key, key in (("prompt", "input_tokens"), ("completion", "output_tokens")):
            count = tokens.get(legacy_key, 0)
            if type(count) is not int or not 0 <= count <= MAX_COUNT:
                raise RecordError(
                    f"metadata.tokens.{legacy_key}",
                    f"must be an integer from 0 to {MAX_COUNT}, got {_short(count)}",
                )
            counts[key] = count
        usage = Usage(**counts)
    platform = _legacy_field(data, "platform", (str,))
    model = _legacy_field(data, "model", (str,))
    cost = _legacy_field(data, "cost", (int, float))
    if cost is not None:
        if cost < 0:
            raise RecordError("cost", f"must be >= 0, got {_short(cost)}")
        try:
            cost = float(cost)
        except OverflowError:  # an int too large for a float
            raise RecordError("cost", f"too large for a float: {_short(cost)}") from None
    confidence = _legacy_field(data, "confidence", (int, float))
    if confidence is not None and not 0 <= confidence <= 1:
        raise RecordError("confidence", f"must be between 0 and 1, got {confidence!r}")
    kind: Kind = "llm" if (platform or model) else "function"
    digest = hashlib.sha256(repr(sorted(data.items(), key=lambda kv: kv[0])).encode()).hexdigest()
    try:
        end = start + timedelta(milliseconds=duration)
    except OverflowError:
        raise RecordError(
            "metadata.latency_ms", f"{_short(latency)} ms after {raw_ts} ends past the year 9999"
        ) from None
    # Exact microseconds since the epoch (timestamp() would round a time before 1970 the wrong way).
    start_ns = (start - _EPOCH) // _MICROSECOND * 1000
    end_ns = (end - _EPOCH) // _MICROSECOND * 1000
    return TraceRecord(
        schema=LEGACY_SCHEMA,
        trace_id=digest[:32],
        span_id=digest[32:48],
        start_time=format_timestamp(start_ns),
        end_time=format_timestamp(end_ns),
        duration_ms=duration,
        kind=kind,
        provider=platform,
        request_model=model,
        response_model=model,
        function=_legacy_field(data, "function", (str,)),
        input=data.get("input_data"),
        output=data.get("output_data"),
        reference=data.get("context"),
        usage=usage,
        cost_usd=cost,
        price_source="legacy CERT log" if cost is not None else None,
        price_error=None if cost is not None or kind != "llm" else "legacy CERT log carried no cost",
        evaluation={"confidence": float(confidence)} if confidence is not None else None,
        metadata=metadata or None,
    )
