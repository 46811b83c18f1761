"""Helpers to test code that calls LLM SDKs, offline: canned responses in the providers' wire
formats and a mock HTTP handler to plug into the SDK clients.

::

    import httpx2, openai
    from cert_core.testing import FakeLLM

    fake = FakeLLM()
    fake.openai_chat("Paris is the capital of France.", prompt_tokens=12, completion_tokens=7)
    client = openai.OpenAI(api_key="test", http_client=httpx2.Client(transport=fake.transport()))

``FakeLLM`` answers each request with the next queued reply for its API path (or the last one,
repeated), records every request it saw, and serves streams as server-sent events when the
request asks for ``stream: true``. Nothing here is imported by ``cert_core`` itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

#: Token logprobs for the canned OpenAI replies: ``(token, logprob)`` or
#: ``(token, logprob, {alternative: logprob, ...})``, one per generated token.
TokenLogprob = tuple[str, float] | tuple[str, float, Mapping[str, float]]

__all__ = [
    "FakeLLM",
    "Reply",
    "TokenLogprob",
    "anthropic_message",
    "anthropic_stream_events",
    "openai_chat_chunks",
    "openai_chat_completion",
    "sse",
    "sse_events",
]


def openai_chat_completion(
    content: str | None = "Paris is the capital of France.",
    *,
    model: str = "gpt-4o-mini-2024-07-18",
    prompt_tokens: int = 12,
    completion_tokens: int = 7,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    finish_reason: str = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
    logprobs: Sequence[TokenLogprob] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object. ``tool_calls``: ``[{"name": ..., "arguments": "{...}"}]``.
    ``logprobs``: the tokens' logprobs, as a request with ``logprobs=True`` (and
    ``top_logprobs=k``, when alternatives are given) gets them; see :data:`TokenLogprob`."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = [_tool_call(i, t["name"], t["arguments"]) for i, t in enumerate(tool_calls)]
    choice_logprobs = None if logprobs is None else {"content": _token_logprobs(logprobs), "refusal": None}
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1730000000,
        "model": model,
        "choices": [
            {"index": 0, "finish_reason": finish_reason, "logprobs": choice_logprobs, "message": message}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        },
    }


def _token_logprobs(tokens: Iterable[TokenLogprob]) -> list[dict[str, Any]]:
    """OpenAI's wire form of token logprobs (chat ``logprobs.content``, Responses ``logprobs``)."""
    out = []
    for token, logprob, *rest in tokens:
        top = rest[0] if rest else {}
        out.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": alt, "logprob": value, "bytes": list(alt.encode())}
                    for alt, value in top.items()
                ],
            }
        )
    return out


def _tool_call(i: int, name: str, arguments: str) -> dict[str, Any]:
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}


def openai_chat_chunks(
    pieces: Iterable[str] = ("Paris is ", "the capital."),
    *,
    model: str = "gpt-4o-mini-2024-07-18",
    usage: tuple[int, int] | None = (12, 5),
    finish_reason: str = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
    logprobs: Sequence[TokenLogprob] | None = None,
) -> list[dict[str, Any]]:
    """``chat.completion.chunk`` objects of a stream; ``usage`` adds the final usage chunk that
    OpenAI sends only when the request has ``stream_options={"include_usage": True}``.
    ``logprobs`` (see :data:`TokenLogprob`) are shared out in order over the content chunks, as
    evenly as they go; then every chunk carries a ``logprobs`` object, as OpenAI sends them."""
    base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1730000000, "model": model}
    pieces = list(pieces)
    if logprobs is not None and not pieces:
        raise ValueError("openai_chat_chunks: logprobs need at least one content piece to ride on")

    def chunk(
        delta: dict[str, Any], finish: str | None = None, tokens: Sequence[TokenLogprob] = ()
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if logprobs is not None:
            choice["logprobs"] = {"content": _token_logprobs(tokens), "refusal": None}
        return {**base, "choices": [choice]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    shares = len(logprobs or ()) / max(1, len(pieces))
    chunks += [
        chunk({"content": p}, tokens=(logprobs or ())[round(i * shares) : round((i + 1) * shares)])
        for i, p in enumerate(pieces)
    ]
    for i, tool in enumerate(tool_calls or []):
        arguments = tool["arguments"]
        half = len(arguments) // 2
        chunks.append(chunk({"tool_calls": [{"index": i, **_tool_call(i, tool["name"], "")}]}))
        for part in (arguments[:half], arguments[half:]):
            chunks.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}))
    chunks.append(chunk({}, finish_reason))
    if usage is not None:
        total = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
        chunks.append({**base, "choices": [], "usage": total})
    return chunks


def anthropic_message(
    text: str | None = "Paris is the capital of France.",
    *,
    model: str = "claude-sonnet-4-20250514",
    input_tokens: int = 14,
    output_tokens: int = 9,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    stop_reason: str = "end_turn",
    tool_use: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Messages API ``message``. ``input_tokens`` is Anthropic's: the uncached input only.
    ``tool_use``: ``[{"name": ..., "input": {...}}]``."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text is not None else []
    content += [
        {"type": "tool_use", "id": f"toolu_{i}", "name": t["name"], "input": t["input"]}
        for i, t in enumerate(tool_use or [])
    ]
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if tool_use else stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
        },
    }


