"""Where records go: active recorders, the default writer, and the ``@trace`` decorator.

A record made anywhere (``@trace``, a connector) is handed to :func:`record_call`, which passes it
to every *active recorder*: those entered with :func:`recording` in the current context (a
``contextvars`` stack, so asyncio tasks and ``contextvars.copy_context()`` threads inherit it) and
the process-wide ones added with :func:`add_recorder` (how the pytest plugin sees calls from threads
a test starts). When no recorder is active, the record goes to the default writer: the file named
by :func:`configure` or the ``CERT_LOG_PATH`` environment variable, else ``cert_traces.jsonl``.
``@trace(log_path=...)`` always writes its own file as well.

A failing recorder never breaks the traced code: its exception is counted in
:func:`recording_stats` and logged once.
"""

from __future__ import annotations

import atexit
import collections
import contextvars
import dataclasses
import functools
import inspect
import logging
import os
import reprlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar, overload

import msgspec

from . import _store
from ._records import SCHEMA, CallError, TraceRecord, format_span_times, new_root_ids, new_span_id
from ._store import TraceWriter

__all__ = [
    "DEFAULT_LOG_PATH",
    "Recorder",
    "RecordingStats",
    "Span",
    "active_recorders",
    "add_recorder",
    "configure",
    "current_span",
    "defer",
    "deliver",
    "flush_records",
    "record_call",
    "recording",
    "recording_stats",
    "remove_recorder",
    "span_under",
    "start_span",
    "trace",
]

logger = logging.getLogger("cert_core")

DEFAULT_LOG_PATH = "cert_traces.jsonl"
#: Longest repr kept for one captured argument or return value.
DEFAULT_MAX_REPR = 1000


class Recorder(Protocol):
    """Anything that accepts finished records: a test's collector, a writer, a list adapter."""

    def record(self, record: TraceRecord) -> None: ...


class Span(msgspec.Struct, frozen=True, gc=False):
    """The ids of the call being traced in this context; children take ``span_id`` as parent."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None


@dataclasses.dataclass
class RecordingStats:
    """Problems met while routing records (never raised into user code)."""

    recorder_errors: int = 0
    capture_errors: int = 0
    last_error: str | None = None


_current_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar("cert_current_span", default=None)
_context_recorders: contextvars.ContextVar[tuple[Recorder, ...]] = contextvars.ContextVar(
    "cert_recorders", default=()
)
_global_recorders: tuple[Recorder, ...] = ()
_registry_lock = threading.Lock()
_stats = RecordingStats()
_reported: set[str] = set()
_default_writer: TraceWriter | None = None
_default_path: Path | None = None
_writers_by_path: dict[Path, TraceWriter] = {}


def current_span() -> Span | None:
    """The span of the innermost traced call running in this context, if any."""
    return _current_span.get()


def start_span() -> Span:
    """Ids for a new span: a child of the current span, or the root of a new trace."""
    return span_under(_current_span.get())


def span_under(parent: Span | None) -> Span:
    """Ids for a new span under ``parent`` (``None``: the root of a new trace)."""
    if parent is None:
        return Span(*new_root_ids())
    return Span(parent.trace_id, new_span_id(), parent.span_id)


@contextmanager
def recording(recorder: Recorder) -> Iterator[Recorder]:
    """Send every record made in this context (and tasks it starts) to ``recorder`` too."""
    token = _context_recorders.set((*_context_recorders.get(), recorder))
    try:
        yield recorder
    finally:
        _context_recorders.reset(token)


def add_recorder(recorder: Recorder) -> None:
    """Register a process-wide recorder: it sees records from every thread and task."""
    global _global_recorders
    with _registry_lock:
        if recorder not in _global_recorders:
            _global_recorders = (*_global_recorders, recorder)


def remove_recorder(recorder: Recorder) -> None:
    """Undo :func:`add_recorder` (no error if it was not registered)."""
    global _global_recorders
    with _registry_lock:
        _global_recorders = tuple(r for r in _global_recorders if r is not recorder)


def recording_stats() -> RecordingStats:
    """A snapshot of the routing problem counters."""
    with _registry_lock:
        return dataclasses.replace(_stats)


def _note_problem(kind: str, message: str) -> None:
    with _registry_lock:
        if kind == "recorder":
            _stats.recorder_errors += 1
        else:
            _stats.capture_errors += 1
        _stats.last_error = message
        first = kind not in _reported
        _reported.add(kind)
    if first:
        logger.error("cert: %s (further problems of this kind are only counted)", message)


def configure(*, log_path: str | os.PathLike[str] | None) -> None:
    """Set the default trace file (used when no recorder is active); ``None`` restores the default."""
    global _default_writer, _default_path
    flush_records()  # records of calls made so far go to the file they were made for
    with _registry_lock:
        writer, _default_writer = _default_writer, None
        _default_path = Path(log_path) if log_path is not None else None
    if writer is not None:
        writer.close()


def _writer_for(path: Path) -> TraceWriter:
    """The one open writer of a file, so decorators naming the same file share one chain."""
    key = path.absolute()
    with _registry_lock:
        writer = _writers_by_path.get(key)
        if writer is None or writer._closed:  # closed at exit or by the user: start a new chain
            writer = _writers_by_path[key] = TraceWriter(path)
    return writer


def _default_sink() -> TraceWriter:
    global _default_writer
    writer = _default_writer
    if writer is None or writer._closed:
        path = _default_path or Path(os.environ.get("CERT_LOG_PATH") or DEFAULT_LOG_PATH)
        writer = _writer_for(path)
        with _registry_lock:
            _default_writer = writer
    return writer


def active_recorders() -> tuple[Recorder, ...]:
    """The recorders a record made now in this context goes to (empty: the default file)."""
    recorders = _context_recorders.get()
    return recorders + _global_recorders if _global_recorders else recorders


class Deferred(Protocol):
    """A finished call whose record is built later (see :func:`defer`)."""

    recorders: tuple[Recorder, ...]

    def build(self) -> TraceRecord | None:
        """Make the record (never raises; ``None`` when it could not be made)."""
        ...


# Finished LLM calls whose records are still to be built, oldest first; see defer().
_pending: collections.deque[Deferred] = collections.deque()
_drain_lock = threading.RLock()  # reentrant: a recorder may itself record
#: Pending calls that make the thread finishing the next one build them all.
PENDING_LIMIT = 64


def deferrable(recorders: tuple[Recorder, ...]) -> bool:
    """Whether records for ``recorders`` may be built later: only recorders that declare
    ``cert_deferred = True`` (trace writers) accept a record after the call returned, and so
    does the default file (no recorders). A list of a user's gets it before the call returns."""
    return all(getattr(recorder, "cert_deferred", False) is True for recorder in recorders)


