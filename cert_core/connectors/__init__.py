"""Automatic instrumentation of the OpenAI and Anthropic Python SDKs.

Both SDKs send every API call through one method of their base client (``SyncAPIClient.request``
and ``AsyncAPIClient.request``): ``create``, ``parse``, ``stream``, ``with_raw_response`` and the
helpers alike, on every client class (OpenAI, Azure OpenAI, Anthropic, Bedrock, Vertex); and every
successful response passes through ``_process_response``, which sees the HTTP response. We wrap
those two methods per SDK, recognise LLM calls by their API path, and read what we need from the
wire: the JSON body, or the server-sent events as the SDK itself reads them. That is both faster
than walking the SDK's objects and independent of their classes; the wire formats are the
providers' public APIs. The caller gets exactly what the SDK returned or raised.

:func:`instrument` is idempotent and :func:`uninstrument` puts the SDKs' original functions back.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from ._call import (
    CaptureMode,
    Extractor,
    InstrumentationStats,
    LlmCall,
    contained,
    instrumentation_stats,
    note_problem,
)
from ._extract import ANTHROPIC_MESSAGES, OPENAI_EXTRACTORS

__all__ = [
    "CaptureMode",
    "InstrumentationStats",
    "instrument",
    "instrumentation_stats",
    "instrumented_providers",
    "uninstrument",
]

PROVIDERS = ("openai", "anthropic")

# Reentrant: patching on import runs inside an import that instrument() itself may start.
_lock = threading.RLock()
# Providers to patch as soon as their SDK is imported (instrument(on_import=True)).
_pending: set[str] = set()
# (owner class, attribute name, the original value in the class __dict__) per patched method.
_patched: dict[str, list[tuple[type, str, Any]]] = {}
_capture = CaptureMode.FULL
# The call whose request is in progress in this thread or task, for _process_response to find.
_current: contextvars.ContextVar[LlmCall | None] = contextvars.ContextVar("cert_llm_call", default=None)


def _path(options: Any) -> str:
    url = str(getattr(options, "url", "") or "")
    return url.split("?", 1)[0].rstrip("/")


def _openai_route(client: Any, options: Any) -> tuple[str, Extractor, str | None] | None:
    if str(getattr(options, "method", "")).lower() != "post":
        return None
    path = _path(options)
    for suffix, extractor in OPENAI_EXTRACTORS.items():
        if path.endswith(suffix) and not (suffix == "/completions" and path.endswith("/chat/completions")):
            provider = "azure.openai" if "Azure" in type(client).__name__ else "openai"
            return provider, extractor, None
    return None


def _anthropic_route(client: Any, options: Any) -> tuple[str, Extractor, str | None] | None:
    if str(getattr(options, "method", "")).lower() != "post" or not _path(options).endswith("/messages"):
        return None
    name = type(client).__name__
    provider = "aws.bedrock" if "Bedrock" in name else "gcp.vertex_ai" if "Vertex" in name else "anthropic"
    return provider, ANTHROPIC_MESSAGES, None


_ROUTES: dict[str, Callable[[Any, Any], tuple[str, Extractor, str | None] | None]] = {
    "openai": _openai_route,
    "anthropic": _anthropic_route,
}


_routes: dict[tuple[Any, ...], tuple[str, Extractor, str | None] | None] = {}


def _begin(route: Callable[..., Any], client: Any, options: Any) -> LlmCall | None:
    key = (route, type(client), options.method, options.url)
    try:
        target = _routes[key]
    except KeyError:
        target = _routes[key] = route(client, options)
        if len(_routes) > 4096:  # URLs with ids in them (Azure deployments, Bedrock models)
            _routes.clear()
    if target is None:
        return None
    body = options.json_data
    provider, extractor, model = target
    return LlmCall(provider, extractor, body if isinstance(body, dict) else {}, capture=_capture, model=model)


def _observe(call: LlmCall) -> None:
    # Let go of the response: a finalizer below waits for it to be collected, and holds the call.
    response, call.http = call.http, None
    if response is None:
        raise RuntimeError(f"no HTTP response reached {call.provider} _process_response for this call")
    call.take_request(response.request)
    extensions = response.extensions
    if extensions:
        call.cassette = extensions.get("cert_cassette")
        call.fault = extensions.get("cert_fault")
    if not call.stream and hasattr(response, "_content"):  # read already: the usual call
        call.succeeded(response.content)
    elif "text/event-stream" in response.headers.get("content-type", ""):
        _watch(call, response, [], call.extractor.first_token)
    elif call.stream:
        call.unreadable(f"stream format {response.headers.get('content-type')!r} is not server-sent events")
    else:  # with_streaming_response: the body is read later, when the caller asks for it
        chunks: list[bytes] = []

        def done() -> None:
            call.succeeded(b"".join(chunks))

        _watch(call, response, chunks, None, done=done)


def _watch(
    call: LlmCall,
    response: Any,
    chunks: list[bytes],
    first_token: re.Pattern[bytes] | None,
    done: Callable[[], None] | None = None,
) -> None:
    """Keep the decoded body bytes of ``response`` in ``chunks`` as the SDK iterates them.

    Per chunk that is one list append and, until ``first_token`` shows in a chunk (the time to
    first token is taken then), one pattern search. A body read to its end runs ``done``; without
    ``done`` (server-sent events), and for any body cut short, the call ends as a stream with the
    bytes read so far.
    """
    events = chunks if done is None else None
    keep = chunks.append
    clock = time.perf_counter_ns
    if call.is_async:
        original_aiter = response.aiter_bytes
        original_aclose = response.aclose

        async def aiter_bytes(*args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
            complete = False
            error: BaseException | None = None
            try:
                awaiting = first_token
                async for chunk in original_aiter(*args, **kwargs):
                    keep(chunk)
                    if awaiting is not None and awaiting.search(chunk):
                        call.first_item_ns = clock()
                        awaiting = None
                    yield chunk
                complete = True
            except Exception as exc:  # the connection broke mid-body: the record says how
                error = exc
                raise
            finally:
                _finish(call, complete, done, events, error)

        async def aclose() -> None:
            try:
                await original_aclose()
            finally:
                _finish(call, False, None, events, _in_flight())

        response.aiter_bytes = aiter_bytes
        response.aclose = aclose
    else:
        original_iter = response.iter_bytes
        original_close = response.close

        def iter_bytes(*args: Any, **kwargs: Any) -> Iterator[bytes]:
            complete = False
            error: BaseException | None = None
            try:
                awaiting = first_token
                for chunk in original_iter(*args, **kwargs):
                    keep(chunk)
                    if awaiting is not None and awaiting.search(chunk):
                        call.first_item_ns = clock()
                        awaiting = None
                    yield chunk
                complete = True
            except Exception as exc:  # the connection broke mid-body: the record says how
                error = exc
                raise
            finally:
                _finish(call, complete, done, events, error)

        def close() -> None:
            try:
                original_close()
            finally:
                # httpx closes the response itself when its stream breaks: the error in flight
                # is why it ended.
                _finish(call, False, None, events, _in_flight())

        response.iter_bytes = iter_bytes
        response.close = close
    weakref.finalize(response, _finish, call, False, None, events)


def _in_flight() -> BaseException | None:
    """The HTTP library's error being raised while the response is closed (a broken stream),
    if any; the caller's own exceptions say nothing about the call."""
    error = sys.exc_info()[1]
    if error is not None and type(error).__module__.partition(".")[0] in ("httpx", "httpx2"):
        return error
    return None