def anthropic_stream_events(message: Mapping[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events that stream ``message`` (default :func:`anthropic_message`):
    input tokens in ``message_start``, output tokens in ``message_delta``, text in two deltas,
    tool input as partial JSON."""
    message = dict(message or anthropic_message())
    usage = dict(message["usage"])
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str, dict[str, Any]]] = []

    def event(name: str, **fields: Any) -> None:
        events.append((name, {"type": name, **fields}))

    event("message_start", message=start)
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            event("content_block_start", index=index, content_block={"type": "text", "text": ""})
            text = block["text"]
            for part in (text[: len(text) // 2], text[len(text) // 2 :]):
                event("content_block_delta", index=index, delta={"type": "text_delta", "text": part})
        else:
            event("content_block_start", index=index, content_block={**block, "input": {}})
            raw = json.dumps(block["input"])
            for part in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
                delta = {"type": "input_json_delta", "partial_json": part}
                event("content_block_delta", index=index, delta=delta)
        event("content_block_stop", index=index)
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def sse_events(items: Iterable[Any], *, done: bool = False) -> list[bytes]:
    """Server-sent events, one ``bytes`` each: an item is a JSON object or ``(event_name, object)``."""
    out = []
    for item in items:
        if isinstance(item, tuple):
            out.append(f"event: {item[0]}\ndata: {json.dumps(item[1])}\n\n".encode())
        else:
            out.append(f"data: {json.dumps(item)}\n\n".encode())
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def sse(items: Iterable[Any], *, done: bool = False) -> bytes:
    """Server-sent events as one body."""
    return b"".join(sse_events(items, done=done))


def _chunked(module: Any, parts: list[bytes]) -> Any:
    """A response body that arrives part by part, as over a network, for sync and async clients."""

    class Chunked(module.SyncByteStream, module.AsyncByteStream):  # type: ignore[misc]
        def __iter__(self) -> Iterator[bytes]:
            yield from parts

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for part in parts:
                yield part

    return Chunked()


class Reply:
    """One canned HTTP reply: a JSON body, a stream of events, an error status, or an exception."""

    def __init__(
        self,
        body: Any = None,
        *,
        status: int = 200,
        stream: list[Any] | None = None,
        done: bool = False,
        headers: Mapping[str, str] | None = None,
        raises: BaseException | None = None,
    ) -> None:
        self.body = body
        self.status = status
        self.stream = stream
        self.done = done
        self.headers = dict(headers or {})
        self.raises = raises


class FakeLLM:
    """A stand-in for the OpenAI and Anthropic HTTP APIs, to plug into the SDK clients.

    ``transport()`` / ``async_transport()`` build an ``httpx2.MockTransport`` (``module="httpx"``
    for SDK versions on classic httpx). Replies are queued per API path suffix (``/chat/completions``,
    ``/v1/messages``, ...); requests asking for ``stream: true`` get the reply's stream form.
    """

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.requests: list[Any] = []

    def add(self, path: str, reply: Reply) -> FakeLLM:
        self.replies.setdefault(path, []).append(reply)
        return self

    def openai_chat(self, content: str | None = "Paris is the capital of France.", **fields: Any) -> FakeLLM:
        """Queue a chat completion; streamed requests get the same answer as chunks with usage."""
        body = openai_chat_completion(content, **fields)
        usage = (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])
        pieces = [content[: len(content) // 2], content[len(content) // 2 :]] if content else []
        tools = fields.get("tool_calls")
        logprobs = fields.get("logprobs")
        chunks = openai_chat_chunks(
            pieces, model=body["model"], usage=usage, tool_calls=tools, logprobs=logprobs
        )
        return self.add("/chat/completions", Reply(body, stream=chunks, done=True))

    def anthropic(self, text: str | None = "Paris is the capital of France.", **fields: Any) -> FakeLLM:
        """Queue a Messages API reply; streamed requests get it as events."""
        message = anthropic_message(text, **fields)
        return self.add("/v1/messages", Reply(message, stream=anthropic_stream_events(message)))

    def error(self, path: str, status: int, message: str = "error", **headers: str) -> FakeLLM:
        body = {"error": {"message": message, "type": "test_error"}, "type": "error"}
        return self.add(path, Reply(body, status=status, headers=headers))

    def _reply_for(self, path: str) -> Reply:
        for suffix in sorted(self.replies, key=len, reverse=True):
            if path.endswith(suffix):
                queue = self.replies[suffix]
                return queue.pop(0) if len(queue) > 1 else queue[0]
        raise LookupError(f"FakeLLM has no reply for {path}; queued: {sorted(self.replies)}")

    def handler(self, module: Any) -> Callable[[Any], Any]:
        def handle(request: Any) -> Any:
            self.requests.append(request)
            reply = self._reply_for(request.url.path)
            if reply.raises is not None:
                raise reply.raises
            try:
                body = json.loads(request.content or b"{}")
            except ValueError:
                body = {}
            if body.get("stream") and reply.stream is not None:
                headers = {"content-type": "text/event-stream", **reply.headers}
                parts = sse_events(reply.stream, done=reply.done)
                return module.Response(reply.status, headers=headers, stream=_chunked(module, parts))
            return module.Response(reply.status, headers=reply.headers, json=reply.body)

        return handle

    def transport(self, module: str = "httpx2") -> Any:
        mod = __import__(module)
        return mod.MockTransport(self.handler(mod))

    def async_transport(self, module: str = "httpx2") -> Any:
        return self.transport(module)  # MockTransport serves sync and async clients alike
