"""Automatic instrumentation of the OpenAI and Anthropic Python SDKs.

Both SDKs send every API call through one method of their base client (``SyncAPIClient.request``
and ``AsyncAPIClient.request``): ``create``, ``parse``, ``stream``, ``with_raw_response`` and the
helpers alike, on every client class (OpenAI, Azure OpenAI, Anthropic, Bedrock, Vertex). We wrap
that one method per SDK, recognise LLM calls by their API path, and let everything else through
untouched. The wrapper returns exactly what the SDK returned and raises exactly what it raised;
a stream comes back as the same object, with its item iterator observed in place.

:func:`instrument` is idempotent and :func:`uninstrument` puts the SDKs' original functions back.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
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

_lock = threading.Lock()
# (owner class, attribute name, the original value in the class __dict__) per patched method.
_patched: dict[str, list[tuple[type, str, Any]]] = {}
_capture = CaptureMode.FULL


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


def _begin(route: Callable[..., Any], client: Any, options: Any) -> LlmCall | None:
    target = route(client, options)
    if target is None:
        return None
    body = getattr(options, "json_data", None)
    provider, extractor, model = target
    body = body if isinstance(body, Mapping) else {}
    return LlmCall(provider, extractor, body, capture=_capture, model=model)


def _is_raw(result: Any) -> bool:
    return hasattr(result, "http_response") and callable(getattr(result, "parse", None))


def _is_stream(result: Any) -> bool:
    return hasattr(result, "_iterator") and hasattr(result, "response") and hasattr(result, "close")


def _observe_sync(call: LlmCall, result: Any) -> Any:
    parsed = result.parse() if _is_raw(result) else result  # the SDK caches what parse() returns
    if _is_stream(parsed):
        _watch_stream(call, parsed)
    else:
        call.succeeded(parsed)
    return result


def _watch_stream(call: LlmCall, stream: Any) -> None:
    items = stream._iterator

    def observed() -> Any:
        complete, error = False, None
        try:
            for item in items:
                contained(call.stream_item, item, where="stream item")
                yield item
            complete = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            contained(lambda: call.stream_ended(complete=complete, error=error), where="stream end")

    generator = observed()
    stream._iterator = generator
    close = stream.close

    @functools.wraps(close)
    def closing() -> None:
        try:
            close()
        finally:
            contained(generator.close, where="stream close")
            contained(lambda: call.stream_ended(complete=False), where="stream close")

    stream.close = closing
    weakref.finalize(stream, _dropped, call)


def _watch_async_stream(call: LlmCall, stream: Any) -> None:
    items = stream._iterator

    async def observed() -> Any:
        complete, error = False, None
        try:
            async for item in items:
                contained(call.stream_item, item, where="stream item")
                yield item
            complete = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            contained(lambda: call.stream_ended(complete=complete, error=error), where="stream end")

    stream._iterator = observed()
    close = stream.close

    @functools.wraps(close)
    async def closing() -> None:
        try:
            await close()
        finally:
            contained(lambda: call.stream_ended(complete=False), where="stream close")

    stream.close = closing
    weakref.finalize(stream, _dropped, call)


def _dropped(call: LlmCall) -> None:
    # The stream object was garbage-collected before anyone finished or closed it.
    contained(lambda: call.stream_ended(complete=False), where="stream dropped")


def _wrap_sync(original: Callable[..., Any], route: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def request(self: Any, cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        call = contained(_begin, route, self, options, where="call start")
        if call is None:
            return original(self, cast_to, options, *args, **kwargs)
        try:
            result = original(self, cast_to, options, *args, **kwargs)
        except BaseException as exc:
            contained(call.failed, exc, where="call error")
            raise
        return contained(_observe_sync, call, result, default=result, where="call result")

    request.__cert_original__ = original  # type: ignore[attr-defined]
    return request


def _wrap_async(original: Callable[..., Any], route: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def request(self: Any, cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        call = contained(_begin, route, self, options, where="call start")
        if call is None:
            return await original(self, cast_to, options, *args, **kwargs)
        try:
            result = await original(self, cast_to, options, *args, **kwargs)
        except BaseException as exc:
            contained(call.failed, exc, where="call error")
            raise
        try:
            parsed = result.parse() if _is_raw(result) else result
            if inspect.isawaitable(parsed):
                parsed = await parsed
            if _is_stream(parsed):
                _watch_async_stream(call, parsed)
            else:
                call.succeeded(parsed)
        except Exception as exc:  # our problem, never the caller's: counted and logged once
            note_problem(exc, "call result")
        return result

    request.__cert_original__ = original  # type: ignore[attr-defined]
    return request


def _patch(provider: str) -> list[tuple[type, str, Any]]:
    base = importlib.import_module(f"{provider}._base_client")
    route = _ROUTES[provider]
    done = []
    for owner, wrap in ((base.SyncAPIClient, _wrap_sync), (base.AsyncAPIClient, _wrap_async)):
        original = owner.__dict__["request"]
        owner.request = wrap(original, route)
        done.append((owner, "request", original))
    return done


def instrument(providers: Iterable[str] | None = None, *, capture: CaptureMode | str = "full") -> list[str]:
    """Record every LLM call made through the installed OpenAI / Anthropic SDKs.

    ``providers`` limits it to some of ``"openai"``, ``"anthropic"`` (default: every one that is
    installed); asking for one that is not installed raises ``ImportError``. ``capture`` says what
    records keep of prompts and answers: ``"full"`` (default), ``"hashed"`` (SHA-256 of each) or
    ``"off"``. Calling it again changes ``capture`` and patches nothing twice. Returns the
    providers now instrumented.
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
        for provider in wanted:
            if provider in _patched:
                continue
            try:
                importlib.import_module(provider)
            except ImportError as exc:
                if explicit:
                    message = f"cannot instrument {provider!r}: the {provider} package is not installed"
                    raise ImportError(message) from exc
                continue
            _patched[provider] = _patch(provider)
        return sorted(_patched)


def uninstrument(providers: Iterable[str] | None = None) -> None:
    """Put the SDKs' original methods back (all instrumented providers by default)."""
    with _lock:
        for provider in list(providers) if providers is not None else list(_patched):
            for owner, name, original in _patched.pop(provider, []):
                setattr(owner, name, original)


def instrumented_providers() -> list[str]:
    """The providers whose SDK is currently patched."""
    with _lock:
        return sorted(_patched)
