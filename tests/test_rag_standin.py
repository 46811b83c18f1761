"""The rag_app example and its stand-in server, driven by the real OpenAI and Anthropic SDKs over HTTP."""

from __future__ import annotations

import asyncio
import importlib
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anthropic
import httpx2
import openai
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rag_app"

COVERED = "How much energy does the Helios 10 battery store?"
UNCOVERED = "Who is the CEO of Northwind Solar?"
SYSTEM = "Answer the question using only the context below.\n\nContext:\n{context}"
ANSWER = "The Helios 10 battery stores 10.2 kWh."
ANSWER_TOKENS = 10  # The Helios 10 battery stores 10 . 2 kWh .
CONTEXT = "The Helios 10 battery stores 10.2 kWh. It weighs 98 kg. Support is open on Saturday."
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-20241022"


@pytest.fixture(scope="module")
def example() -> Iterator[tuple[ModuleType, ModuleType]]:
    """``(rag_app, standin)`` imported from the example folder, and forgotten afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(EXAMPLE))
        for name in ("rag_app", "rag_app.app", "standin"):
            mp.delitem(sys.modules, name, raising=False)
        yield importlib.import_module("rag_app"), importlib.import_module("standin")


@pytest.fixture(scope="module")
def rag_app(example: tuple[ModuleType, ModuleType]) -> ModuleType:
    return example[0]


@pytest.fixture(scope="module")
def standin(example: tuple[ModuleType, ModuleType]) -> ModuleType:
    return example[1]


@pytest.fixture(scope="module")
def server(standin: ModuleType) -> Iterator[Any]:
    with standin.StandIn() as running:
        yield running


@pytest.fixture
def url(server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The stand-in's root URL, with both SDKs pointed at it by their environment variables."""
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    return str(server.url)


def chat_messages(question: str = COVERED) -> list[Any]:
    return [
        {"role": "system", "content": SYSTEM.format(context=CONTEXT)},
        {"role": "user", "content": question},
    ]


def test_retrieve_picks_the_warranty_document(rag_app: ModuleType) -> None:
    passages = rag_app.retrieve("How long is the warranty on the Helios 10 battery?")
    assert len(passages) == 2
    assert passages[0].doc == "warranty"
    assert "6,000" in passages[0].text
    assert rag_app.retrieve("How long is the warranty on the Helios 10 battery?", k=3)[:2] == passages


def test_documents_never_name_a_ceo(rag_app: ModuleType) -> None:
    text = " ".join(p.text for p in rag_app.load_passages()).lower()
    assert not re.search(r"\b(ceo|founder|founded)\b", text)


def test_openai_chat_completion(url: str, standin: ModuleType) -> None:
    with openai.OpenAI() as client:
        raw = client.chat.completions.with_raw_response.create(
            model=OPENAI_MODEL, messages=chat_messages(), temperature=0
        )
        again = client.chat.completions.create(model=OPENAI_MODEL, messages=chat_messages(), temperature=0)
    response = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["openai-processing-ms"]) > 0
    assert response.id.startswith("chatcmpl-")
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.choices[0].message.content == ANSWER
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None
    texts = [SYSTEM.format(context=CONTEXT), COVERED]
    assert response.usage.prompt_tokens == standin.count_tokens(*texts)
    assert response.usage.completion_tokens == ANSWER_TOKENS
    assert (again.id, again.created) == (response.id, response.created)


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_stream(url: str, include_usage: bool) -> None:
    with openai.OpenAI() as client:
        stream = client.chat.completions.create(
            model=OPENAI_MODEL,
            messages=chat_messages(),
            stream=True,
            stream_options={"include_usage": include_usage},
        )
        with stream:
            chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    if include_usage:
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == ANSWER_TOKENS
    else:
        assert all(c.choices and c.usage is None for c in chunks)


def test_anthropic_message(url: str, standin: ModuleType) -> None:
    with anthropic.Anthropic() as client:
        message = client.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=300,
            system=SYSTEM.format(context=CONTEXT),
            messages=[{"role": "user", "content": COVERED}],
        )
        short = client.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=3,
            system=SYSTEM.format(context=CONTEXT),
            messages=[{"role": "user", "content": COVERED}],
        )
    assert message.id.startswith("msg_")
    assert message.model == ANTHROPIC_MODEL
    assert message.content[0].type == "text"
    assert message.content[0].text == ANSWER
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == standin.count_tokens(SYSTEM.format(context=CONTEXT), COVERED)
    assert message.usage.output_tokens == ANSWER_TOKENS
    assert short.stop_reason == "max_tokens"
    assert short.content[0].type == "text"
    assert short.content[0].text == "The Helios 10"


def test_anthropic_stream(url: str) -> None:
    with (
        anthropic.Anthropic() as client,
        client.messages.stream(
            model=ANTHROPIC_MODEL,
            max_tokens=300,
            system=SYSTEM.format(context=CONTEXT),
            messages=[{"role": "user", "content": COVERED}],
        ) as stream,
    ):
        parts = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(parts) > 1
    assert "".join(parts) == ANSWER
    assert final.content[0].type == "text"
    assert final.content[0].text == "".join(parts)
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens == ANSWER_TOKENS


