"""Token logprobs become the record's ``uncertainty``, through the real OpenAI SDK."""

from __future__ import annotations

import asyncio
import copy
import math
from typing import Any

import httpx2
import openai
import pytest

import cert_core
from cert_core.testing import FakeLLM, Reply, TokenLogprob, openai_chat_chunks, openai_chat_completion
from cert_core.uncertainty import logprob_stats
from tests.cert_core.connectors.conftest import Collected
from tests.cert_core.connectors.test_openai import RESPONSE, RESPONSE_EVENTS

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]

# "Paris is the capital." with top-3 alternatives per token, as top_logprobs=3 returns them.
TOKENS: list[TokenLogprob] = [
    ("Paris", -0.01, {"Paris": -0.01, "The": -4.8, "Lyon": -6.2}),
    (" is", -0.3, {" is": -0.3, " has": -1.5, " was": -2.9}),
    (" the", -0.05, {" the": -0.05, " a": -3.1, " France": -5.0}),
    (" capital", -1.2, {" capital": -1.2, " largest": -0.9, " city": -1.6}),
    (".", -0.002, {".": -0.002, "!": -6.9, ",": -7.3}),
]
EXPECTED = logprob_stats([logprob for _, logprob, _ in TOKENS], [list(top.values()) for _, _, top in TOKENS])


def client(fake: FakeLLM) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=fake.transport()))


def async_client(fake: FakeLLM) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test", http_client=httpx2.AsyncClient(transport=fake.transport()))


def test_expected_statistics_by_hand() -> None:
    assert EXPECTED is not None
    assert EXPECTED.tokens == 5
    assert EXPECTED.mean_logprob == pytest.approx(-1.562 / 5)
    assert EXPECTED.perplexity == pytest.approx(math.exp(1.562 / 5))
    assert EXPECTED.top_k == 3
    assert EXPECTED.mean_entropy is not None
    assert 0 < EXPECTED.mean_entropy < math.log(3)


def test_chat_completion_with_logprobs(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris is the capital.", logprobs=TOKENS)
    response = client(fake).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, logprobs=True, top_logprobs=3
    )
    choice_logprobs = response.choices[0].logprobs
    assert choice_logprobs is not None
    assert choice_logprobs.content is not None
    assert [t.logprob for t in choice_logprobs.content] == [lp for _, lp, _ in TOKENS]  # the SDK reads it too
    record = records.one()
    assert record.uncertainty == EXPECTED
    assert record.uncertainty is not None
    assert record.uncertainty.source == "openai.logprobs"
    assert record.request == {"logprobs": True, "top_logprobs": 3}
    data = record.to_dict()["uncertainty"]
    assert data["tokens"] == 5
    assert data["top_k"] == 3


def test_logprobs_without_top_logprobs_leave_entropy_null(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris.", logprobs=[("Paris", -0.1), (".", -0.3)])
    client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, logprobs=True)
    uncertainty = records.one().uncertainty
    assert uncertainty is not None
    assert uncertainty.tokens == 2
    assert uncertainty.mean_logprob == pytest.approx(-0.2)
    assert uncertainty.perplexity == pytest.approx(math.exp(0.2))
    assert uncertainty.mean_entropy is None
    assert uncertainty.top_k is None


def test_async_chat_completion_with_logprobs(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris is the capital.", logprobs=TOKENS)

    async def call() -> None:
        await async_client(fake).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, logprobs=True, top_logprobs=3
        )

    asyncio.run(call())
    assert records.one().uncertainty == EXPECTED


def test_stream_accumulates_logprobs_over_chunks(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris is the capital.", logprobs=TOKENS)
    stream = client(fake).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, logprobs=True, top_logprobs=3
    )
    seen = [
        t.logprob
        for c in stream
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content or ()
    ]
    assert seen == [lp for _, lp, _ in TOKENS]
    record = records.one()
    assert record.stream is True
    assert record.output == "Paris is the capital."
    assert record.uncertainty == EXPECTED  # the same numbers as the complete response


def test_async_stream_with_logprobs(records: Collected) -> None:
    chunks = openai_chat_chunks(["Paris", " is", " the", " capital", "."], logprobs=TOKENS)
    fake = FakeLLM().add("/chat/completions", Reply(stream=chunks, done=True))

    async def call() -> None:
        stream = await async_client(fake).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, logprobs=True, top_logprobs=3
        )
        async for _ in stream:
            pass

    asyncio.run(call())
    assert records.one().uncertainty == EXPECTED


def test_stream_closed_early_measures_the_tokens_that_arrived(records: Collected) -> None:
    chunks = openai_chat_chunks(["Paris", " is", " the", " capital", "."], logprobs=TOKENS)
    fake = FakeLLM().add("/chat/completions", Reply(stream=chunks, done=True))
    stream = client(fake).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, logprobs=True, top_logprobs=3
    )
    events = iter(stream)
    for _ in range(3):  # the role chunk, "Paris", " is"
        next(events)
    stream.close()
    record = records.one()
    assert record.incomplete is True
    assert record.output == "Paris is"
    assert record.uncertainty == logprob_stats([-0.01, -0.3], [[-0.01, -4.8, -6.2], [-0.3, -1.5, -2.9]])


@pytest.mark.parametrize("stream", [False, True])
def test_call_without_logprobs_is_not_measured(records: Collected, stream: bool) -> None:
    fake = FakeLLM().openai_chat("Paris is the capital.")
    result = client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=stream)
    if stream:
        for _ in result:
            pass
    record = records.one()
    assert record.uncertainty is None
    assert "uncertainty" not in record.to_dict()


