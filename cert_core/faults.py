"""Provider faults: make the LLM calls of a block of code fail the ways providers fail.

A test of an AI system's resilience (EU AI Act Art. 15(4): fail-safe behaviour) needs the
provider to misbehave on cue: a timeout, a rate limit, an overloaded server, a garbled body, a
stream cut half-way. :func:`inject_faults` answers the LLM SDKs' requests with the faults given,
one per request, in order, from inside the HTTP client's transport, so the SDK's own retries
and the app's own fallbacks run exactly as they would against the real provider::

    from cert_core.faults import Fault, inject_faults

    with inject_faults([Fault.status(429, retry_after=0.001), Fault.timeout()]) as log:
        answer = app.ask("What is the capital of France?")

    assert [r.fault for r in log.injected] == [Fault.status(429, retry_after=0.001), Fault.timeout()]
    evidence["faults"] = log.to_dict()  # JSON-able: planned, injected, passed through, unused

* **Which requests.** Requests sent by the OpenAI and Anthropic SDKs (they carry the
  ``x-stainless-lang`` header) through ``httpx2`` or classic ``httpx`` clients, sync and async.
  ``providers`` (``"openai"``, ``"anthropic"`` or host names) and ``models`` (glob patterns such
  as ``"gpt-4o*"``) narrow that down. When the faults are used up (or none matches), requests
  pass through to the client's own transport: a ``MockTransport``, a replay cassette, the
  network. ``repeat=True`` cycles through the faults instead.
* **The faults.** :meth:`Fault.timeout` raises the HTTP library's ``ReadTimeout``;
  :meth:`Fault.status` answers an error status with the provider's error JSON (and
  ``retry-after``/``retry-after-ms`` headers when given); :meth:`Fault.malformed_json` and
  :meth:`Fault.truncated_json` answer 200 with a body that does not parse (for a streamed request,
  an event whose data does not parse); :meth:`Fault.interrupted_stream` sends the first events of
  a stream (a canned prefix, or with ``upstream=True`` the real answer) and then raises the HTTP
  library's ``ReadError``, as a connection reset does.
* **Retries stay fast** when the server says so: both SDKs sleep for ``retry-after-ms`` (then
  ``retry-after``) when it is above zero, so ``Fault.status(429, retry_after=0.001)`` is retried
  after a millisecond. ``retry_after=0`` (or none) makes them fall back to their exponential
  backoff, 0.5 s (less up to 25 % jitter) before the first retry, then doubling; timeouts and
  connection errors always take that backoff.
* **What the app sees** (openai 3.57, anthropic 2.14), once the SDK's retries are spent: for a
  status, the SDK's status error (429 ``RateLimitError``, 500 ``InternalServerError``, 503
  ``InternalServerError`` or Anthropic's ``ServiceUnavailableError``, 529 ``InternalServerError``
  or Anthropic's ``OverloadedError``); for a timeout, ``APITimeoutError``; for a body cut while
  the SDK reads it, ``APIConnectionError``. Malformed or truncated JSON raises the json module's
  ``JSONDecodeError``, unwrapped and not retried. A stream cut after the SDK handed it over is not
  retried either: OpenAI raises ``APIConnectionError``, Anthropic the bare ``httpx2.ReadError``.
* **With a cassette** (:mod:`cert_core.replay`) the faults come first, whichever block was entered
  first: an injected fault never reaches the cassette, so it is neither replayed from nor recorded
  into it. An ``upstream=True`` stream is read to its end under the cut, so a cassette recording it
  keeps the whole answer.
* **The log** (:class:`FaultLog`) lists every request seen while the block ran, with the fault
  injected (if any), the SDK's attempt number, the method, the URL (credentials in it scrubbed),
  the model and what the caller got; never a header or a key. Blocks may nest or overlap (in
  threads too): the innermost block with a fault for a request injects it, and every block in
  force logs the request.
"""

from __future__ import annotations

import enum
import fnmatch
import json
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ._records import format_timestamp

__all__ = [
    "Fault",
    "FaultKind",
    "FaultLog",
    "RequestRecord",
    "inject_faults",
]


class FaultKind(str, enum.Enum):
    """How a provider call fails."""

    TIMEOUT = "timeout"
    STATUS = "status"
    MALFORMED_JSON = "malformed_json"
    TRUNCATED_JSON = "truncated_json"
    INTERRUPTED_STREAM = "interrupted_stream"