def defer(call: Deferred) -> None:
    """Queue a finished call: its record is built with others, in a batch.

    Building a record (decoding the response, pricing, serialising) inside every call runs on
    caches that the SDK's own work has just filled: it costs several times what the same work
    costs in a batch. Records are built, in the order the calls finished, when
    :data:`PENDING_LIMIT` calls are waiting, before any record made on the spot (``@trace``,
    an error) is delivered, by the trace files' background flusher within a tenth of a second,
    by :func:`flush_records`, and at exit. Each record keeps the times of its call.
    """
    _pending.append(call)
    if len(_pending) >= PENDING_LIMIT:
        flush_records()
    elif not _watching:
        _watch()


_watching = False  # the trace files' background flusher runs and builds waiting records


def _watch() -> None:
    global _watching
    _watching = True
    _store._ensure_flusher()


def flush_records() -> None:
    """Build and deliver the records of every finished call still waiting (see :func:`defer`)."""
    global _draining
    if not _pending and not _draining:
        return
    with _drain_lock:  # a second caller waits until the calls the first took are delivered
        _draining += 1
        try:
            _drain()
        finally:
            _draining -= 1


_draining = 0  # threads building records now (one may have taken the last waiting call)


def _drain() -> None:
    while True:
        try:
            call = _pending.popleft()
        except IndexError:
            return
        try:
            record = call.build()
        except Exception as exc:  # build() contains its own problems; this is the last guard
            _note_problem("recorder", f"a deferred record could not be built: {type(exc).__name__}: {exc}")
            continue
        if record is not None:
            deliver(record, call.recorders)


def _forget_pending_in_child() -> None:
    global _drain_lock, _watching
    _pending.clear()  # the parent delivers its own calls' records
    _drain_lock = threading.RLock()
    _watching = False


_store.before_flush_hook = flush_records


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pending_in_child)


@atexit.register
def _flush_records_at_exit() -> None:
    # Registered after the trace store's exit handler, so it runs before the files are closed.
    flush_records()


def record_call(record: TraceRecord, *, writer: TraceWriter | None = None) -> None:
    """Route a finished record to the active recorders (or the default file) and to ``writer``.

    Connectors and ``@trace`` call this; it never raises.
    """
    if _pending:  # records of calls that finished earlier go first
        flush_records()
    recorders = active_recorders()
    if recorders or writer is None:
        deliver(record, recorders, writer=writer)
    else:  # the common case (a decorator's own file), straight to it: @trace runs this per call
        writer.write(record)


