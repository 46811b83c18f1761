"""A local stand-in for the OpenAI and Anthropic HTTP APIs, for recording cassettes offline.

It speaks the real wire formats, so the official SDKs talk to it unchanged: point ``OPENAI_BASE_URL``
at ``<url>/v1`` and ``ANTHROPIC_BASE_URL`` at ``<url>``. Standard library only.

Endpoints: ``POST /v1/chat/completions`` (JSON, or server-sent events with ``stream``; a final usage
chunk only with ``stream_options.include_usage``), ``POST /v1/messages`` (JSON, or the Anthropic event
sequence ``message_start`` ... ``message_stop``) and ``POST /v1/embeddings`` (deterministic 8-dimension
unit vectors from a hash of each input, as floats or base64). Requests need a non-empty
``Authorization: Bearer`` key (OpenAI), or ``x-api-key`` or ``Authorization: Bearer`` (anthropic 2.x
sends its API key as a bearer token) plus ``anthropic-version`` (Anthropic);
errors (401, 400 for malformed JSON or missing fields, 404, 405, 413 over 1 MB) use each provider's
error JSON. Ids, ``created`` and the answer are derived from the request, so the same request always
gets the same response; ``x-request-id`` / ``request-id`` differ per request, as they do for real.

How it answers (both providers alike): the context is the system prompt's text after ``Context:``
and the question is the last user message. Each context sentence is scored by how many content words
(lower-cased, stop words left out, a plural ``s`` dropped) it shares with the question; the answer is
the best sentence, verbatim, with the runner-up when that scores nearly as well: an extractive answer,
faithful to the context. Like a real model it reads through a typo: a question word of four letters
or more that the context lacks counts as the context word one keystroke away (a letter dropped,
added, replaced, or two neighbours swapped), if there is one.

When the best sentence shares fewer than 2 content words with the question (fewer than 1 for a
question with a single content word), it hallucinates as a real model can: a confident, specific,
made-up sentence that the context does not support. A question about a CEO, founder, owner or the
company's history gets "Northwind Solar was founded in 2011 by CEO Margaret Ellison in Oslo."; any
other uncovered question gets one of a few invented facts with numbers, picked by a hash of the
question.

Token log probabilities (chat completions with ``logprobs``, and ``top_logprobs`` alternatives per
token; streamed per chunk too) are made up, deterministically, to behave like a real model's: a
copied sentence is near-certain (each token's logprob between -0.08 and -0.002, perplexity about
1.04), an invented one is not (between -1.0 and -0.35, perplexity about 2). Alternatives share the
rest of the probability, each less likely than the token chosen.

Latency is simulated so recorded durations are realistic: 25 ms before the first byte and 4 ms per
chunk of about three words (streamed or not). ``max_tokens`` / ``max_completion_tokens`` cut the
answer short with ``finish_reason`` "length" / ``stop_reason`` "max_tokens". Token counts come from a
crude tokenizer: the regular expression ``\\w+|[^\\w\\s]`` over every message text, system included.

Run it on its own with ``python standin.py --port 8765``; in tests use ``with StandIn() as server:``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

__all__ = ["MAX_BODY_BYTES", "StandIn", "answer_for", "count_tokens"]

MAX_BODY_BYTES = 1_000_000
EMBEDDING_DIMENSIONS = 8

Provider = Literal["openai", "anthropic"]

# Requested model -> the dated snapshot the API reports back; anything else is echoed.
SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}

FOUNDER_HALLUCINATION = "Northwind Solar was founded in 2011 by CEO Margaret Ellison in Oslo."
GENERIC_HALLUCINATIONS = (
    "Every Northwind Solar system comes with a 25-year performance guarantee and free annual servicing.",
    "Northwind Solar batteries are assembled in Rotterdam, where 1,400 units leave the factory each week.",
    "Over 120,000 homes across 14 countries run on Northwind Solar batteries today.",
)
_FOUNDER_WORDS = frozenset({"ceo", "founder", "founded", "owner", "owns", "president", "history", "chairman"})

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_CHUNK = re.compile(r"(?:\S+\s*){1,3}")
# One token with the spaces after it, so that a reply's tokens put together give the reply.
_TOKEN_PIECE = re.compile(r"(?:\w+|[^\w\s])\s*")
_ALTERNATIVES = (" the", " a", ",", ".", " and", " of", " to", " is", " it", " for")
# Words too common to say what a question is about.
_STOP_WORD_TEXT = (
    "a about after all also an and any are as at be been but by can could did do does for from had has "
    "have how i if in into is it its long many me much my no not of on or our should so than that the "
    "their them then there these they this those to us was we were what when where which who whom whose "
    "why will with would you your"
)
_STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())


def count_tokens(*texts: str) -> int:
    """The stand-in's token count: words and punctuation marks over all ``texts``."""
    return sum(len(_TOKEN.findall(text)) for text in texts)