@dataclass(frozen=True)
class Fault:
    """One fault to inject into one request; build it with the class methods."""

    kind: FaultKind
    code: int | None = None  # STATUS: the HTTP status
    retry_after: float | None = None  # STATUS: seconds, sent as retry-after and retry-after-ms
    after_events: int | None = None  # INTERRUPTED_STREAM: events delivered before the cut
    upstream: bool = False  # INTERRUPTED_STREAM: cut the real answer instead of a canned one

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if self.kind is FaultKind.STATUS:
            if type(self.code) is not int or not 400 <= self.code <= 599:
                raise ValueError(f"Fault.status: code {self.code!r} is not an HTTP error status (400-599)")
        elif self.code is not None or self.retry_after is not None:
            raise ValueError(f"Fault {self.kind.value}: code and retry_after belong to status faults")
        if self.retry_after is not None and not self.retry_after >= 0:
            raise ValueError(
                f"Fault.status: retry_after {self.retry_after!r} is not a number of seconds >= 0"
            )
        if self.kind is FaultKind.INTERRUPTED_STREAM:
            if type(self.after_events) is not int or self.after_events < 0:
                raise ValueError(
                    f"Fault.interrupted_stream: after_events {self.after_events!r} is not an int >= 0"
                )
        elif self.after_events is not None or self.upstream:
            raise ValueError(
                f"Fault {self.kind.value}: after_events and upstream belong to interrupted_stream"
            )

    @classmethod
    def timeout(cls) -> Fault:
        """The HTTP library's ``ReadTimeout``, raised before any response."""
        return cls(FaultKind.TIMEOUT)

    @classmethod
    def status(cls, code: int, *, retry_after: float | None = None) -> Fault:
        """An error status (429, 500, 503, Anthropic's 529 ...) with the provider's error JSON.

        ``retry_after`` (seconds) is sent as ``retry-after`` and ``retry-after-ms``; the SDKs
        honour it only above zero (``0`` means their own backoff)."""
        return cls(FaultKind.STATUS, code=code, retry_after=retry_after)

    @classmethod
    def malformed_json(cls) -> Fault:
        """A 200 answer whose JSON body is not JSON at all (a proxy's HTML page)."""
        return cls(FaultKind.MALFORMED_JSON)

    @classmethod
    def truncated_json(cls) -> Fault:
        """A 200 answer whose JSON body stops in the middle."""
        return cls(FaultKind.TRUNCATED_JSON)

    @classmethod
    def interrupted_stream(cls, after_events: int = 2, *, upstream: bool = False) -> Fault:
        """A 200 stream cut by a ``ReadError`` after ``after_events`` server-sent events.

        The events are a canned valid prefix in the provider's format, or with ``upstream=True``
        the real answer's (the request is sent on; the answer is read to its end under the cut).
        A request that is not streamed gets half its JSON body, then the error."""
        return cls(FaultKind.INTERRUPTED_STREAM, after_events=after_events, upstream=upstream)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value}
        for name in ("code", "retry_after", "after_events"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.upstream:
            out["upstream"] = True
        return out

    def describe(self) -> str:
        if self.kind is FaultKind.STATUS:
            wait = f" retry-after {self.retry_after:g}s" if self.retry_after is not None else ""
            return f"status {self.code}{wait}"
        if self.kind is FaultKind.INTERRUPTED_STREAM:
            source = " of the real answer" if self.upstream else ""
            return f"interrupted_stream after {self.after_events} events{source}"
        return str(self.kind.value)


@dataclass(frozen=True)
class RequestRecord:
    """One SDK request seen while faults were in force, and what its caller got.

    ``status`` is the HTTP status the SDK received (``None`` when the transport raised instead);
    ``error`` names the exception the SDK met (``httpx2.ReadTimeout``, or for an interrupted
    stream the ``ReadError`` that cut it). ``attempt`` is the SDK's try number, from 1."""

    index: int
    at: str
    method: str
    url: str
    provider: str
    model: str | None
    stream: bool
    attempt: int | None
    fault: Fault | None
    status: int | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "at": self.at,
            "method": self.method,
            "url": self.url,
            "provider": self.provider,
            "model": self.model,
            "stream": self.stream,
            "attempt": self.attempt,
            "fault": self.fault.to_dict() if self.fault else None,
            "status": self.status,
            "error": self.error,
        }


