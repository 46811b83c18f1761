"""One LLM call in flight: what a connector learns about it, and the trace record it becomes.

Connectors hand this module plain facts (request body, response object, stream items) through
an :class:`Extractor`; everything here is SDK-independent. Every method that runs inside the
user's call is wrapped by :func:`contained`: an exception in our code is counted, logged once and
swallowed, and the user's call proceeds as if we were not there.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import msgspec

from .._pricing import price_call
from .._recording import (
    active_recorders,
    current_span,
    defer,
    deferrable,
    deliver,
    flush_records,
    span_under,
)
from .._records import (
    SCHEMA,
    CallError,
    TraceRecord,
    Usage,
    format_span_times,
    json_fallback,
)
from ..uncertainty import Uncertainty, logprob_stats

__all__ = [
    "CaptureMode",
    "Extractor",
    "InstrumentationStats",
    "LlmCall",
    "StreamState",
    "TokenLogprobs",
    "contained",
    "instrumentation_stats",
    "note_problem",
]

logger = logging.getLogger("cert_core")

# Request parameters worth keeping (scalars that change what the model does). Headers, URLs and
# client options are never read, which is how secrets stay out of records.
REQUEST_PARAMS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "n",
    "seed",
    "stop",
    "stop_sequences",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "tool_choice",
    "parallel_tool_calls",
    "service_tier",
    "reasoning_effort",
)


_SENTINELS = frozenset({"NotGiven", "Omit"})
# Greedy on purpose: a lazy pattern here costs 30 times more. JSON ignores trailing spaces.
_DATA_LINE = re.compile(rb"^data: ?(.*)$", re.MULTILINE)
_PARAMS = frozenset(REQUEST_PARAMS)


class CaptureMode(str, enum.Enum):
    """What of the prompt and the answer a record keeps."""

    FULL = "full"
    HASHED = "hashed"
    OFF = "off"


@dataclasses.dataclass
class InstrumentationStats:
    """Problems inside our instrumentation; the user's calls were not affected by any of them."""

    errors: int = 0
    last_error: str | None = None


_stats = InstrumentationStats()
_stats_lock = threading.Lock()
_reported = False


def instrumentation_stats() -> InstrumentationStats:
    """A snapshot of the instrumentation's own error counter."""
    with _stats_lock:
        return dataclasses.replace(_stats)


def note_problem(exc: BaseException, where: str) -> None:
    """Count a problem in our own code and log the first one."""
    global _reported
    message = f"{where}: {type(exc).__name__}: {exc}"
    with _stats_lock:
        _stats.errors += 1
        _stats.last_error = message
        first = not _reported
        _reported = True
    if first:
        logger.error(
            "cert instrumentation problem (the LLM call itself is unaffected; further problems are only "
            "counted in cert_core.instrumentation_stats()): %s",
            message,
            exc_info=exc,
        )


T = TypeVar("T")


def contained(fn: Callable[..., T], *args: Any, default: Any = None, where: str = "") -> T:
    """Run our own code so that it can never break the user's call."""
    try:
        return fn(*args)
    except Exception as exc:
        note_problem(exc, where or getattr(fn, "__qualname__", repr(fn)))
        return default  # type: ignore[no-any-return]


#: Each chosen token's logprob, and per token the logprobs of its top alternatives.
TokenLogprobs = tuple[list[float], list[list[float]]]


class StreamState:
    """What a stream has shown so far; extractors fill it item by item."""

    def __init__(self) -> None:
        self.ended = False  # the stream's terminal event arrived
        self.texts: dict[int, list[str]] = {}
        self.tools: dict[int, dict[str, Any]] = {}
        self.finish_reasons: list[str] = []
        self.usage: Usage | None = None
        self.model: str | None = None
        self.final: Any = None  # a complete response object, when the stream ends with one
        self.error: CallError | None = None  # an error event the provider sent mid-stream
        self.items = 0
        # Token logprobs as the stream brought them (when it does), read once at its end.
        self.logprobs: list[Any] = []

    def add_text(self, index: int, text: str | None) -> None:
        if text:
            self.texts.setdefault(index, []).append(text)

    def text(self) -> str:
        return "".join("".join(parts) for _, parts in sorted(self.texts.items()))


