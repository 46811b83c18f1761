"""Reading OpenAI and Anthropic responses and stream items into records.

Attribute access with defaults throughout (``_get``), so a field an SDK version lacks gives
``None`` instead of an exception; the objects are the SDKs' own parsed models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._records import Usage
from ._call import StreamState

__all__ = ["ANTHROPIC_MESSAGES", "OPENAI_EXTRACTORS"]


def _get(obj: Any, *path: str) -> Any:
    """``obj[a][b]...`` for decoded JSON, ``None`` wherever a step is missing or not an object."""
    for name in path:
        if type(obj) is not dict:
            return None
        obj = obj.get(name)
    return obj


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def _openai_usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    inputs = _get(usage, "prompt_tokens")
    if inputs is None:
        inputs = _get(usage, "input_tokens")  # Responses API
    outputs = _get(usage, "completion_tokens")
    if outputs is None:
        outputs = _get(usage, "output_tokens")
    cached = _get(usage, "prompt_tokens_details", "cached_tokens")
    if cached is None:
        cached = _get(usage, "input_tokens_details", "cached_tokens")
    reasoning = _get(usage, "completion_tokens_details", "reasoning_tokens")
    if reasoning is None:
        reasoning = _get(usage, "output_tokens_details", "reasoning_tokens")
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


def _chat_message(message: Any) -> Any:
    content = _get(message, "content")
    tool_calls = _get(message, "tool_calls") or []
    refusal = _get(message, "refusal")
    if not tool_calls and not refusal:
        return content
    out: dict[str, Any] = {"content": content}
    if refusal:
        out["refusal"] = refusal
    if tool_calls:
        out["tool_calls"] = [
            {"name": _get(call, "function", "name"), "arguments": _get(call, "function", "arguments")}
            for call in tool_calls
        ]
    return out


class OpenAIChat:
    operation = "chat"

    def request_input(self, body: Mapping[str, Any]) -> Any:
        return body.get("messages")

    def response(self, result: Any) -> tuple[Any, Usage | None, list[str] | None, str | None]:
        choices = _get(result, "choices") or []
        finish = [str(r) for c in choices if (r := _get(c, "finish_reason"))]
        output = _one_or_many([_chat_message(_get(c, "message")) for c in choices])
        return output, _openai_usage(_get(result, "usage")), finish or None, _get(result, "model")

    def stream_item(self, state: StreamState, item: Any) -> bool:
        state.model = _get(item, "model") or state.model
        usage = _get(item, "usage")
        if usage is not None:
            state.usage = _openai_usage(usage)
        content = False
        for choice in _get(item, "choices") or []:
            index = _get(choice, "index") or 0
            delta = _get(choice, "delta")
            text = _get(delta, "content")
            if text:
                state.add_text(index, text)
                content = True
            for call in _get(delta, "tool_calls") or []:
                key = index * 1000 + (_get(call, "index") or 0)
                tool = state.tools.setdefault(key, {"name": None, "arguments": ""})
                name = _get(call, "function", "name")
                if name:
                    tool["name"] = name
                tool["arguments"] += _get(call, "function", "arguments") or ""
                content = True
            reason = _get(choice, "finish_reason")
            if reason:
                state.finish_reasons.append(str(reason))
        return content

    def stream_output(self, state: StreamState) -> Any:
        indices = sorted(set(state.texts) | {key // 1000 for key in state.tools})
        outputs = []
        for index in indices:
            text = "".join(state.texts.get(index, [])) or None
            tools = [tool for key, tool in sorted(state.tools.items()) if key // 1000 == index]
            outputs.append({"content": text, "tool_calls": tools} if tools else text)
        return _one_or_many(outputs)


class OpenAICompletion:
    operation = "text_completion"

    def request_input(self, body: Mapping[str, Any]) -> Any:
        return body.get("prompt")

    def response(self, result: Any) -> tuple[Any, Usage | None, list[str] | None, str | None]:
        choices = _get(result, "choices") or []
        finish = [str(r) for c in choices if (r := _get(c, "finish_reason"))]
        output = _one_or_many([_get(c, "text") for c in choices])
        return output, _openai_usage(_get(result, "usage")), finish or None, _get(result, "model")

    def stream_item(self, state: StreamState, item: Any) -> bool:
        state.model = _get(item, "model") or state.model
        if (usage := _get(item, "usage")) is not None:
            state.usage = _openai_usage(usage)
        content = False
        for choice in _get(item, "choices") or []:
            text = _get(choice, "text")
            if text:
                state.add_text(_get(choice, "index") or 0, text)
                content = True
            if reason := _get(choice, "finish_reason"):
                state.finish_reasons.append(str(reason))
        return content

    def stream_output(self, state: StreamState) -> Any:
        return _one_or_many(["".join(parts) for _, parts in sorted(state.texts.items())])


class OpenAIEmbeddings:
    operation = "embeddings"

    def request_input(self, body: Mapping[str, Any]) -> Any:
        return body.get("input")

    def response(self, result: Any) -> tuple[Any, Usage | None, list[str] | None, str | None]:
        data = _get(result, "data") or []
        first = _get(data[0], "embedding") if data else None
        # The vectors themselves are not evidence of anything: keep their count and size.
        output = {"vectors": len(data), "dimensions": len(first) if isinstance(first, (list, str)) else None}
        return output, _openai_usage(_get(result, "usage")), None, _get(result, "model")

    def stream_item(self, state: StreamState, item: Any) -> bool:  # embeddings are never streamed
        return False

    def stream_output(self, state: StreamState) -> Any:
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

    def stream_item(self, state: StreamState, item: Any) -> bool:
        kind = _get(item, "type") or ""
        if kind == "response.output_text.delta":
            state.add_text(0, _get(item, "delta"))
            return True
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            state.final = _get(item, "response")
            state.ended = True
        elif kind == "response.created":
            state.model = _get(item, "response", "model")
        return kind.endswith(".delta")

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
        value = _get(usage, name)
        return value if type(value) is int and value >= 0 else old

    cached_before = base.cache_read_input_tokens + base.cache_creation_input_tokens
    uncached = pick("input_tokens", base.input_tokens - cached_before)
    cache_read = pick("cache_read_input_tokens", base.cache_read_input_tokens)
    cache_write = pick("cache_creation_input_tokens", base.cache_creation_input_tokens)
    # Anthropic's input_tokens leaves the cache out; ours counts every input token.
    return Usage(
        input_tokens=max(0, uncached) + cache_read + cache_write,
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

    def request_input(self, body: Mapping[str, Any]) -> Any:
        system = body.get("system")
        if system:  # the SDKs' "not given" sentinels are falsy
            return {"system": system, "messages": body.get("messages")}
        return body.get("messages")

    def response(self, result: Any) -> tuple[Any, Usage | None, list[str] | None, str | None]:
        blocks = [_anthropic_block(b) for b in _get(result, "content") or []]
        reason = _get(result, "stop_reason")
        return (
            _anthropic_output(blocks),
            _anthropic_usage(_get(result, "usage")),
            [str(reason)] if reason else None,
            _get(result, "model"),
        )

    def stream_item(self, state: StreamState, item: Any) -> bool:
        kind = _get(item, "type")
        if kind == "message_start":
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
            return True
        elif kind == "message_stop":
            state.ended = True
        elif kind == "message_delta":
            reason = _get(item, "delta", "stop_reason")
            if reason:
                state.finish_reasons.append(str(reason))
            state.usage = _anthropic_usage(_get(item, "usage"), state.usage)
        return False

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


ANTHROPIC_MESSAGES = AnthropicMessages()