class FaultLog:
    """The faults planned for a block, and every SDK request it saw (see :func:`inject_faults`)."""

    def __init__(
        self,
        faults: Iterable[Fault],
        *,
        providers: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        repeat: bool = False,
    ) -> None:
        self.planned = tuple(faults)
        for fault in self.planned:
            if not isinstance(fault, Fault):
                raise TypeError(
                    f"inject_faults: {fault!r} is not a Fault (build one with Fault.status(...) etc.)"
                )
        if repeat and not self.planned:
            raise ValueError("inject_faults: repeat=True needs at least one fault")
        self.providers = tuple(p.lower() for p in providers) if providers is not None else None
        self.models = tuple(models) if models is not None else None
        self.repeat = repeat
        self.raised: str | None = None  # the exception that ended the block, if one did
        self.finished = False
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._seen = 0
        self._taken = 0

    @property
    def requests(self) -> list[RequestRecord]:
        """Every SDK request seen, in the order they were sent."""
        with self._lock:
            return sorted(self._records, key=lambda r: r.index)

    @property
    def injected(self) -> list[RequestRecord]:
        """The requests this block answered with a fault."""
        return [r for r in self.requests if r.fault is not None]

    @property
    def passed_through(self) -> list[RequestRecord]:
        """The requests this block let through (no fault left, none matching, or another block's)."""
        return [r for r in self.requests if r.fault is None]

    @property
    def unused(self) -> list[Fault]:
        """Planned faults never injected: the app made fewer matching requests than planned."""
        with self._lock:
            return list(self.planned[self._taken :])

    @property
    def recovered(self) -> bool:
        """Whether faults were injected and the block still ended without an exception."""
        return self.finished and self.raised is None and bool(self.injected)

    def _matches(self, provider: str, host: str, model: str | None) -> bool:
        if self.providers is not None and provider not in self.providers and host not in self.providers:
            return False
        return self.models is None or (
            model is not None and any(fnmatch.fnmatchcase(model, p) for p in self.models)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary for test results."""
        requests = self.requests
        return {
            "planned": [f.to_dict() for f in self.planned],
            "repeat": self.repeat,
            "providers": list(self.providers) if self.providers is not None else None,
            "models": list(self.models) if self.models is not None else None,
            "requests_seen": len(requests),
            "injected": [r.to_dict() for r in requests if r.fault is not None],
            "passed_through": [r.to_dict() for r in requests if r.fault is None],
            "unused": [f.to_dict() for f in self.unused],
            "raised": self.raised,
            "recovered": self.recovered,
        }

    def _next(self, matching: bool, offer: bool) -> tuple[int, Fault | None]:
        """A number for the request, and this block's fault for it (when offered one to inject)."""
        with self._lock:
            index = self._seen
            self._seen += 1
            if not (matching and offer and self.planned):
                return index, None
            if self._taken >= len(self.planned) and not self.repeat:
                return index, None
            fault = self.planned[self._taken % len(self.planned)]
            self._taken += 1
            return index, fault

    def _add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)


@contextmanager
def inject_faults(
    faults: Iterable[Fault],
    *,
    providers: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    repeat: bool = False,
) -> Iterator[FaultLog]:
    """Answer the LLM SDKs' requests made inside the block with ``faults``, one per request.

    ``providers``: ``"openai"``, ``"anthropic"`` or host names whose requests get the faults;
    ``models``: glob patterns of the request's ``model``; ``repeat``: cycle through the faults
    instead of passing requests through once they are used. Yields the block's :class:`FaultLog`.
    """
    log = FaultLog(faults, providers=providers, models=models, repeat=repeat)
    _push(log)
    try:
        yield log
    except BaseException as exc:
        log.raised = _qualified(type(exc))
        raise
    finally:
        log.finished = True
        _pop(log)


def _qualified(cls: type) -> str:
    """``openai.RateLimitError`` rather than ``openai._exceptions.RateLimitError`` when exported."""
    top = cls.__module__.split(".", 1)[0]
    if getattr(sys.modules.get(top), cls.__name__, None) is cls:
        return f"{top}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