class Extractor(Protocol):
    """What a connector knows about one kind of call (chat completions, messages, ...)."""

    operation: str
    #: Pattern in a raw stream chunk that shows the first token arrived (for ``ttft_ms``).
    first_token: re.Pattern[bytes] | None
    #: Decodes the ``data:`` payloads of a stream, one per line.
    decoder: msgspec.json.Decoder[Any]

    def request_input(self, body: Mapping[str, Any]) -> Any: ...

    def read(self, content: bytes) -> Any:
        """Decode a complete response body for :meth:`response` and :meth:`logprobs` (a typed
        form where the extractor has one, else plain JSON); raises ``msgspec.DecodeError``
        for a body that is not JSON."""
        ...

    def response(self, result: Any) -> tuple[Any, Usage | None, list[str] | None, str | None]:
        """``(output, usage, finish_reasons, response_model)`` of a complete response."""
        ...

    def stream_items(self, state: StreamState, items: list[Any]) -> None:
        """Take the decoded stream items into ``state``."""
        ...

    def stream_output(self, state: StreamState) -> Any: ...

    def logprobs(self, result: Any) -> TokenLogprobs | None:
        """The token logprobs of a complete response, or ``None`` when it carries none (one
        cheap check in that case: this runs on every call)."""
        ...

    def stream_logprobs(self, state: StreamState) -> TokenLogprobs | None:
        """The token logprobs collected in ``state.logprobs`` (called only when it has some)."""
        ...


