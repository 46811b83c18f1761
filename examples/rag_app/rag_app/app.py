"""A small retrieval-augmented question-answering service for Northwind Solar.

Northwind Solar is a fictional company selling home batteries and solar inverters. Its handbook is a
few Markdown documents in ``documents/``; :func:`retrieve` ranks their paragraphs with BM25 and
:class:`RagApp` asks a chat model (OpenAI or Anthropic, through their official SDKs) to answer from the
best ones. It is the application under test in this example: the LLM calls it makes are what
pytest-cert records, measures, budgets and replays.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, cast

import anthropic
import openai
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

__all__ = [
    "DEFAULT_MODELS",
    "Answer",
    "Passage",
    "Provider",
    "RagApp",
    "load_passages",
    "retrieve",
    "system_prompt",
]

Provider = Literal["openai", "anthropic"]

DEFAULT_MODELS: dict[str, str] = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-20241022"}
MAX_TOKENS = 300
DOCUMENTS = Path(__file__).with_name("documents")

_WORD = re.compile(r"[a-z0-9]+")
# Words too common to say what a question is about.
_STOP_WORD_TEXT = (
    "a an and are as at be by can do does for from how i in is it its my of on or the this to was what "
    "when where which who why will with"
)
_STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())
_K1 = 1.5
_B = 0.75


@dataclass(frozen=True)
class Passage:
    """One paragraph of a handbook document: ``doc`` is the file name without ``.md``."""

    doc: str
    index: int
    text: str


@dataclass(frozen=True)
class Answer:
    """What :meth:`RagApp.answer` returns: the model's text and the context it was given.

    ``model`` is the model that answered, as the API reports it (often a dated snapshot name).
    """

    question: str
    text: str
    context: str
    passages: tuple[Passage, ...]
    model: str


def _tokens(text: str) -> list[str]:
    return [word for word in _WORD.findall(text.lower()) if word not in _STOP_WORDS]


@lru_cache(maxsize=1)
def load_passages() -> tuple[Passage, ...]:
    """Every paragraph of every document, headings left out, in document-name order."""
    passages: list[Passage] = []
    for path in sorted(DOCUMENTS.glob("*.md")):
        paragraphs = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n")]
        body = [" ".join(p.split()) for p in paragraphs if p and not p.startswith("#")]
        passages.extend(Passage(path.stem, i, text) for i, text in enumerate(body))
    return tuple(passages)


@lru_cache(maxsize=1)
def _index() -> tuple[list[Counter[str]], Counter[str], float]:
    counts = [Counter(_tokens(p.text)) for p in load_passages()]
    document_frequency: Counter[str] = Counter()
    for count in counts:
        document_frequency.update(count.keys())
    average_length = sum(sum(c.values()) for c in counts) / len(counts)
    return counts, document_frequency, average_length


def retrieve(question: str, k: int = 2) -> list[Passage]:
    """The ``k`` paragraphs that best match ``question`` by BM25 (deterministic, lexical).

    Ties are broken by document name, then by position in the document.
    """
    passages = load_passages()
    counts, document_frequency, average_length = _index()
    n = len(passages)
    query = _tokens(question)

    def score(i: int) -> float:
        count, length = counts[i], sum(counts[i].values())
        total = 0.0
        for term in query:
            tf = count[term]
            if tf:
                df = document_frequency[term]
                idf = math.log((n - df + 0.5) / (df + 0.5) + 1)
                total += idf * tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * length / average_length))
        return total

    ranked = sorted(range(n), key=lambda i: (-score(i), passages[i].doc, passages[i].index))
    return [passages[i] for i in ranked[:k]]


def system_prompt(context: str) -> str:
    """The instructions and the retrieved context, as the system message."""
    return (
        "Answer the question using only the context below. If the context does not contain the answer, "
        "say so.\n\nContext:\n" + context
    )


class RagApp:
    """Answers customer questions from the handbook with one chat-model call.

    ``provider`` picks the SDK; ``model`` defaults to ``DEFAULT_MODELS[provider]``. Without ``client``
    (or ``async_client``) the SDK's client is created on first use with its defaults: API key and base
    URL from the environment (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``ANTHROPIC_API_KEY``,
    ``ANTHROPIC_BASE_URL``) and its default transport. :meth:`close` and :meth:`aclose` close only
    the clients the app created itself.
    """

    def __init__(
        self,
        provider: Provider = "openai",
        *,
        model: str | None = None,
        client: openai.OpenAI | anthropic.Anthropic | None = None,
        async_client: openai.AsyncOpenAI | anthropic.AsyncAnthropic | None = None,
    ) -> None:
        if provider not in DEFAULT_MODELS:
            raise ValueError(f"unknown provider {provider!r}; expected one of {sorted(DEFAULT_MODELS)}")
        self.provider: Provider = provider
        self.model = model or DEFAULT_MODELS[provider]
        self._client = client
        self._async_client = async_client
        self._owned: list[openai.OpenAI | anthropic.Anthropic] = []
        self._owned_async: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = []

    def answer(self, question: str, *, stream: bool = False) -> Answer:
        """Retrieve context for ``question`` and ask the model, streaming the reply if ``stream``."""
        passages, context, system = self._prepare(question)
        if self.provider == "openai":
            text, model = self._openai(system, question, stream)
        else:
            text, model = self._anthropic(system, question, stream)
        return Answer(question, text, context, passages, model)

    async def answer_async(self, question: str, *, stream: bool = False) -> Answer:
        """:meth:`answer` with the SDK's async client."""
        passages, context, system = self._prepare(question)
        if self.provider == "openai":
            text, model = await self._openai_async(system, question, stream)
        else:
            text, model = await self._anthropic_async(system, question, stream)
        return Answer(question, text, context, passages, model)

    def close(self) -> None:
        """Close the sync client the app created (a client passed in stays open)."""
        while self._owned:
            self._owned.pop().close()

    async def aclose(self) -> None:
        """Close the async client the app created (a client passed in stays open)."""
        while self._owned_async:
            await self._owned_async.pop().close()

    def _prepare(self, question: str) -> tuple[tuple[Passage, ...], str, str]:
        passages = tuple(retrieve(question))
        context = "\n\n".join(p.text for p in passages)
        return passages, context, system_prompt(context)

    def _client_sync(self) -> openai.OpenAI | anthropic.Anthropic:
        if self._client is None:
            self._client = openai.OpenAI() if self.provider == "openai" else anthropic.Anthropic()
            self._owned.append(self._client)
        return self._client

    def _client_async(self) -> openai.AsyncOpenAI | anthropic.AsyncAnthropic:
        if self._async_client is None:
            self._async_client = (
                openai.AsyncOpenAI() if self.provider == "openai" else anthropic.AsyncAnthropic()
            )
            self._owned_async.append(self._async_client)
        return self._async_client

    def _openai(self, system: str, question: str, stream: bool) -> tuple[str, str]:
        client = cast(openai.OpenAI, self._client_sync())
        messages = _openai_messages(system, question)
        if not stream:
            response = client.chat.completions.create(model=self.model, messages=messages, temperature=0)
            return response.choices[0].message.content or "", response.model
        parts: list[str] = []
        model = self.model
        with client.chat.completions.create(
            model=self.model,
            messages=messages,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        ) as chunks:
            for chunk in chunks:
                model = chunk.model
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
        return "".join(parts), model

    async def _openai_async(self, system: str, question: str, stream: bool) -> tuple[str, str]:
        client = cast(openai.AsyncOpenAI, self._client_async())
        messages = _openai_messages(system, question)
        if not stream:
            response = await client.chat.completions.create(
                model=self.model, messages=messages, temperature=0
            )
            return response.choices[0].message.content or "", response.model
        parts: list[str] = []
        model = self.model
        async with await client.chat.completions.create(
            model=self.model,
            messages=messages,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        ) as chunks:
            async for chunk in chunks:
                model = chunk.model
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
        return "".join(parts), model

    def _anthropic(self, system: str, question: str, stream: bool) -> tuple[str, str]:
        # anthropic 2.x takes no temperature argument: the Anthropic calls leave it at the API default.
        client = cast(anthropic.Anthropic, self._client_sync())
        messages: list[MessageParam] = [{"role": "user", "content": question}]
        if not stream:
            message = client.messages.create(
                model=self.model, max_tokens=MAX_TOKENS, system=system, messages=messages
            )
            return _message_text(message), message.model
        with client.messages.stream(
            model=self.model, max_tokens=MAX_TOKENS, system=system, messages=messages
        ) as events:
            text = "".join(events.text_stream)
            message = events.get_final_message()
        return text, message.model

    async def _anthropic_async(self, system: str, question: str, stream: bool) -> tuple[str, str]:
        client = cast(anthropic.AsyncAnthropic, self._client_async())
        messages: list[MessageParam] = [{"role": "user", "content": question}]
        if not stream:
            message = await client.messages.create(
                model=self.model, max_tokens=MAX_TOKENS, system=system, messages=messages
            )
            return _message_text(message), message.model
        async with client.messages.stream(
            model=self.model, max_tokens=MAX_TOKENS, system=system, messages=messages
        ) as events:
            text = "".join([part async for part in events.text_stream])
            message = await events.get_final_message()
        return text, message.model


def _openai_messages(system: str, question: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def _message_text(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")