# --------------------------------------------------------------------------- seeing a request

# Request extension: a fault layer decided this request already, so a second layer (one left
# under another library's patch when its block ended) lets it pass.
_SEEN = "cert_fault_seen"
#: Response extension naming the fault of a response made locally (read by cert_core.connectors).
FAULT_EXTENSION = "cert_fault"


@dataclass(frozen=True)
class _Seen:
    method: str
    url: str
    host: str
    path: str
    provider: str
    model: str | None
    stream: bool
    attempt: int | None
    at: str


def _see(request: Any) -> _Seen:
    from .replay import _scrub_url, _secret_values

    raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    body: Any = None
    if request.content:
        try:
            body = json.loads(request.content)
        except (ValueError, UnicodeDecodeError):
            body = None
    model = body.get("model") if isinstance(body, dict) else None
    retries = request.headers.get("x-stainless-retry-count", "")
    host = request.url.host.lower()
    return _Seen(
        method=request.method.upper(),
        url=_scrub_url(str(request.url), _secret_values(raw)),
        host=host,
        path=request.url.path,
        provider=_provider(request, host),
        model=model if isinstance(model, str) else None,
        stream=isinstance(body, dict) and body.get("stream") is True,
        attempt=int(retries) + 1 if retries.isdigit() else None,
        at=format_timestamp(time.time_ns()),
    )


def _provider(request: Any, host: str) -> str:
    agent = request.headers.get("user-agent", "").lower()
    if "anthropic-version" in request.headers or agent.startswith("anthropic") or "anthropic" in host:
        return "anthropic"
    if agent.startswith("openai") or "openai" in host:
        return "openai"
    return host