def estimate_tokens(value: Any) -> int:
    """A rough token count (about four characters per token, as OpenAI documents for English),
    used only when a provider reports no usage; records say ``usage_estimated: true``."""
    if value is None:
        return 0
    text = value if isinstance(value, str) else msgspec.json.encode(value, enc_hook=json_fallback).decode()
    return max(1, (len(text) + 3) // 4)


def _hashed(value: Any) -> Any:
    if value is None:
        return None
    data = msgspec.json.encode(value, enc_hook=json_fallback)
    return {"sha256": hashlib.sha256(data).hexdigest()}


class LlmCall:
    """One call from request to record. Created before the SDK call, finished exactly once."""

    __slots__ = (
        "body",
        "capture",
        "cassette",
        "end_ns",
        "extractor",
        "fault",
        "first_item_ns",
        "http",
        "is_async",
        "job",
        "model",
        "parent",
        "pending",
        "provider",
        "recorders",
        "sent",
        "start_ns",
        "state",
        "stream",
        "t0",
    )

    def __init__(
        self,
        provider: str,
        extractor: Extractor,
        body: Mapping[str, Any],
        *,
        capture: CaptureMode,
        model: str | None = None,
    ) -> None:
        # Kept as given: this runs inside every call, so nothing is copied or checked here.
        self.provider = provider
        self.extractor = extractor
        self.body = body
        self.capture = capture
        model_param = body.get("model")
        self.model = model or (model_param if type(model_param) is str else None)
        self.stream = body.get("stream") is True
        self.parent = current_span()  # the ids of this call's own span are drawn with its record
        self.start_ns = time.time_ns()
        self.t0 = time.perf_counter_ns()
        self.first_item_ns: int | None = None
        self.state: StreamState | None = None
        self.http: Any = None  # the SDK's HTTP response, once _process_response has seen it
        self.cassette: Any = None  # a cert_core.replay.Entry when a cassette served or recorded it
        self.fault: str | None = None  # a cert_core.faults kind when an injected fault made the response
        self.sent: bytes | None = None  # the request body as it went on the wire
        self.is_async = False
        self.recorders = active_recorders()  # where the record goes: decided where the call is made
        self.end_ns = 0  # perf_counter_ns() when the call finished (set by _claim)
        self.job: tuple[str, Any] | None = None  # what build() makes the record from
        # Finishing pops this list: list.pop is atomic, so exactly one of the ways a call can
        # end (response, error, stream end, close, garbage collection) writes its record.
        self.pending = [True]

    @property
    def finished(self) -> bool:
        return not self.pending

    @property
    def ended(self) -> bool:
        return self.state is not None and self.state.ended

    def _captured(self, value: Any) -> Any:
        if self.capture is CaptureMode.FULL:
            return value
        if self.capture is CaptureMode.HASHED:
            return _hashed(value)
        return None

    def sent_body(self) -> Mapping[str, Any]:
        """The request as sent: the SDK's own serialisation, with ``extra_body`` merged, messages
        given as iterators or SDK objects resolved, and decoded into our own copy (so a caller
        who later changes their messages list does not change the record)."""
        if self.sent:
            decoded = msgspec.json.decode(self.sent)
            if type(decoded) is dict:
                return decoded
        # No request seen (a call that failed before sending): detach a copy of what was given.
        # The SDKs mark parameters left out with sentinel objects (NotGiven, Omit): skip them.
        given = {k: v for k, v in self.body.items() if type(v).__name__ not in _SENTINELS}
        copy = msgspec.json.decode(msgspec.json.encode(given, enc_hook=json_fallback))
        return copy if type(copy) is dict else {}

    def take_request(self, request: Any) -> None:
        """Keep the body of the HTTP request that was sent (an ``httpx2``/``httpx`` Request)."""
        content = getattr(request, "content", None)
        if isinstance(content, bytes):
            self.sent = content

    def _request_params(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        params = {k: v for k, v in body.items() if k in _PARAMS and v is not None}
        tools = body.get("tools")
        if isinstance(tools, (list, tuple)):
            names = []
            for tool in tools:
                if isinstance(tool, Mapping):
                    function = tool.get("function")
                    nested = function.get("name") if isinstance(function, Mapping) else None
                    name = tool.get("name") or nested
                    names.append(str(name or tool.get("type") or "?"))
            params["tools"] = names
        return params or None

    def _claim(self) -> bool:
        """Whether this is the way the call ends (the first to claim it); the call's end time."""
        try:
            self.pending.pop()
        except IndexError:
            return False
        self.end_ns = time.perf_counter_ns()
        return True

    def _finish_later(self, kind: str, payload: Any) -> None:
        """The call finished: its record is built now or, where its recorders accept it later,
        in a batch with others (``cert_core._recording.defer``)."""
        self.job = (kind, payload)
        entry = self.cassette
        # A cassette being recorded waits for the call's usage and cost: those are built now.
        if deferrable(self.recorders) and (entry is None or entry.replayed):
            defer(self)
            return
        record = self.build()
        if record is not None:
            self._send(record)

    def build(self) -> TraceRecord | None:
        """The record of the finished call (once; ``None`` after, or when it cannot be made)."""
        job, self.job = self.job, None
        if job is None:
            return None
        kind, payload = job
        try:
            if kind == "response":
                return self._response_record(payload)
            return self._stream_record(*payload)
        except Exception as exc:
            note_problem(exc, f"{self.provider} {self.extractor.operation} record")
            return None

    def _send(self, record: TraceRecord) -> None:
        flush_records()  # records of calls that finished earlier go first (nothing when none wait)
        deliver(record, self.recorders)

    def _record(
        self,
        *,
        output: Any = None,
        usage: Usage | None = None,
        finish_reasons: list[str] | None = None,
        response_model: str | None = None,
        error: BaseException | CallError | None = None,
        incomplete: bool | None = None,
        usage_estimated: bool | None = None,
        uncertainty: Uncertainty | None = None,
        unpriced_because: str = "the provider reported no token usage",
    ) -> TraceRecord:
        duration_ns = self.end_ns - self.t0
        model = response_model or self.model
        cost: float | None = None
        source: str | None = None
        price_error: str | None = None
        if isinstance(error, BaseException):
            status = getattr(error, "status_code", None)
            error = CallError(
                type=type(error).__name__,
                message=_error_message(error),
                status=status if type(status) is int else None,
            )
        status = error.status if error is not None else None
        body = self.sent_body()
        full = self.capture is CaptureMode.FULL
        given = self.extractor.request_input(body)
        if usage is not None:
            price = price_call(self.provider, model, usage)
            cost, source, price_error = price.cost_usd, price.source, price.error
        elif error is not None and status is not None:
            cost, source = 0.0, f"not billed: the provider refused the call (HTTP {status})"
        elif error is not None:
            price_error = "unknown: the call failed without a response; the provider may still have billed it"
        else:
            price_error = unpriced_because
        if self.fault is not None:
            # The response was made on this machine by an injected fault: no provider billed it.
            cost, price_error = 0.0, None
            source = f"not billed: answered by an injected fault ({self.fault}), nothing was sent"
        ttft = None
        if self.stream and self.first_item_ns is not None:
            ttft = (self.first_item_ns - self.t0) / 1e6
        replayed = None
        entry = self.cassette
        if entry is not None:
            if entry.replayed:
                # What the call took and cost when it was recorded: a cache hit is neither fast nor free.
                replayed = True
                if entry.latency_ms is not None:
                    duration_ns = int(entry.latency_ms * 1e6)
                ttft = entry.ttft_ms if self.stream else None
                if entry.cost_usd is not None:
                    cost, price_error = entry.cost_usd, None
                    source = entry.recorded.get("price_source") or source
            else:
                entry.note_call(
                    msgspec.to_builtins(usage) if usage is not None else None,
                    cost,
                    source,
                    call_ms=duration_ns / 1e6,
                    ttft_ms=ttft,
                )
        start_time, end_time = format_span_times(self.start_ns, duration_ns)
        span = span_under(self.parent)
        return TraceRecord(
            schema=SCHEMA,
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_span_id=span.parent_span_id,
            start_time=start_time,
            end_time=end_time,
            duration_ms=duration_ns / 1e6,
            kind="llm",
            provider=self.provider,
            operation=self.extractor.operation,  # type: ignore[arg-type]
            request_model=self.model,
            response_model=response_model,
            input=given if full else self._captured(given),
            output=output if full else self._captured(output),
            usage=usage,
            usage_estimated=usage_estimated,
            cost_usd=cost,
            price_source=source,
            price_error=price_error,
            finish_reasons=finish_reasons,
            stream=self.stream or None,
            ttft_ms=ttft,
            incomplete=incomplete,
            uncertainty=uncertainty,
            error=error,
            request=self._request_params(body),
            replayed=replayed,
        )

    def succeeded(self, content: bytes) -> None:
        """A complete (non-streamed) response, its body as received."""
        if self._claim():
            self._finish_later("response", content)

    def _response_record(self, content: bytes) -> TraceRecord:
        try:
            result = self.extractor.read(content)
        except msgspec.DecodeError as exc:
            note_problem(exc, f"{self.provider} {self.extractor.operation} response body")
            return self._record(unpriced_because=f"usage unknown: the response body is not JSON ({exc})")
        output, usage, finish_reasons, response_model = self.extractor.response(result)
        logprobs = contained(self.extractor.logprobs, result, where="response logprobs")
        return self._record(
            output=output,
            usage=usage,
            finish_reasons=finish_reasons,
            response_model=response_model,
            uncertainty=self._uncertainty(logprobs) if logprobs is not None else None,
        )

    def _uncertainty(self, logprobs: TokenLogprobs) -> Uncertainty | None:
        # A logprob we cannot use (NaN, a string) costs the record its uncertainty, never the record.
        values, tops = logprobs
        source = f"{self.provider}.logprobs"
        stats: Uncertainty | None = contained(
            lambda: logprob_stats(values, tops, source=source), where="logprob statistics"
        )
        return stats

    def failed(self, error: BaseException) -> None:
        if not self._claim():
            return
        response = getattr(error, "response", None)
        extensions = getattr(response, "extensions", None)
        if isinstance(extensions, dict):
            self.cassette = extensions.get("cert_cassette")
            self.fault = extensions.get("cert_fault")
        self.take_request(getattr(response, "request", None) or getattr(error, "request", None))
        self._send(self._record(error=error))

    def unreadable(self, why: str) -> None:
        """A response we cannot read (an unknown stream format): recorded, with usage unknown."""
        if not self._claim():
            return
        self._send(self._record(unpriced_because=f"usage unknown: {why}"))
        note_problem(RuntimeError(why), f"{self.provider} {self.extractor.operation}")

    def take_events(self, data: bytes) -> None:
        """Read the server-sent events of a stream, all at once when it ends.

        The bytes were only collected while the caller read the stream; parsing them here, in
        one pass with one decoder call, keeps the cost per chunk to an append.
        """
        state = self.state
        if state is None:
            state = self.state = StreamState()
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        data = data[: data.rfind(b"\n\n") + 2]  # complete events only: a cut stream ends mid-event
        payloads = _DATA_LINE.findall(data)
        if payloads and payloads[-1].rstrip() == b"[DONE]":
            state.ended = True
        payloads = [p for p in payloads if p.rstrip() != b"[DONE]"]
        if not payloads:
            return
        decoder = self.extractor.decoder
        try:
            items = decoder.decode_lines(b"\n".join(payloads))
        except (msgspec.DecodeError, msgspec.ValidationError):
            items = []
            for payload in payloads:  # find the bad event; keep every good one
                try:
                    items.append(decoder.decode(payload))
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    note_problem(exc, f"{self.provider} stream event {payload[:80]!r}")
        state.items += len(items)
        self.extractor.stream_items(state, items)

    def stream_ended(self, data: bytes, error: BaseException | None = None) -> None:
        """The stream was read to its end, closed early, broke, or was dropped unfinished;
        ``data`` is the body as far as it was read (server-sent events, parsed later)."""
        if self._claim():
            self._finish_later("stream", (data, error))

    def _stream_record(self, data: bytes, error: BaseException | CallError | None) -> TraceRecord:
        if data:
            self.take_events(data)
        complete = self.ended  # the stream's terminal event arrived, whichever way it ended
        state = self.state or StreamState()
        logprobs = None
        if state.final is not None:
            output, usage, finish_reasons, response_model = self.extractor.response(state.final)
            # The final response, when it has them, holds the logprobs the deltas brought.
            logprobs = contained(self.extractor.logprobs, state.final, where="response logprobs")
        else:
            output = self.extractor.stream_output(state)
            usage, finish_reasons, response_model = state.usage, state.finish_reasons or None, state.model
        if logprobs is None and state.logprobs:
            logprobs = contained(self.extractor.stream_logprobs, state, where="stream logprobs")
        if error is None and state.error is not None:
            error = state.error  # an error event inside the stream
        estimated = None
        if usage is None and state.items:
            # The stream carried no usage (OpenAI sends it only with include_usage): estimate it.
            usage = Usage(
                input_tokens=estimate_tokens(self.extractor.request_input(self.sent_body())),
                output_tokens=estimate_tokens(output),
            )
            estimated = True
        return self._record(
            output=output,
            usage=usage,
            finish_reasons=finish_reasons,
            response_model=response_model,
            error=error,
            incomplete=None if complete and error is None else True,
            usage_estimated=estimated,
            uncertainty=self._uncertainty(logprobs) if logprobs is not None else None,
        )


def _error_message(error: BaseException) -> str:
    message = getattr(error, "message", None)
    if isinstance(message, str) and message:
        return message
    try:
        return str(error) or type(error).__name__
    except Exception:  # an exception whose __str__ fails is still recorded, by its type
        return type(error).__name__
