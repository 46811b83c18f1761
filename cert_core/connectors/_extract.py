"""Reading OpenAI and Anthropic responses and stream items into records.

Attribute access with defaults throughout (``_get``), so a field an SDK version lacks gives
``None`` instead of an exception; the objects are the SDKs' own parsed models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

import msgspec

from .._records import MAX_COUNT, CallError, Usage
from ._call import StreamState, TokenLogprobs

_ANY = msgspec.json.Decoder()


def _stream_error(details: Any) -> CallError:
    """An error event inside a stream (both providers send one as an ``error`` object)."""
    details = details if type(details) is dict else {}
    return CallError(
        type=str(details.get("type") or "stream_error"),
        message=str(details.get("message") or "the provider ended the stream with an error"),
    )


__all__ = ["ANTHROPIC_MESSAGES", "OPENAI_EXTRACTORS"]


def _get(obj: Any, *path: str) -> Any:
    """``obj[a][b]...`` for decoded JSON, ``None`` wherever a step is missing or not an object."""
    for name in path:
        if type(obj) is not dict:
            return None
        obj = obj.get(name)
    return obj


def _count(value: Any, default: int = 0) -> int:
    """A token count from a response, or ``default`` where it is not one a record may hold."""
    return value if type(value) is int and 0 <= value <= MAX_COUNT else default


def _openai_usage(usage: Any) -> Usage | None:
    if type(usage) is not dict:
        return None
    get = usage.get
    # Chat and completions name them prompt/completion tokens; the Responses API input/output.
    inputs = get("prompt_tokens", get("input_tokens"))
    outputs = get("completion_tokens", get("output_tokens"))
    details = get("prompt_tokens_details") or get("input_tokens_details")
    cached = details.get("cached_tokens") if type(details) is dict else None
    details = get("completion_tokens_details") or get("output_tokens_details")
    reasoning = details.get("reasoning_tokens") if type(details) is dict else None
    return Usage(
        input_tokens=_count(inputs),
        output_tokens=_count(outputs),
        cache_read_input_tokens=_count(cached),
        reasoning_tokens=_count(reasoning),
    )


def _one_or_many(outputs: list[Any]) -> Any:
    if not outputs:
        return None
    return outputs[0] if len(outputs) == 1 else outputs


def _chat_output(content: Any, tool_calls: Any, refusal: Any) -> Any:
    if not tool_calls and not refusal:
        return content
    tool_calls = tool_calls if type(tool_calls) is list else []
    out: dict[str, Any] = {"content": content}
    if refusal:
        out["refusal"] = refusal
    if tool_calls:
        out["tool_calls"] = [
            {"name": _get(call, "function", "name"), "arguments": _get(call, "function", "arguments")}
            for call in tool_calls
        ]
    return out


class _Alternative(msgspec.Struct, gc=False):
    logprob: Any = None


class _Token(msgspec.Struct, gc=False):
    # Only the numbers are decoded (the token text and its bytes are skipped, in C); a value
    # of the wrong type is kept as is, so the chunk still gives its text, and the statistics
    # refuse it when the stream ends.
    logprob: Any = None
    top_logprobs: list[_Alternative] | None = None


class _ChoiceLogprobs(msgspec.Struct, gc=False):
    content: list[_Token] | None = None
    refusal: list[_Token] | None = None


# How a token's logprob and its alternatives are read: from decoded JSON objects (complete
# responses, Responses API events) or from the _Token structs of a chat stream.
_FROM_JSON = (itemgetter("logprob"), methodcaller("get", "top_logprobs"))
_FROM_STRUCT = (attrgetter("logprob"), attrgetter("top_logprobs"))


def _read_tokens(batches: Iterable[Any], fields: tuple[Any, Any] = _FROM_JSON) -> TokenLogprobs | None:
    """Floats from lists of tokens in OpenAI's form (chat ``logprobs.content``, Responses
    ``logprobs``: ``{"logprob": ..., "top_logprobs": [{"logprob": ...}, ...]}``), in order."""
    logprob, alternatives = fields
    logprobs: list[float] = []
    tops: list[list[float]] = []
    for tokens in batches:
        logprobs += map(logprob, tokens)
        tops += [list(map(logprob, alternatives(token) or ())) for token in tokens]
    return (logprobs, tops) if logprobs else None


class _Function(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class _ToolDelta(msgspec.Struct, gc=False):
    index: int = 0
    function: _Function | None = None


class _Delta(msgspec.Struct, gc=False):
    content: str | None = None
    tool_calls: list[_ToolDelta] | None = None


class _Choice(msgspec.Struct, gc=False):
    index: int = 0
    delta: _Delta | None = None
    text: str | None = None  # legacy completions
    finish_reason: str | None = None
    logprobs: _ChoiceLogprobs | None = None


class _Chunk(msgspec.Struct, gc=False):
    """The fields of an OpenAI stream chunk we read; msgspec skips the rest while decoding (in C)."""

    model: str | None = None
    choices: list[_Choice] | None = None
    usage: dict[str, Any] | None = None
    error: Any = None


class _ChatMessage(msgspec.Struct, gc=False):
    content: Any = None
    tool_calls: Any = None
    refusal: Any = None


class _ChatChoice(msgspec.Struct, gc=False):
    message: _ChatMessage | None = None
    finish_reason: Any = None
    logprobs: Any = None


class _ChatResponse(msgspec.Struct, gc=False):
    """The fields of a chat completion we read (msgspec skips the rest while decoding, in C)."""

    model: Any = None
    choices: list[_ChatChoice] | None = None
    usage: Any = None


_CHAT_RESPONSE = msgspec.json.Decoder(_ChatResponse)


def _chat_response(value: Any) -> _ChatResponse:
    """A chat completion of another shape (a proxy's, a future API version's), read as plain
    JSON and kept as far as it fits: a choice or message that is not an object reads as empty."""
    if type(value) is not dict:
        return _ChatResponse()
    choices = value.get("choices")
    return _ChatResponse(
        model=value.get("model"),
        choices=[_chat_choice(c) for c in choices] if type(choices) is list else None,
        usage=value.get("usage"),
    )


def _chat_choice(choice: Any) -> _ChatChoice:
    if type(choice) is not dict:
        return _ChatChoice()
    message = choice.get("message")
    return _ChatChoice(
        message=_ChatMessage(message.get("content"), message.get("tool_calls"), message.get("refusal"))
        if type(message) is dict
        else None,
        finish_reason=choice.get("finish_reason"),
        logprobs=choice.get("logprobs"),
    )


def read_json(content: bytes) -> Any:
    """A response body decoded as plain JSON (what extractors without a typed form read)."""
    return _ANY.decode(content)


class OpenAIChat:
    operation = "chat"
    # The first chunk with a token: non-empty content or a tool call (the role chunk has none).
    first_token: re.Pattern[bytes] | None = re.compile(rb'"content": ?"[^"]|"tool_calls": ?\[')
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_Chunk)

    def request_input(self, body: Mapping[str, Any]) -> Any:
        return body.get("messages")

    def read(self, content: bytes) -> Any:
        # The typed form reads only what a record keeps.
        try:
            return _CHAT_RESPONSE.decode(content)
        except msgspec.ValidationError:
            return _chat_response(_ANY.decode(content))

    def response(self, result: Any) -> tuple[Any, Usage | None, list[str] | None, str | None]:
        choices = result.choices or ()
        finish = [str(c.finish_reason) for c in choices if c.finish_reason]
        output = _one_or_many(
            [
                None if (m := c.message) is None else _chat_output(m.content, m.tool_calls, m.refusal)
                for c in choices
            ]
        )
        return output, _openai_usage(result.usage), finish or None, result.model

    def logprobs(self, result: Any) -> TokenLogprobs | None:
        # Tokens of every choice are pooled: with n > 1 the statistics cover all n answers.
        # "logprobs" is null unless the request asked for them: one check in the usual case.
        every = [c.logprobs for c in result.choices or () if c.logprobs]
        if not every:
            return None
        # Answer and refusal tokens alike.
        return _read_tokens(
            tokens
            for found in every
            if type(found) is dict
            for tokens in (found.get("content"), found.get("refusal"))
            if tokens
        )

    def stream_logprobs(self, state: StreamState) -> TokenLogprobs | None:
        return _read_tokens(
            (tokens for found in state.logprobs for tokens in (found.content, found.refusal) if tokens),
            _FROM_STRUCT,
        )

    def stream_items(self, state: StreamState, items: list[_Chunk]) -> None:
        texts = state.texts
        for item in items:
            if item.error is not None:
                state.error = _stream_error(item.error)
            if item.model:
                state.model = item.model
            if item.usage is not None:
                state.usage = _openai_usage(item.usage)
            for choice in item.choices or ():
                delta = choice.delta
                if delta is not None:
                    if delta.content:
                        texts.setdefault(choice.index, []).append(delta.content)
                    for call in delta.tool_calls or ():
                        key = choice.index * 1000 + call.index
                        tool = state.tools.setdefault(key, {"name": None, "arguments": ""})
                        if call.function is not None:
                            if call.function.name:
                                tool["name"] = call.function.name
                            tool["arguments"] += call.function.arguments or ""
                elif choice.text:
                    texts.setdefault(choice.index, []).append(choice.text)
                if choice.finish_reason:
                    state.finish_reasons.append(choice.finish_reason)
                if choice.logprobs is not None:  # null unless the request asked for logprobs
                    state.logprobs.append(choice.logprobs)  # read once, when the stream ends

    def stream_output(self, state: StreamState) -> Any:
        indices = sorted(set(state.texts) | {key // 1000 for key in state.tools})
        outputs = []
        for index in indices:
            text = "".join(state.texts.get(index, [])) or None
            tools = [tool for key, tool in sorted(state.tools.items()) if key // 1000 == index]
            outputs.append({"content": text, "tool_calls": tools} if tools else text)
        return _one_or_many(outputs)


class OpenAICompletion(OpenAIChat):
    operation = "text_completion"
    first_token: re.Pattern[bytes] | None = re.compile(rb'"text": ?"[^"]')
    read = staticmethod(read_json)

    def request_input(self, body: Mapping[str, Any]) -> Any:
        return body.get("prompt")

    def response(self, result: Any) -> tuple[Any, Usage | None, list[str] | None, str | None]:
        choices = _get(result, "choices") or []
        finish = [str(r) for c in choices if (r := _get(c, "finish_reason"))]
        output = _one_or_many([_get(c, "text") for c in choices])
        return output, _openai_usage(_get(result, "usage")), finish or None, _get(result, "model")

    def stream_output(self, state: StreamState) -> Any:
        return _one_or_many(["".join(parts) for _, parts in sorted(state.texts.items())])

    def logprobs(self, result: Any) -> TokenLogprobs | None:
        # The legacy format (parallel token_logprobs / top_logprobs lists, with the prompt's
        # tokens mixed in under echo=True) is not read: such calls are not measured.
        return None

    def stream_logprobs(self, state: StreamState) -> TokenLogprobs | None:
        return None


class OpenAIEmbeddings:
    operation = "embeddings"
    first_token: re.Pattern[bytes] | None = None
    decoder: msgspec.json.Decoder[Any] = _ANY
    read = staticmethod(read_json)

    def request_input(self, body: Mapping[str, Any]) -> Any:
        return body.get("input")

    def response(self, result: Any) -> tuple[Any, Usage | None, list[str] | None, str | None]:
        data = _get(result, "data") or []
        first = _get(data[0], "embedding") if data else None
        # The vectors themselves are not evidence of anything: keep their count and size.
        output = {"vectors": len(data), "dimensions": len(first) if isinstance(first, (list, str)) else None}
        return output, _openai_usage(_get(result, "usage")), None, _get(result, "model")

    def stream_items(self, state: StreamState, items: list[Any]) -> None:  # never streamed
        return None

    def stream_output(self, state: StreamState) -> Any:
        return None

    def logprobs(self, result: Any) -> TokenLogprobs | None:
        return None

    def stream_logprobs(self, state: StreamState) -> TokenLogprobs | None:
        return None


def _responses_output(result: Any) -> Any:
    # What the SDK offers as ``Response.output_text``: the text parts of the message items.
    text = "".join(
        part.get("text") or ""
        for item in _get(result, "output") or []
        if _get(item, "type") == "message"
        for part in _get(item, "content") or []
        if _get(part, "type") == "output_text"
    )
    calls = [
        {"name": _get(item, "name"), "arguments": _get(item, "arguments")}
        for item in _get(result, "output") or []
        if _get(item, "type") == "function_call"
    ]
    if calls:
        return {"content": text or None, "tool_calls": calls}
    return text


class OpenAIResponses:
    operation = "responses"
    first_token: re.Pattern[bytes] | None = re.compile(rb'"type": ?"response\.[a-z_.]*delta"')
    decoder: msgspec.json.Decoder[Any] = _ANY
    read = staticmethod(read_json)

    def request_input(self, body: Mapping[str, Any]) -> Any:
        instructions = body.get("instructions")
        if instructions:
            return {"instructions": instructions, "input": body.get("input")}
        return body.get("input")

    def response(self, result: Any) -> tuple[Any, Usage | None, list[str] | None, str | None]:
        status = _get(result, "status")
        reason = _get(result, "incomplete_details", "reason")
        finish = [str(reason or status)] if (reason or status) else None
        return _responses_output(result), _openai_usage(_get(result, "usage")), finish, _get(result, "model")

    def logprobs(self, result: Any) -> TokenLogprobs | None:
        # Output text parts carry "logprobs" when the request includes
        # "message.output_text.logprobs"; otherwise the list is empty or absent.
        found = [
            tokens
            for item in _get(result, "output") or ()
            if _get(item, "type") == "message"
            for part in _get(item, "content") or ()
            if (tokens := _get(part, "logprobs"))
        ]
        return _read_tokens(found) if found else None

    def stream_logprobs(self, state: StreamState) -> TokenLogprobs | None:
        return _read_tokens(state.logprobs)

    def stream_items(self, state: StreamState, items: list[Any]) -> None:
        for item in items:
            kind = _get(item, "type") or ""
            if kind == "response.output_text.delta":
                state.add_text(0, _get(item, "delta"))
                tokens = item.get("logprobs")  # an empty list unless the request included them
                if tokens:
                    state.logprobs.append(tokens)
            elif kind in ("response.completed", "response.incomplete", "response.failed"):
                state.final = _get(item, "response")
                state.ended = True
            elif kind == "response.created":
                state.model = _get(item, "response", "model")
            elif kind == "error" or "error" in item:
                state.error = _stream_error(item.get("error") or item)

    def stream_output(self, state: StreamState) -> Any:
        return state.text() or None


OPENAI_EXTRACTORS: dict[str, Any] = {
    "/chat/completions": OpenAIChat(),
    "/completions": OpenAICompletion(),
    "/embeddings": OpenAIEmbeddings(),
    "/responses": OpenAIResponses(),
}


def _anthropic_usage(usage: Any, previous: Usage | None = None) -> Usage | None:
    if usage is None:
        return previous
    base = previous or Usage()

    def pick(name: str, old: int) -> int:
        return _count(_get(usage, name), old)

    cached_before = base.cache_read_input_tokens + base.cache_creation_input_tokens
    uncached = pick("input_tokens", base.input_tokens - cached_before)
    cache_read = pick("cache_read_input_tokens", base.cache_read_input_tokens)
    cache_write = pick("cache_creation_input_tokens", base.cache_creation_input_tokens)
    # Anthropic's input_tokens leaves the cache out; ours counts every input token.
    return Usage(
        input_tokens=min(max(0, uncached) + cache_read + cache_write, MAX_COUNT),
        output_tokens=pick("output_tokens", base.output_tokens),
        cache_read_input_tokens=cache_read,
        cache_creation_input_tokens=cache_write,
    )


def _anthropic_block(block: Any) -> dict[str, Any]:
    kind = _get(block, "type")
    if kind == "text":
        return {"type": "text", "text": _get(block, "text")}
    if kind in ("tool_use", "server_tool_use"):
        return {
            "type": kind,
            "id": _get(block, "id"),
            "name": _get(block, "name"),
            "input": _get(block, "input"),
        }
    if kind == "thinking":
        return {"type": "thinking", "thinking": _get(block, "thinking")}
    return {"type": str(kind)}


def _anthropic_output(blocks: list[dict[str, Any]]) -> Any:
    if all(b["type"] == "text" for b in blocks):
        return "".join(b["text"] or "" for b in blocks)
    return blocks


class AnthropicMessages:
    operation = "chat"
    first_token: re.Pattern[bytes] | None = re.compile(rb'"type": ?"content_block_delta"')
    decoder: msgspec.json.Decoder[Any] = _ANY

    def request_input(self, body: Mapping[str, Any]) -> Any:
        system = body.get("system")
        if system:  # the SDKs' "not given" sentinels are falsy
            return {"system": system, "messages": body.get("messages")}
        return body.get("messages")

    read = staticmethod(read_json)

    def response(self, result: Any) -> tuple[Any, Usage | None, list[str] | None, str | None]:
        blocks = [_anthropic_block(b) for b in _get(result, "content") or []]
        reason = _get(result, "stop_reason")
        return (
            _anthropic_output(blocks),
            _anthropic_usage(_get(result, "usage")),
            [str(reason)] if reason else None,
            _get(result, "model"),
        )

    def stream_items(self, state: StreamState, items: list[Any]) -> None:
        for item in items:
            self._event(state, item)

    def _event(self, state: StreamState, item: Any) -> None:
        kind = _get(item, "type")
        if kind == "error":
            state.error = _stream_error(item.get("error"))
        elif kind == "message_start":
            message = _get(item, "message")
            state.model = _get(message, "model")
            state.usage = _anthropic_usage(_get(message, "usage"))
        elif kind == "content_block_start":
            block = _anthropic_block(_get(item, "content_block"))
            if block["type"] != "text":
                block["json"] = []
                state.tools[_get(item, "index") or 0] = block
        elif kind == "content_block_delta":
            delta = _get(item, "delta")
            index = _get(item, "index") or 0
            delta_type = _get(delta, "type")
            if delta_type == "text_delta":
                state.add_text(index, _get(delta, "text"))
            elif delta_type == "input_json_delta" and index in state.tools:
                state.tools[index]["json"].append(_get(delta, "partial_json") or "")
            elif delta_type == "thinking_delta" and index in state.tools:
                state.tools[index]["thinking"] = (state.tools[index].get("thinking") or "") + (
                    _get(delta, "thinking") or ""
                )
        elif kind == "message_stop":
            state.ended = True
        elif kind == "message_delta":
            reason = _get(item, "delta", "stop_reason")
            if reason:
                state.finish_reasons.append(str(reason))
            state.usage = _anthropic_usage(_get(item, "usage"), state.usage)

    def stream_output(self, state: StreamState) -> Any:
        import json

        blocks: list[dict[str, Any]] = []
        for index in sorted(set(state.texts) | set(state.tools)):
            if index in state.tools:
                block = dict(state.tools[index])
                raw = "".join(block.pop("json", []))
                if block["type"] in ("tool_use", "server_tool_use") and raw:
                    try:
                        block["input"] = json.loads(raw)
                    except ValueError:
                        block["input"] = raw  # cut off mid-stream: keep what arrived
                blocks.append(block)
            else:
                blocks.append({"type": "text", "text": "".join(state.texts[index])})
        return _anthropic_output(blocks) if blocks else None

    def logprobs(self, result: Any) -> TokenLogprobs | None:
        return None  # the Messages API returns no logprobs

    def stream_logprobs(self, state: StreamState) -> TokenLogprobs | None:
        return None


ANTHROPIC_MESSAGES = AnthropicMessages()