class _Exchange:
    """One request while faults are in force: the fault chosen for it and the logs to tell."""

    def __init__(self, lib: Any, request: Any, seen: _Seen, logs: list[tuple[FaultLog, int, Fault | None]]):
        self.lib = lib
        self.request = request
        self.seen = seen
        self.logs = logs
        self.fault = next((f for _, _, f in logs if f is not None), None)

    def note(self, status: int | None, error: type | None) -> None:
        seen = self.seen
        for log, index, fault in self.logs:
            log._add(
                RequestRecord(
                    index=index,
                    at=seen.at,
                    method=seen.method,
                    url=seen.url,
                    provider=seen.provider,
                    model=seen.model,
                    stream=seen.stream,
                    attempt=seen.attempt,
                    fault=fault,
                    status=status,
                    error=_qualified(error) if error is not None else None,
                )
            )

    # ---- answering without the inner transport

    def answer(self) -> Any:
        """The faulty response (or exception) for a fault that needs no real answer."""
        __tracebackhide__ = True
        fault, lib, seen = self.fault, self.lib, self.seen
        assert fault is not None
        # Marks a response made here, not by a provider: the connectors record it as not billed.
        mark = {FAULT_EXTENSION: fault.kind.value}
        if fault.kind is FaultKind.TIMEOUT:
            self.note(None, lib.ReadTimeout)
            raise lib.ReadTimeout(
                f"The read operation timed out (injected by cert_core.faults: {fault.describe()})",
                request=self.request,
            )
        if fault.kind is FaultKind.STATUS:
            assert fault.code is not None
            self.note(fault.code, None)
            return lib.Response(
                fault.code,
                headers=_error_headers(fault, seen),
                content=json.dumps(_error_body(fault.code, seen)).encode(),
                extensions=mark,
            )
        if fault.kind is FaultKind.INTERRUPTED_STREAM:
            assert fault.after_events is not None
            self.note(200, lib.ReadError)
            if seen.stream:
                events = _canned_events(seen, fault.after_events)
                return lib.Response(200, headers=_SSE_HEADERS, stream=self.broken(events), extensions=mark)
            body = json.dumps(_canned_body(seen)).encode()
            return lib.Response(
                200, headers=_JSON_HEADERS, stream=self.broken([body[: len(body) // 2]]), extensions=mark
            )
        self.note(200, None)
        if seen.stream:
            event = _bad_event(seen, fault.kind)
            return lib.Response(200, headers=_SSE_HEADERS, content=event, extensions=mark)
        if fault.kind is FaultKind.MALFORMED_JSON:
            return lib.Response(200, headers=_JSON_HEADERS, content=_NOT_JSON, extensions=mark)
        body = json.dumps(_canned_body(seen)).encode()
        return lib.Response(200, headers=_JSON_HEADERS, content=body[: len(body) // 2], extensions=mark)

    def broken(self, chunks: list[bytes], inner: Any = None) -> Any:
        """A response body: ``chunks`` (or ``inner`` cut by them), then a ``ReadError``."""
        assert self.fault is not None
        return _stream_class(self.lib)(self, chunks, inner)

    def error(self) -> Exception:
        assert self.fault is not None
        error: Exception = self.lib.ReadError(
            f"Connection reset by peer (injected by cert_core.faults: {self.fault.describe()})",
            request=self.request,
        )
        return error

    # ---- passing the request on

    def passed(self, response: Any) -> Any:
        """What the caller gets for the inner transport's ``response``: it, or it cut."""
        if self.fault is None:
            self.note(response.status_code, None)
            return response
        self.note(response.status_code, self.lib.ReadError)
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _FRAMING]
        return self.lib.Response(
            response.status_code,
            headers=headers,
            stream=self.broken([], response),
            extensions=response.extensions,
        )

    def failed(self, exc: BaseException) -> None:
        self.note(None, type(exc))


_JSON_HEADERS = {"content-type": "application/json"}
_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8"}
# The relayed body is delivered decoded (events are cut on their boundaries) and shorter.
_FRAMING = frozenset({"content-length", "content-encoding", "transfer-encoding"})
_NOT_JSON = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n"
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class _Cut:
    """Where a relayed body stops: after ``events`` server-sent events, or half-way when the
    body is not a stream (it is then read whole first)."""

    def __init__(self, events: int, is_stream: bool) -> None:
        self.left = events
        self.is_stream = is_stream
        self.pending = b""
        self.whole = b""
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` to deliver."""
        if self.done:
            return b""
        if not self.is_stream:
            self.whole += chunk
            return b""
        self.pending += chunk
        out = b""
        while self.left > 0:
            end = _EVENT_END.search(self.pending)
            if end is None:
                break
            out += self.pending[: end.end()]
            self.pending = self.pending[end.end() :]
            self.left -= 1
        self.done = self.left == 0
        return out

    def rest(self) -> bytes:
        """What to deliver when the body ended before the cut."""
        self.done = True
        if not self.is_stream:
            return self.whole[: len(self.whole) // 2]
        return self.pending


_stream_classes: dict[Any, type] = {}


def _stream_class(lib: Any) -> type:
    """The broken-body stream class of one HTTP library (``httpx2`` or ``httpx``), made once."""
    try:
        return _stream_classes[lib]
    except KeyError:
        pass

    class BrokenStream(lib.SyncByteStream, lib.AsyncByteStream):  # type: ignore[misc]
        """Canned chunks, or the inner body up to the cut; then the exchange's ``ReadError``.

        The inner body is read to its end (and discarded past the cut) so that a cassette
        recording it below keeps the whole answer."""

        def __init__(self, exchange: _Exchange, chunks: list[bytes], inner: Any) -> None:
            self.exchange = exchange
            self.chunks = chunks
            self.inner = inner
            fault = exchange.fault
            assert fault is not None
            assert fault.after_events is not None
            is_stream = inner is not None and "text/event-stream" in inner.headers.get("content-type", "")
            self.cut = _Cut(fault.after_events, is_stream)

        def __iter__(self) -> Iterator[bytes]:
            yield from self.chunks
            if self.inner is not None:
                try:
                    for chunk in self.inner.iter_bytes():
                        part = self.cut.feed(chunk)
                        if part:
                            yield part
                    rest = self.cut.rest()
                    if rest:
                        yield rest
                finally:
                    self.inner.close()
            raise self.exchange.error()

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk in self.chunks:
                yield chunk
            if self.inner is not None:
                try:
                    async for chunk in self.inner.aiter_bytes():
                        part = self.cut.feed(chunk)
                        if part:
                            yield part
                    rest = self.cut.rest()
                    if rest:
                        yield rest
                finally:
                    await self.inner.aclose()
            raise self.exchange.error()

        def close(self) -> None:
            if self.inner is not None:
                self.inner.close()

        async def aclose(self) -> None:
            if self.inner is not None:
                await self.inner.aclose()

    _stream_classes[lib] = BrokenStream
    return BrokenStream


# --------------------------------------------------------------------------- provider formats


def _anthropic(seen: _Seen) -> bool:
    return seen.provider == "anthropic" or seen.path.endswith("/messages")


_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _error_body(code: int, seen: _Seen) -> dict[str, Any]:
    message = f"Injected by cert_core.faults: status {code}"
    if _anthropic(seen):
        kind = _ANTHROPIC_ERRORS.get(code, "api_error" if code >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_cert_fault"}
    kind, error_code = _OPENAI_ERRORS.get(
        code, ("server_error", None) if code >= 500 else ("invalid_request_error", None)
    )
    return {"error": {"message": message, "type": kind, "param": None, "code": error_code}}


def _error_headers(fault: Fault, seen: _Seen) -> dict[str, str]:
    headers = {**_JSON_HEADERS, "request-id" if _anthropic(seen) else "x-request-id": "req_cert_fault"}
    if fault.retry_after is not None:
        headers["retry-after"] = f"{fault.retry_after:g}"
        headers["retry-after-ms"] = f"{fault.retry_after * 1000:g}"
    return headers


def _canned_body(seen: _Seen) -> dict[str, Any]:
    """A complete, valid answer in the API's format (cut by the JSON faults)."""
    model = seen.model or "unknown"
    text = "Injected by cert_core.faults: this answer is never delivered whole."
    if _anthropic(seen):
        return {
            "id": "msg_cert_fault",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    if seen.path.endswith("/responses"):
        return {
            "id": "resp_cert_fault",
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "model": model,
            "output": [
                {
                    "type": "message",
                    "id": "msg_cert_fault",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
        }
    return {
        "id": "chatcmpl-cert-fault",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _sse(name: str | None, data: str) -> bytes:
    return (f"event: {name}\n" if name else "").encode() + f"data: {data}\n\n".encode()


def _canned_events(seen: _Seen, count: int) -> list[bytes]:
    """The first ``count`` events of a valid stream in the API's format, one chunk each: the
    opening events, then text deltas ``"part 1 "``, ``"part 2 "`` ..."""
    model = seen.model or "unknown"
    opening: list[bytes]
    if _anthropic(seen):
        message = {**_canned_body(seen), "content": [], "stop_reason": None}
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        opening = [
            _sse("message_start", json.dumps({"type": "message_start", "message": message})),
            _sse("content_block_start", json.dumps(block)),
        ]

        def text(n: int, piece: str) -> bytes:
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            return _sse("content_block_delta", json.dumps(delta))

    elif seen.path.endswith("/responses"):
        response = {**_canned_body(seen), "status": "in_progress", "output": []}
        created = {"type": "response.created", "sequence_number": 0, "response": response}
        opening = [_sse("response.created", json.dumps(created))]

        def text(n: int, piece: str) -> bytes:
            delta = {
                "type": "response.output_text.delta",
                "sequence_number": n,
                "item_id": "msg_cert_fault",
                "output_index": 0,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }
            return _sse("response.output_text.delta", json.dumps(delta))

    else:

        def text(n: int, piece: str) -> bytes:
            delta = {"role": "assistant", "content": piece} if n == 0 else {"content": piece}
            chunk = {
                "id": "chatcmpl-cert-fault",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            return _sse(None, json.dumps(chunk))

        opening = [text(0, "")]
    events = opening[:count]
    events += [text(len(opening) + k, f"part {k + 1} ") for k in range(count - len(events))]
    return events


def _bad_event(seen: _Seen, kind: FaultKind) -> bytes:
    """A stream whose first event's data does not parse (malformed, or cut in the middle)."""
    first = _canned_events(seen, 1)[0].decode()
    name = first.split("\n", 1)[0][len("event: ") :] if first.startswith("event: ") else None
    data = first.split("data: ", 1)[1].rstrip("\n")
    return _sse(
        name, _NOT_JSON.decode().strip() if kind is FaultKind.MALFORMED_JSON else data[: len(data) // 2]
    )


# --------------------------------------------------------------------------- patching the clients

_lock = threading.RLock()
_active: list[FaultLog] = []  # process-wide: threads a test starts see its faults too
_patched: list[tuple[type, Any, Any]] = []  # (client class, method below ours, ours)
_replay_installed_by_us = False


def _begin(lib: Any, request: Any) -> _Exchange:
    """The exchange for an SDK request: the fault it gets (if any) and the blocks that log it."""
    seen = _see(request)
    request.extensions = {**request.extensions, _SEEN: True}
    with _lock:
        logs = list(reversed(_active))  # innermost first: it injects before outer blocks
    taken: list[tuple[FaultLog, int, Fault | None]] = []
    offer = True
    for log in logs:
        index, fault = log._next(log._matches(seen.provider, seen.host, seen.model), offer)
        offer = offer and fault is None
        taken.append((log, index, fault))
    return _Exchange(lib, request, seen, taken)


def _in_scope(request: Any) -> bool:
    return bool(_active) and "x-stainless-lang" in request.headers and _SEEN not in request.extensions


def _transport_class(lib: Any) -> type:
    class FaultTransport(lib.BaseTransport, lib.AsyncBaseTransport):  # type: ignore[misc]
        """The client's transport (a cassette's, when one is in use) with the faults in front."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def handle_request(self, request: Any) -> Any:
            __tracebackhide__ = True
            if not _in_scope(request):
                return self.inner.handle_request(request)
            request.read()
            exchange = _begin(lib, request)
            if exchange.fault is not None and not exchange.fault.upstream:
                return exchange.answer()
            try:
                response = self.inner.handle_request(request)
            except BaseException as exc:
                exchange.failed(exc)
                raise
            return exchange.passed(response)

        async def handle_async_request(self, request: Any) -> Any:
            __tracebackhide__ = True
            if not _in_scope(request):
                return await self.inner.handle_async_request(request)
            await request.aread()
            exchange = _begin(lib, request)
            if exchange.fault is not None and not exchange.fault.upstream:
                return exchange.answer()
            try:
                response = await self.inner.handle_async_request(request)
            except BaseException as exc:
                exchange.failed(exc)
                raise
            return exchange.passed(response)

        def close(self) -> None:
            self.inner.close()

        async def aclose(self) -> None:
            await self.inner.aclose()

    return FaultTransport


def _install() -> None:
    """Put the fault layer on the clients' ``_transport_for_url``, above the cassette layer.

    The cassette layer is installed first when it is not yet, so that a cassette entered later
    (its install is then a no-op) still sits below the faults."""
    global _replay_installed_by_us
    from . import replay

    libs = replay._libraries()  # the HTTP libraries the cassette layer patches too
    classes = [cls for lib in libs for cls in (lib.Client, lib.AsyncClient)]
    before = [cls.__dict__["_transport_for_url"] for cls in classes]
    replay.install()
    if any(cls.__dict__["_transport_for_url"] is not b for cls, b in zip(classes, before, strict=True)):
        _replay_installed_by_us = True
    for lib in libs:
        transport = _transport_class(lib)
        for cls in (lib.Client, lib.AsyncClient):
            below = cls.__dict__["_transport_for_url"]

            def _transport_for_url(self: Any, url: Any, _below: Any = below, _t: Any = transport) -> Any:
                inner = _below(self, url)
                return _t(inner) if _active else inner

            _transport_for_url.__wrapped__ = below  # type: ignore[attr-defined]
            cls._transport_for_url = _transport_for_url
            _patched.append((cls, below, _transport_for_url))


def _uninstall() -> None:
    """Take the fault layer off where it is still on top; then the cassette layer, when we put it
    there and no cassette is in use."""
    global _replay_installed_by_us
    from . import replay

    on_top = True
    while _patched:
        cls, below, ours = _patched.pop()
        if cls.__dict__.get("_transport_for_url") is ours:
            cls._transport_for_url = below  # type: ignore[attr-defined]
        else:  # something patched over us since: our layer stays there, inert
            on_top = False
    if _replay_installed_by_us and on_top and replay.active_cassette() is None:
        replay.uninstall()
    _replay_installed_by_us = False


def _push(log: FaultLog) -> None:
    with _lock:
        if not _active:
            _install()
        _active.append(log)


def _pop(log: FaultLog) -> None:
    with _lock:
        if log in _active:
            _active.remove(log)
        if not _active:
            _uninstall()
