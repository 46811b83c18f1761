"""What the trace records say about calls that met an injected fault or a broken stream."""

from __future__ import annotations

import asyncio

import anthropic
import httpx2
import openai
import pytest

from cert_core.faults import Fault, inject_faults
from cert_core.testing import FakeLLM
from tests.cert_core.connectors.conftest import Collected

ASK = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "q"}]}


def _fake() -> FakeLLM:
    fake = FakeLLM()
    fake.openai_chat("The answer is forty-two, and here is more text.", prompt_tokens=10, completion_tokens=9)
    fake.anthropic("The answer is forty-two, and here is more text.")
    return fake


@pytest.mark.parametrize("upstream", [False, True])
def test_a_broken_stream_is_recorded_with_its_error_and_as_incomplete(
    records: Collected, upstream: bool
) -> None:
    client = openai.OpenAI(
        api_key="sk-x", http_client=httpx2.Client(transport=_fake().transport()), max_retries=0
    )
    with inject_faults([Fault.interrupted_stream(after_events=2, upstream=upstream)]):
        stream = client.chat.completions.create(**ASK, stream=True)  # type: ignore[call-overload]
        with pytest.raises(openai.APIConnectionError):
            for _ in stream:
                pass
    record = records.one()
    assert record.error is not None
    assert record.error.type == "ReadError"
    assert "injected by cert_core.faults" in record.error.message
    assert record.incomplete is True
    if upstream:  # the provider's real answer was cut: what arrived was generated, and billed
        assert record.cost_usd is not None
        assert record.cost_usd > 0
    else:  # made on this machine: nothing was sent, nothing billed
        assert record.cost_usd == 0.0
        assert (
            record.price_source
            == "not billed: answered by an injected fault (interrupted_stream), nothing was sent"
        )


def test_a_broken_async_anthropic_stream_is_recorded_with_its_error(records: Collected) -> None:
    async def run() -> None:
        http = httpx2.AsyncClient(transport=_fake().transport())
        client = anthropic.AsyncAnthropic(api_key="sk-ant-x", http_client=http, max_retries=0)
        with inject_faults([Fault.interrupted_stream(after_events=3)]):
            stream = await client.messages.create(
                model="claude-3-5-haiku-20241022",
                max_tokens=50,
                messages=[{"role": "user", "content": "q"}],
                stream=True,
            )
            with pytest.raises(httpx2.ReadError):
                async for _ in stream:
                    pass

    asyncio.run(run())
    record = records.one()
    assert record.error is not None
    assert record.error.type == "ReadError"
    assert record.incomplete is True


def test_an_injected_status_is_not_billed_and_a_real_answer_after_it_is(records: Collected) -> None:
    client = openai.OpenAI(
        api_key="sk-x", http_client=httpx2.Client(transport=_fake().transport()), max_retries=1
    )
    with inject_faults([Fault.status(500, retry_after=0.001)]):
        client.chat.completions.create(**ASK)  # type: ignore[call-overload]
    (record,) = records.records  # one call: the SDK's retry is inside it
    assert record.error is None
    assert record.cost_usd is not None
    assert record.cost_usd > 0  # the second attempt was answered (by the mock provider) and priced
    with inject_faults([Fault.status(429, retry_after=0.001)]), pytest.raises(openai.RateLimitError):
        client.with_options(max_retries=0).chat.completions.create(**ASK)  # type: ignore[call-overload]
    refused = records.records[-1]
    assert refused.error is not None
    assert refused.error.status == 429
    assert refused.cost_usd == 0.0
    assert refused.price_source is not None
    assert "injected fault (status)" in refused.price_source


def test_the_callers_own_exception_while_streaming_is_not_the_calls_error(records: Collected) -> None:
    client = openai.OpenAI(
        api_key="sk-x", http_client=httpx2.Client(transport=_fake().transport()), max_retries=0
    )

    def consume() -> None:
        with client.chat.completions.create(**ASK, stream=True) as stream:  # type: ignore[call-overload]
            for _ in stream:
                raise KeyError("the caller's bug")

    with pytest.raises(KeyError):
        consume()
    record = records.one()
    assert record.error is None
    assert record.incomplete is True  # closed early by the caller