def deliver(
    record: TraceRecord, recorders: tuple[Recorder, ...], *, writer: TraceWriter | None = None
) -> None:
    """Hand ``record`` to ``recorders`` (none: the default file) and to ``writer``; never raises."""
    for recorder in recorders:
        try:
            recorder.record(record)
        except Exception as exc:  # a broken recorder must not break the traced call
            _note_problem("recorder", f"recorder {recorder!r} failed: {type(exc).__name__}: {exc}")
    if writer is not None:
        writer.write(record)
    elif not recorders:
        try:
            sink = _default_sink()
        except Exception as exc:  # e.g. an invalid CERT_LOG_PATH; counted, never raised
            _note_problem("recorder", f"default trace file unavailable: {type(exc).__name__}: {exc}")
            return
        sink.write(record)


class _CaptureRepr(reprlib.Repr):
    """reprlib with our limits, counting a ``__repr__`` that raises instead of hiding it."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxstring = self.maxother = self.maxlong = limit
        self.maxlevel = 4
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = self.maxdeque = 50

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            text = repr(x)
        except Exception as exc:  # a user __repr__ that raises must not break the call
            _note_problem("capture", f"repr() of {type(x).__name__} failed: {type(exc).__name__}: {exc}")
            return f"<{type(x).__name__}: repr failed>"
        if len(text) > self.maxother:
            half = max(0, (self.maxother - 3) // 2)
            text = text[:half] + "..." + text[len(text) - half :]
        return text


_default_repr = _CaptureRepr(DEFAULT_MAX_REPR)


def _capture(value: Any, limit: int, reprs: _CaptureRepr = _default_repr) -> str:
    text = reprs.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # an exception whose __str__ fails still gets recorded
        return f"<{type(error).__name__}: str() failed>"


F = TypeVar("F", bound=Callable[..., Any])


class _Tracer:
    """The configured decorator; one instance per ``@trace(...)`` use."""

    def __init__(
        self,
        name: str | None,
        log_path: str | os.PathLike[str] | None,
        metadata: Mapping[str, Any] | None,
        capture: bool,
        max_repr: int,
    ) -> None:
        self.name = name
        self.log_path = Path(log_path) if log_path is not None else None
        self.metadata = dict(metadata) if metadata else None
        self.capture = capture
        self.max_repr = max_repr
        self._reprs = _default_repr if max_repr == DEFAULT_MAX_REPR else _CaptureRepr(max_repr)
        self._writer: TraceWriter | None = None

    def _own_writer(self) -> TraceWriter | None:
        if self.log_path is None:
            return None
        if self._writer is None or self._writer._closed:
            self._writer = _writer_for(self.log_path)
        return self._writer

    def __call__(self, fn: F) -> F:
        name = self.name or f"{fn.__module__}.{fn.__qualname__}"
        if inspect.isasyncgenfunction(fn):
            return self._wrap_async_gen(fn, name)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):
            return self._wrap_gen(fn, name)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(fn):
            return self._wrap_async(fn, name)  # type: ignore[return-value]
        return self._wrap_sync(fn, name)  # type: ignore[return-value]

    def _input(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not self.capture:
            return None
        limit = self.max_repr
        return {
            "args": [_capture(a, limit, self._reprs) for a in args],
            "kwargs": {k: _capture(v, limit, self._reprs) for k, v in kwargs.items()},
        }

    def _emit(
        self,
        span: Span,
        name: str,
        start_ns: int,
        t0: int,
        inputs: Any,
        output: Any,
        error: BaseException | None,
    ) -> None:
        duration_ns = time.perf_counter_ns() - t0
        start_time, end_time = format_span_times(start_ns, duration_ns)
        record = TraceRecord(
            schema=SCHEMA,
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_span_id=span.parent_span_id,
            start_time=start_time,
            end_time=end_time,
            duration_ms=duration_ns / 1e6,
            kind="function",
            function=name,
            input=inputs,
            output=output,
            error=None
            if error is None
            else CallError(type=type(error).__qualname__, message=_message(error)),
            metadata=self.metadata,
        )
        writer = self._writer
        if writer is None or writer._closed:
            writer = self._own_writer()
        record_call(record, writer=writer)

    def _wrap_sync(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        capture, emit = self.capture, self._emit
        current, time_ns, perf_counter_ns = _current_span, time.time_ns, time.perf_counter_ns

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            inputs = self._input(args, kwargs) if capture else None
            span = span_under(current.get())
            token = current.set(span)
            start_ns = time_ns()
            t0 = perf_counter_ns()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                current.reset(token)
                emit(span, name, start_ns, t0, inputs, None, exc)
                raise
            current.reset(token)
            output = _capture(result, self.max_repr, self._reprs) if capture else None
            emit(span, name, start_ns, t0, inputs, output, None)
            return result

        return traced

    def _wrap_async(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        capture, emit = self.capture, self._emit
        current, time_ns, perf_counter_ns = _current_span, time.time_ns, time.perf_counter_ns

        @functools.wraps(fn)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            inputs = self._input(args, kwargs) if capture else None
            span = span_under(current.get())
            token = current.set(span)
            start_ns = time_ns()
            t0 = perf_counter_ns()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                current.reset(token)
                emit(span, name, start_ns, t0, inputs, None, exc)
                raise
            current.reset(token)
            output = _capture(result, self.max_repr, self._reprs) if capture else None
            emit(span, name, start_ns, t0, inputs, output, None)
            return result

        return traced

    def _gen_output(self, items: list[str], count: int) -> Any:
        return {"yielded": count, "items": items} if self.capture else None

    def _wrap_gen(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        keep = 50

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            span = start_span()
            start_ns = time.time_ns()
            t0 = time.perf_counter_ns()
            inputs = self._input(args, kwargs)
            items: list[str] = []
            count = 0
            token = _current_span.set(span)
            try:
                gen = fn(*args, **kwargs)
            finally:
                _current_span.reset(token)
            method, value = gen.send, None
            try:
                while True:
                    token = _current_span.set(span)
                    try:
                        item = method(value)
                    finally:
                        _current_span.reset(token)
                    count += 1
                    if self.capture and len(items) < keep:
                        items.append(_capture(item, self.max_repr, self._reprs))
                    try:
                        value, method = (yield item), gen.send
                    except GeneratorExit:
                        gen.close()
                        raise
                    except BaseException as exc:
                        method, value = gen.throw, exc
            except StopIteration as stop:
                self._emit(span, name, start_ns, t0, inputs, self._gen_output(items, count), None)
                return stop.value
            except GeneratorExit:
                self._emit(span, name, start_ns, t0, inputs, self._gen_output(items, count), None)
                raise
            except BaseException as exc:
                self._emit(span, name, start_ns, t0, inputs, self._gen_output(items, count), exc)
                raise

        return traced

    def _wrap_async_gen(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        keep = 50

        @functools.wraps(fn)
        async def traced(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            span = start_span()
            start_ns = time.time_ns()
            t0 = time.perf_counter_ns()
            inputs = self._input(args, kwargs)
            items: list[str] = []
            count = 0
            token = _current_span.set(span)
            try:
                agen = fn(*args, **kwargs)
            finally:
                _current_span.reset(token)
            method, value = agen.asend, None
            try:
                while True:
                    token = _current_span.set(span)
                    try:
                        item = await method(value)
                    finally:
                        _current_span.reset(token)
                    count += 1
                    if self.capture and len(items) < keep:
                        items.append(_capture(item, self.max_repr, self._reprs))
                    try:
                        value, method = (yield item), agen.asend
                    except GeneratorExit:
                        await agen.aclose()
                        raise
                    except BaseException as exc:
                        method, value = agen.athrow, exc
            except StopAsyncIteration:
                self._emit(span, name, start_ns, t0, inputs, self._gen_output(items, count), None)
            except GeneratorExit:
                self._emit(span, name, start_ns, t0, inputs, self._gen_output(items, count), None)
                raise
            except BaseException as exc:
                self._emit(span, name, start_ns, t0, inputs, self._gen_output(items, count), exc)
                raise

        return traced


@overload
def trace(fn: F, /) -> F: ...


@overload
def trace(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    log_path: str | os.PathLike[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    capture: bool = True,
    max_repr: int = DEFAULT_MAX_REPR,
) -> Callable[[F], F]: ...


def trace(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    log_path: str | os.PathLike[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    capture: bool = True,
    max_repr: int = DEFAULT_MAX_REPR,
) -> F | Callable[[F], F]:
    """Record each call of a function as a ``kind="function"`` trace record.

    Works on sync, async, generator and async-generator functions, as ``@trace`` or
    ``@trace(log_path="traces.jsonl", metadata={...})``. Records the qualified name, the arguments
    and the return value (``repr``, each cut to ``max_repr`` characters; ``capture=False`` records
    neither), the duration, and an exception (recorded, then re-raised unchanged). A generator's
    span runs from its creation to its end and records how many items it yielded. Calls nested in
    a traced call get its span as ``parent_span_id``. LLM calls made inside are children too.
    """
    if max_repr < 8:
        raise ValueError(f"max_repr must be at least 8 characters, got {max_repr}")
    tracer = _Tracer(name, log_path, metadata, capture, max_repr)
    if fn is not None:
        return tracer(fn)
    return tracer