def _finish(
    call: LlmCall,
    complete: bool,
    done: Callable[[], None] | None,
    events: list[bytes] | None,
    error: BaseException | None = None,
) -> None:
    # The body was read to its end, or the response closed (by the SDK after the last event, by
    # the caller early, or by garbage collection). A stream counts as complete when its
    # terminal event arrived ([DONE], message_stop, response.completed), whichever way it ended.
    if call.finished:
        return
    if done is not None and complete:
        contained(done, where="response body")
    else:
        data = b"".join(events) if events else b""
        contained(call.stream_ended, data, error, where="stream end")


def _wrap_request(original: Callable[..., Any], route: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def request(self: Any, cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        # contained() written out: this runs on every call of the SDK
        try:
            call = _begin(route, self, options)
        except Exception as exc:
            note_problem(exc, "call start")
            call = None
        if call is None:
            return original(self, cast_to, options, *args, **kwargs)
        token = _current.set(call)
        try:
            result = original(self, cast_to, options, *args, **kwargs)
        except BaseException as exc:
            contained(call.failed, exc, where="call error")
            raise
        finally:
            _current.reset(token)
        try:
            _observe(call)
        except Exception as exc:
            note_problem(exc, "call result")
        return result

    request.__cert_original__ = original  # type: ignore[attr-defined]
    return request


def _wrap_async_request(original: Callable[..., Any], route: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def request(self: Any, cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            call = _begin(route, self, options)
        except Exception as exc:
            note_problem(exc, "call start")
            call = None
        if call is None:
            return await original(self, cast_to, options, *args, **kwargs)
        call.is_async = True
        token = _current.set(call)
        try:
            result = await original(self, cast_to, options, *args, **kwargs)
        except BaseException as exc:
            contained(call.failed, exc, where="call error")
            raise
        finally:
            _current.reset(token)
        try:
            _observe(call)
        except Exception as exc:
            note_problem(exc, "call result")
        return result

    request.__cert_original__ = original  # type: ignore[attr-defined]
    return request


def _wrap_process(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _process_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        call = _current.get()
        if call is not None:
            call.http = kwargs.get("response")
        return original(self, *args, **kwargs)

    _process_response.__cert_original__ = original  # type: ignore[attr-defined]
    return _process_response


def _wrap_async_process(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def _process_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        call = _current.get()
        if call is not None:
            call.http = kwargs.get("response")
        return await original(self, *args, **kwargs)

    _process_response.__cert_original__ = original  # type: ignore[attr-defined]
    return _process_response


def _patch(provider: str, base: Any) -> list[tuple[type, str, Any]]:
    """Wrap the base client of an imported SDK (``base``: its ``_base_client`` module)."""
    route = _ROUTES[provider]
    plan = (
        (base.SyncAPIClient, "request", lambda f: _wrap_request(f, route)),
        (base.AsyncAPIClient, "request", lambda f: _wrap_async_request(f, route)),
        (base.SyncAPIClient, "_process_response", _wrap_process),
        (base.AsyncAPIClient, "_process_response", _wrap_async_process),
    )
    done: list[tuple[type, str, Any]] = []
    try:
        for owner, name, wrap in plan:
            original = owner.__dict__[name]
            setattr(owner, name, wrap(original))
            done.append((owner, name, original))
    except BaseException:
        for owner, name, original in reversed(done):  # all or nothing: never half patched
            setattr(owner, name, original)
        raise
    return done


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches a pending provider's base client right after the SDK imports it."""

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        provider, _, rest = fullname.partition(".")
        if rest != "_base_client" or provider not in _pending:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_patch(module: Any) -> None:
            exec_module(module)
            with _lock:
                if provider in _pending and provider not in _patched:
                    _pending.discard(provider)
                    done = contained(_patch, provider, module, where=f"patching {provider} on import")
                    if done is not None:
                        _patched[provider] = done

        loader.exec_module = exec_then_patch  # type: ignore[method-assign]
        return spec


_finder = _PatchOnImport()


def instrument(
    providers: Iterable[str] | None = None,
    *,
    capture: CaptureMode | str = "full",
    on_import: bool = False,
) -> list[str]:
    """Record every LLM call made through the installed OpenAI / Anthropic SDKs.

    ``providers`` limits it to some of ``"openai"``, ``"anthropic"`` (default: every one that is
    installed); asking for one that is not installed raises ``ImportError``. ``capture`` says what
    records keep of prompts and answers: ``"full"`` (default), ``"hashed"`` (SHA-256 of each) or
    ``"off"``. ``on_import=True`` patches an SDK that is not imported yet when the application
    imports it, instead of importing it now (the Anthropic SDK alone takes seconds to import).
    Calling it again changes ``capture`` and patches nothing twice. Returns the providers now
    instrumented (with ``on_import``, also those waiting for their import).
    """
    global _capture
    try:
        mode = CaptureMode(capture)
    except ValueError:
        choices = ", ".join(m.value for m in CaptureMode)
        raise ValueError(f"capture must be one of {choices}; got {capture!r}") from None
    explicit = providers is not None
    wanted = list(providers) if providers is not None else list(PROVIDERS)
    unknown = [p for p in wanted if p not in PROVIDERS]
    if unknown:
        raise ValueError(f"unknown provider {unknown[0]!r}; known: {', '.join(PROVIDERS)}")
    with _lock:
        _capture = mode
        todo = [p for p in wanted if p not in _patched]
    # Imports happen outside the lock: an import in another thread may be patching on import
    # (holding the import lock and waiting for ours), so never wait for one while holding ours.
    for provider in todo:
        if on_import and f"{provider}._base_client" not in sys.modules:
            if importlib.util.find_spec(provider) is None:
                if explicit:
                    raise ImportError(
                        f"cannot instrument {provider!r}: the {provider} package is not installed"
                    )
                continue
            with _lock:
                if provider not in _patched:
                    _pending.add(provider)
                    if _finder not in sys.meta_path:
                        sys.meta_path.insert(0, _finder)
            continue
        with _lock:
            _pending.discard(provider)
        try:
            base = importlib.import_module(f"{provider}._base_client")
        except ImportError as exc:
            if explicit:
                message = f"cannot instrument {provider!r}: the {provider} package is not installed"
                raise ImportError(message) from exc
            continue
        with _lock:
            if provider not in _patched:
                _patched[provider] = _patch(provider, base)
    with _lock:
        return sorted(set(_patched) | _pending)


def uninstrument(providers: Iterable[str] | None = None) -> None:
    """Put the SDKs' original methods back (all instrumented providers by default)."""
    with _lock:
        chosen = list(providers) if providers is not None else [*_patched, *_pending]
        for provider in chosen:
            _pending.discard(provider)
            for owner, name, original in _patched.pop(provider, []):
                setattr(owner, name, original)
        if not _pending and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)


def instrumented_providers() -> list[str]:
    """The providers whose SDK is currently patched, or will be on import (``on_import=True``)."""
    with _lock:
        return sorted(set(_patched) | _pending)