def test_async_clients(url: str) -> None:
    async def both() -> tuple[str, str, str]:
        async with openai.AsyncOpenAI() as oc, anthropic.AsyncAnthropic() as ac:
            chat = await oc.chat.completions.create(model=OPENAI_MODEL, messages=chat_messages())
            message = await ac.messages.create(
                model=ANTHROPIC_MODEL,
                max_tokens=300,
                system=SYSTEM.format(context=CONTEXT),
                messages=[{"role": "user", "content": COVERED}],
            )
            async with ac.messages.stream(
                model=ANTHROPIC_MODEL,
                max_tokens=300,
                system=SYSTEM.format(context=CONTEXT),
                messages=[{"role": "user", "content": COVERED}],
            ) as stream:
                streamed = "".join([part async for part in stream.text_stream])
        assert message.content[0].type == "text"
        return chat.choices[0].message.content or "", message.content[0].text, streamed

    assert asyncio.run(both()) == (ANSWER,) * 3


def test_embeddings(url: str) -> None:
    with openai.OpenAI() as client:
        first = client.embeddings.create(model="text-embedding-3-small", input=["battery", "inverter"])
        floats = client.embeddings.create(
            model="text-embedding-3-small", input="battery", encoding_format="float"
        )
    assert first.model == "text-embedding-3-small"
    assert [d.index for d in first.data] == [0, 1]
    vector = first.data[0].embedding
    assert len(vector) == 8
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-5)
    assert first.data[1].embedding != vector
    # The SDK asks for base64 float32 by default; the float form carries the same vector.
    assert floats.data[0].embedding == pytest.approx(vector, rel=1e-6)
    assert first.usage.prompt_tokens == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
def test_rag_answer_is_extractive(url: str, rag_app: ModuleType, provider: str, stream: bool) -> None:
    app = rag_app.RagApp(provider)
    try:
        answer = app.answer(COVERED, stream=stream)
    finally:
        app.close()
    assert answer.passages[0].doc == "battery-specs"
    assert answer.context == "\n\n".join(p.text for p in answer.passages)
    assert answer.text.startswith("The Helios 10 battery stores 10.2 kWh of usable energy")
    sentences = re.split(r"(?<=[.!?])\s+", answer.text)
    assert all(sentence in answer.context for sentence in sentences)
    assert answer.model == {"openai": "gpt-4o-mini-2024-07-18", "anthropic": ANTHROPIC_MODEL}[provider]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_rag_answer_hallucinates_when_the_context_is_silent(
    url: str, rag_app: ModuleType, standin: ModuleType, provider: str
) -> None:
    app = rag_app.RagApp(provider)
    try:
        answer = app.answer(UNCOVERED)
    finally:
        app.close()
    assert answer.text == standin.FOUNDER_HALLUCINATION
    assert answer.text not in answer.context
    assert "Ellison" not in answer.context
    assert "2011" not in answer.context


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_rag_answer_async(url: str, rag_app: ModuleType, provider: str) -> None:
    async def ask() -> tuple[Any, Any]:
        app = rag_app.RagApp(provider)
        try:
            return await app.answer_async(COVERED), await app.answer_async(COVERED, stream=True)
        finally:
            await app.aclose()

    plain, streamed = asyncio.run(ask())
    assert plain.text == streamed.text
    assert plain.text.startswith("The Helios 10 battery stores 10.2 kWh")


def test_openai_without_a_key_is_refused(url: str) -> None:
    with openai.OpenAI(max_retries=0) as client, pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(
            model=OPENAI_MODEL, messages=chat_messages(), extra_headers={"Authorization": openai.Omit()}
        )
    assert raised.value.status_code == 401
    body = raised.value.body  # the SDK hands over the "error" object of the response
    assert isinstance(body, dict)
    assert body["message"].startswith("You didn't provide an API key")
    assert {k: body[k] for k in ("type", "param", "code")} == {
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }


def test_anthropic_without_a_key_is_refused(url: str) -> None:
    with anthropic.Anthropic(max_retries=0) as client, pytest.raises(anthropic.AuthenticationError) as raised:
        client.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=300,
            messages=[{"role": "user", "content": COVERED}],
            extra_headers={"Authorization": anthropic.Omit(), "X-Api-Key": anthropic.Omit()},
        )
    assert raised.value.status_code == 401
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "x-api-key header is required"},
    }


def test_errors_use_each_providers_format(url: str) -> None:
    openai_auth = {"authorization": "Bearer sk-test"}
    anthropic_auth = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
    with httpx2.Client(base_url=url) as http:
        bad_openai = http.post("/v1/chat/completions", content=b"{not json", headers=openai_auth)
        bad_anthropic = http.post("/v1/messages", content=b"{not json", headers=anthropic_auth)
        missing = http.post("/v1/nothing", json={}, headers=openai_auth)
        too_big = http.post("/v1/messages", content=b"x" * 1_000_001, headers=anthropic_auth)
    assert bad_openai.status_code == 400
    assert bad_openai.json()["error"]["type"] == "invalid_request_error"
    assert bad_anthropic.status_code == 400
    assert bad_anthropic.json()["type"] == "error"
    assert bad_anthropic.json()["error"]["type"] == "invalid_request_error"
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
    assert too_big.status_code == 413
    assert too_big.json()["error"]["type"] == "request_too_large"


def test_requests_are_recorded(url: str, server: Any) -> None:
    before = len(server.requests)
    with openai.OpenAI() as client:
        client.chat.completions.create(model=OPENAI_MODEL, messages=chat_messages())
    method, path, body = server.requests[before]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert body["model"] == OPENAI_MODEL
    assert body["messages"][1] == {"role": "user", "content": COVERED}