def _content_words(text: str) -> set[str]:
    words = (w for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS)
    # A crude stem (a final "s" dropped), so that "stores" matches "store".
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words}


def _one_keystroke_apart(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with one letter dropped, added or replaced, or two neighbours swapped."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    return a[i + 1 :] == b[i + 1 :] or (a[i + 2 :] == b[i + 2 :] and a[i : i + 2] == b[i : i + 2][::-1])


def _read_through_typos(asked: set[str], known: set[str]) -> set[str]:
    """``asked`` with each word the context lacks (four letters or more) taken as the context word
    one keystroke away from it, the first alphabetically when there are several."""
    read = set()
    for word in asked:
        if word not in known and len(word) >= 4 and word.isalpha():
            word = min((k for k in known if _one_keystroke_apart(word, k)), default=word)
        read.add(word)
    return read


def answer_for(context: str, question: str) -> str:
    """The stand-in's reply: context sentences that share words with ``question``, or a hallucination."""
    return _reply(context, question)[0]


def _reply(context: str, question: str) -> tuple[str, bool]:
    """:func:`answer_for`, and whether the reply was copied from the context (not invented)."""
    sentences = [s.strip() for s in _SENTENCE_END.split(context) if s.strip()]
    said = [_content_words(s) for s in sentences]
    asked = _read_through_typos(_content_words(question), set().union(*said))
    scored = sorted(((len(asked & words), i) for i, words in enumerate(said)), key=lambda t: (-t[0], t[1]))
    needed = min(2, len(asked))
    if not asked or not scored or scored[0][0] < needed:
        if asked & _FOUNDER_WORDS:
            return FOUNDER_HALLUCINATION, False
        pick = int(hashlib.sha256(question.encode()).hexdigest(), 16) % len(GENERIC_HALLUCINATIONS)
        return GENERIC_HALLUCINATIONS[pick], False
    best = scored[0][0]
    chosen = [i for score, i in scored[:2] if score >= max(needed, best - 1)]
    return " ".join(sentences[i] for i in sorted(chosen)), True


def _token_logprobs(text: str, copied: bool, top: int, start: int = 0) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs.content`` for the tokens of ``text`` (the reply's tokens from number
    ``start`` on): each chosen token's logprob, and ``top`` alternatives (itself first)."""
    low, high = (-0.08, -0.002) if copied else (-1.0, -0.35)
    content = []
    for n, piece in enumerate(_TOKEN_PIECE.findall(text), start):
        digest = hashlib.sha256(f"{n}:{piece}:{copied}".encode()).digest()
        chosen = low + (high - low) * int.from_bytes(digest[:4], "big") / 0xFFFFFFFF
        rest = 1 - math.exp(chosen)
        others = [a for a in _ALTERNATIVES if a.strip() != piece.strip()][digest[4] % 3 :]
        alternatives = [
            (token, math.log(rest * 0.5 ** (i + 1))) for i, token in enumerate(others[: max(top - 1, 0)])
        ]
        content.append(
            {
                "token": piece,
                "logprob": round(chosen, 6),
                "bytes": list(piece.encode()),
                "top_logprobs": [
                    {"token": token, "logprob": round(value, 6), "bytes": list(token.encode())}
                    for token, value in ([(piece, chosen), *alternatives] if top else [])
                ],
            }
        )
    return content


def _texts(content: Any) -> list[str]:
    """The text parts of a message's ``content`` (a string or a list of content blocks)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)]
    return []


def _conversation(provider: Provider, body: dict[str, Any]) -> tuple[list[str], str, str]:
    """``(all message texts, system text, last user text)`` of a chat request."""
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    system = _texts(body.get("system")) if provider == "anthropic" else []
    system += [
        t for m in messages if m.get("role") in ("system", "developer") for t in _texts(m.get("content"))
    ]
    users = [m for m in messages if m.get("role") == "user"]
    question = " ".join(_texts(users[-1].get("content"))) if users else ""
    every = system + [
        t for m in messages if m.get("role") not in ("system", "developer") for t in _texts(m.get("content"))
    ]
    return every, "\n".join(system), question


def _truncate(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """``text`` cut after ``max_tokens`` tokens, and whether it was cut."""
    if max_tokens is None:
        return text, False
    spans = list(_TOKEN.finditer(text))
    if len(spans) <= max_tokens:
        return text, False
    return (text[: spans[max_tokens - 1].end()] if max_tokens > 0 else ""), True


def _chunks(text: str) -> list[str]:
    return _CHUNK.findall(text) or [""]


def _embedding(value: Any) -> list[float]:
    text = value if isinstance(value, str) else json.dumps(value)
    digest = hashlib.sha256(text.encode()).digest()
    raw = [int.from_bytes(digest[i : i + 2], "big") / 32767.5 - 1.0 for i in range(0, 16, 2)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


class _HTTPError(Exception):
    def __init__(self, status: int, kind: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.code = status, kind, message, code


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], standin: StandIn) -> None:
        super().__init__(address, _Handler)
        self.standin = standin

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client may drop a kept-alive connection at any time; real servers do not complain either.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; Nagle's algorithm would hold the body back ~40 ms.
    disable_nagle_algorithm = True
    server_version = "standin/1.0"
    server: _Server
    _responded = False

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.standin.verbose:
            super().log_message(format, *args)

    def log_error(self, format: str, *args: Any) -> None:
        # Errors are printed even when quiet: they mean a request the stand-in could not serve.
        super().log_message(format, *args)

    def do_POST(self) -> None:
        self._handle("POST")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _provider(self, path: str) -> Provider:
        if path == "/v1/messages" or self.headers.get("x-api-key") or self.headers.get("anthropic-version"):
            return "anthropic"
        return "openai"

    def _handle(self, method: str) -> None:
        standin = self.server.standin
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        provider = self._provider(path)
        self._responded = False
        try:
            body = self._read_body()
            try:
                parsed: Any = json.loads(body) if body else None
            except ValueError:
                parsed = None
            standin._record(method, path, parsed)
            route = {
                "/v1/chat/completions": self._chat,
                "/v1/messages": self._messages,
                "/v1/embeddings": self._embeddings,
            }.get(path)
            if route is None:
                raise _HTTPError(404, "not_found_error", f"Invalid URL ({method} {path})")
            if method != "POST":
                raise _HTTPError(405, "invalid_request_error", f"Method {method} not allowed for {path}")
            self._authenticate(provider)
            if not isinstance(parsed, dict):
                raise _HTTPError(400, "invalid_request_error", "The request body is not a valid JSON object.")
            digest = hashlib.sha256(json.dumps(parsed, sort_keys=True).encode()).hexdigest()
            route(parsed, digest, started)
        except _HTTPError as error:
            self._send_error(provider, error, started)
        except ConnectionError:
            raise
        except Exception as error:
            # A request shape the stand-in does not handle: answer like the real APIs do, and log it.
            self.log_error("unhandled request %s %s: %r", method, path, error)
            self.close_connection = True
            if not self._responded:
                internal = _HTTPError(500, "api_error", f"Internal server error: {error}")
                self._send_error(provider, internal, started)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            # The unread body would poison the connection for the next request.
            self.close_connection = True
            raise _HTTPError(
                413,
                "request_too_large",
                f"Request body of {length} bytes exceeds the maximum of {MAX_BODY_BYTES} bytes.",
            )
        return self.rfile.read(length) if length else b""

    def _authenticate(self, provider: Provider) -> None:
        bearer = self.headers.get("authorization", "")
        has_bearer = bearer.lower().startswith("bearer ") and bool(bearer[7:].strip())
        if provider == "openai":
            if not has_bearer:
                raise _HTTPError(
                    401,
                    "invalid_request_error",
                    "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_api_key",
                )
            return
        if not (self.headers.get("x-api-key", "").strip() or has_bearer):
            raise _HTTPError(401, "authentication_error", "x-api-key header is required")
        if not self.headers.get("anthropic-version"):
            raise _HTTPError(400, "invalid_request_error", "anthropic-version: header is required")

    def _send_error(self, provider: Provider, error: _HTTPError, started: float) -> None:
        if provider == "anthropic":
            payload: dict[str, Any] = {
                "type": "error",
                "error": {"type": error.kind, "message": error.message},
            }
        else:
            kind = "invalid_request_error" if error.kind == "not_found_error" else error.kind
            payload = {"error": {"message": error.message, "type": kind, "param": None, "code": error.code}}
        self._send_json(provider, error.status, payload, started)

    def _headers(self, provider: Provider, status: int, content_type: str, started: float) -> None:
        self._responded = True
        self.send_response(status)
        self.send_header("content-type", content_type)
        request_id = "req_" + uuid.uuid4().hex[:24]
        if provider == "openai":
            self.send_header("x-request-id", request_id)
            self.send_header("openai-processing-ms", str(round((time.perf_counter() - started) * 1000)))
            self.send_header("openai-version", "2020-10-01")
        else:
            self.send_header("request-id", request_id)
        if self.close_connection:
            self.send_header("connection", "close")

    def _send_json(self, provider: Provider, status: int, payload: Any, started: float) -> None:
        data = json.dumps(payload).encode()
        self._headers(provider, status, "application/json", started)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_events(self, provider: Provider, events: Iterator[bytes], started: float) -> None:
        self._headers(provider, 200, "text/event-stream; charset=utf-8", started)
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for event in events:
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _chat(self, body: dict[str, Any], digest: str, started: float) -> None:
        _require(body, "openai", "model", "messages")
        texts, system, question = _conversation("openai", body)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        reply, copied = _reply(_context(system), question)
        text, cut = _truncate(reply, limit if isinstance(limit, int) else None)
        top = body.get("top_logprobs") if body.get("logprobs") else None
        top = top if isinstance(top, int) else 0

        def logprobs(part: str, start: int = 0) -> dict[str, Any] | None:
            if not body.get("logprobs"):
                return None
            return {"content": _token_logprobs(part, copied, top, start), "refusal": None}

        finish = "length" if cut else "stop"
        prompt_tokens, completion_tokens = count_tokens(*texts), count_tokens(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        base: dict[str, Any] = {
            "id": "chatcmpl-" + digest[:29],
            "created": 1_700_000_000 + int(digest[29:37], 16) % 60_000_000,
            "model": SNAPSHOTS.get(body["model"], body["model"]),
            "service_tier": "default",
            "system_fingerprint": "fp_" + digest[37:47],
        }
        standin = self.server.standin
        chunks = _chunks(text)
        time.sleep(standin.request_delay)
        if not body.get("stream"):
            time.sleep(standin.chunk_delay * len(chunks))
            message: dict[str, Any] = {
                "role": "assistant",
                "content": text,
                "refusal": None,
                "annotations": [],
            }
            choice = {"index": 0, "message": message, "logprobs": logprobs(text), "finish_reason": finish}
            payload = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            self._send_json("openai", 200, payload, started)
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def events() -> Iterator[bytes]:
            head: dict[str, Any] = {**base, "object": "chat.completion.chunk"}
            if include_usage:
                head["usage"] = None
            deltas: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
                ({"role": "assistant", "content": "", "refusal": None}, None)
            ]
            done = 0
            for c in chunks:
                deltas.append(({"content": c}, logprobs(c, done)))
                done += len(_TOKEN_PIECE.findall(c))
            for delta, chunk_logprobs in deltas:
                choice = {"index": 0, "delta": delta, "logprobs": chunk_logprobs, "finish_reason": None}
                yield _sse({**head, "choices": [choice]})
                time.sleep(standin.chunk_delay)
            yield _sse(
                {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]}
            )
            if include_usage:
                yield _sse({**head, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        self._send_events("openai", events(), started)

    def _messages(self, body: dict[str, Any], digest: str, started: float) -> None:
        _require(body, "anthropic", "model", "messages", "max_tokens")
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            raise _HTTPError(400, "invalid_request_error", "max_tokens: Input should be a positive integer")
        texts, system, question = _conversation("anthropic", body)
        text, cut = _truncate(answer_for(_context(system), question), body["max_tokens"])
        stop_reason = "max_tokens" if cut else "end_turn"
        input_tokens, output_tokens = count_tokens(*texts), count_tokens(text)
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
        }
        message = {
            "id": "msg_01" + digest[:22],
            "type": "message",
            "role": "assistant",
            "model": SNAPSHOTS.get(body["model"], body["model"]),
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        standin = self.server.standin
        chunks = _chunks(text)
        time.sleep(standin.request_delay)
        if not body.get("stream"):
            time.sleep(standin.chunk_delay * len(chunks))
            self._send_json("anthropic", 200, message, started)
            return

        def events() -> Iterator[bytes]:
            start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
            yield _sse({"type": "message_start", "message": start}, "message_start")
            block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            yield _sse(block, "content_block_start")
            yield _sse({"type": "ping"}, "ping")
            for chunk in chunks:
                delta = {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": chunk},
                }
                yield _sse(delta, "content_block_delta")
                time.sleep(standin.chunk_delay)
            yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            end = {"stop_reason": stop_reason, "stop_sequence": None}
            yield _sse(
                {"type": "message_delta", "delta": end, "usage": {"output_tokens": output_tokens}},
                "message_delta",
            )
            yield _sse({"type": "message_stop"}, "message_stop")

        self._send_events("anthropic", events(), started)

    def _embeddings(self, body: dict[str, Any], digest: str, started: float) -> None:
        _require(body, "openai", "model", "input")
        raw = body["input"]
        if not isinstance(raw, (str, list)):
            raise _HTTPError(400, "invalid_request_error", "'input' must be a string or a list.")
        # A string, a list of strings, a list of token ids, or a list of lists of token ids.
        inputs = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else list(raw)
        if not inputs:
            raise _HTTPError(400, "invalid_request_error", "'input' must not be empty.")
        data = []
        for i, value in enumerate(inputs):
            vector = _embedding(value)
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(count_tokens(v) if isinstance(v, str) else len(v) for v in inputs)
        time.sleep(self.server.standin.request_delay)
        payload = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        self._send_json("openai", 200, payload, started)


def _require(body: dict[str, Any], provider: Provider, *fields: str) -> None:
    for field in fields:
        if field not in body:
            message = (
                f"{field}: Field required"
                if provider == "anthropic"
                else f"Missing required parameter: '{field}'."
            )
            raise _HTTPError(400, "invalid_request_error", message)
    if "messages" in fields and not isinstance(body["messages"], list):
        raise _HTTPError(400, "invalid_request_error", "'messages' must be a list.")
    if not isinstance(body["model"], str):
        raise _HTTPError(400, "invalid_request_error", "'model' must be a string.")


def _context(system: str) -> str:
    """The text after "Context:" in the system prompt (all of it when there is no such marker)."""
    _, marker, after = system.partition("Context:")
    return after if marker else system


def _sse(payload: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload)}\n\n".encode()


class StandIn:
    """The stand-in server, on a daemon thread: ``with StandIn() as server: server.url``.

    ``requests`` lists ``(method, path, parsed JSON body or None)`` for every request received.
    ``request_delay`` and ``chunk_delay`` (seconds) set the simulated latency.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        request_delay: float = 0.025,
        chunk_delay: float = 0.004,
        verbose: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.request_delay, self.chunk_delay, self.verbose = request_delay, chunk_delay, verbose
        self.requests: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.requests.append((method, path, body))

    @property
    def url(self) -> str:
        """The server's root URL, such as ``http://127.0.0.1:54321`` (only while it runs)."""
        if self._server is None:
            raise RuntimeError("the stand-in is not running: use `with StandIn() as server:` or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StandIn:
        """Bind the port and serve on a daemon thread."""
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description="A local stand-in for the OpenAI and Anthropic APIs")
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="Port to bind, 0 for any (default 8765)")
    parser.add_argument("--quiet", action="store_true", help="Do not log each request")
    args = parser.parse_args(argv)
    with StandIn(args.host, args.port, verbose=not args.quiet) as server:
        print(f"Stand-in serving on {server.url}", flush=True)
        print(f"  export OPENAI_BASE_URL={server.url}/v1 OPENAI_API_KEY=sk-standin", flush=True)
        print(f"  export ANTHROPIC_BASE_URL={server.url} ANTHROPIC_API_KEY=sk-ant-standin", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("Stopped", flush=True)


if __name__ == "__main__":
    main()