def test_choices_are_pooled(records: Collected) -> None:
    body = openai_chat_completion("Paris.", logprobs=[("Paris", -0.1), (".", -0.1)])
    second = copy.deepcopy(body["choices"][0])
    second["index"] = 1
    second["logprobs"]["content"] = [{"token": "Lyon", "logprob": -0.7, "bytes": None, "top_logprobs": []}]
    body["choices"].append(second)
    fake = FakeLLM().add("/chat/completions", Reply(body))
    client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=2, logprobs=True)
    uncertainty = records.one().uncertainty
    assert uncertainty is not None
    assert uncertainty.tokens == 3
    assert uncertainty.mean_logprob == pytest.approx(-0.3)


def test_refusal_tokens_count(records: Collected) -> None:
    body = openai_chat_completion(None)
    body["choices"][0]["message"]["refusal"] = "I can't help."
    body["choices"][0]["logprobs"] = {
        "content": None,
        "refusal": [{"token": "I", "logprob": -0.2, "bytes": None, "top_logprobs": []}],
    }
    fake = FakeLLM().add("/chat/completions", Reply(body))
    client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, logprobs=True)
    uncertainty = records.one().uncertainty
    assert uncertainty is not None
    assert uncertainty.tokens == 1


def test_azure_names_its_source(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris.", logprobs=[("Paris", -0.1)])
    azure = openai.AzureOpenAI(
        api_key="azure-key",
        api_version="2024-10-21",
        azure_endpoint="https://example-resource.openai.azure.com",
        http_client=httpx2.Client(transport=fake.transport()),
    )
    azure.chat.completions.create(model="my-deployment", messages=MESSAGES, logprobs=True)
    uncertainty = records.one().uncertainty
    assert uncertainty is not None
    assert uncertainty.source == "azure.openai.logprobs"


def _wire(tokens: list[TokenLogprob]) -> list[dict[str, Any]]:
    body = openai_chat_completion("x", logprobs=tokens)
    content: list[dict[str, Any]] = body["choices"][0]["logprobs"]["content"]
    return content


def _response_with_logprobs() -> dict[str, Any]:
    response = copy.deepcopy(RESPONSE)
    response["output"][0]["content"][0]["logprobs"] = _wire(TOKENS)
    return response


def test_responses_api_with_logprobs(records: Collected) -> None:
    fake = FakeLLM().add("/responses", Reply(_response_with_logprobs()))
    response = client(fake).responses.create(
        model="gpt-4o-mini",
        input="Capital of France?",
        include=["message.output_text.logprobs"],
        top_logprobs=3,
    )
    part = response.output[0].content[0]
    assert part.type == "output_text"
    assert part.logprobs is not None
    assert len(part.logprobs) == 5
    record = records.one()
    assert record.operation == "responses"
    assert record.uncertainty == EXPECTED


def test_responses_api_without_logprobs_is_not_measured(records: Collected) -> None:
    fake = FakeLLM().add("/responses", Reply(RESPONSE))
    client(fake).responses.create(model="gpt-4o-mini", input="Capital of France?")
    assert records.one().uncertainty is None


def _delta_events(with_final_logprobs: bool) -> list[Any]:
    created, delta, completed = copy.deepcopy(RESPONSE_EVENTS)
    deltas = []
    for i, token in enumerate(TOKENS):
        event = copy.deepcopy(delta[1])
        event.update(sequence_number=1 + i, delta=token[0], logprobs=_wire([token]))
        deltas.append(("response.output_text.delta", event))
    final = _response_with_logprobs() if with_final_logprobs else copy.deepcopy(RESPONSE)
    completed[1].update(sequence_number=1 + len(TOKENS), response=final)
    return [created, *deltas, completed]


@pytest.mark.parametrize("with_final_logprobs", [True, False])
def test_responses_stream_counts_each_token_once(records: Collected, with_final_logprobs: bool) -> None:
    fake = FakeLLM().add("/responses", Reply(RESPONSE, stream=_delta_events(with_final_logprobs)))
    stream = client(fake).responses.create(
        model="gpt-4o-mini",
        input="Capital of France?",
        include=["message.output_text.logprobs"],
        top_logprobs=3,
        stream=True,
    )
    for _ in stream:
        pass
    # From the final response when it carries them, else from the deltas: never both.
    assert records.one().uncertainty == EXPECTED


@pytest.mark.parametrize("stream", [False, True])
def test_unreadable_logprobs_cost_the_measure_not_the_record(
    instrumented: None, trace_schema: dict[str, Any], stream: bool
) -> None:
    body = openai_chat_completion("Paris.", logprobs=[("Paris", -0.1)])
    body["choices"][0]["logprobs"]["content"][0]["logprob"] = "very likely"
    chunks = openai_chat_chunks(["Paris", "."], logprobs=[("Paris", -0.1), (".", -0.2)])
    del chunks[2]["choices"][0]["logprobs"]["content"][0]["logprob"]
    fake = FakeLLM().add("/chat/completions", Reply(body, stream=chunks, done=True))
    collected = Collected(trace_schema)
    before = cert_core.instrumentation_stats().errors
    with cert_core.recording(collected):
        result = client(fake).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, logprobs=True, stream=stream
        )
        if stream:
            for _ in result:
                pass
    record = collected.one()
    assert record.output == "Paris."
    assert record.usage is not None
    assert record.uncertainty is None
    assert cert_core.instrumentation_stats().errors == before + 1
    assert "logprob" in (cert_core.instrumentation_stats().last_error or "")
