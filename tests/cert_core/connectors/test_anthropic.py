from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import MessageParam

import cert_core
from cert_core.testing import FakeLLM, Reply, anthropic_message, anthropic_stream_events
from tests.cert_core.connectors.conftest import Collected

MESSAGES: list[MessageParam] = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER = "Paris is the capital of France."
MODEL = "claude-sonnet-4-0"  # an alias: the reply names the dated model
DATED_MODEL = "claude-sonnet-4-20250514"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
MODES = ["sync", "async"]


def client(fake: FakeLLM, **options: Any) -> anthropic.Anthropic:
    options.setdefault("api_key", "sk-ant-test")
    return anthropic.Anthropic(http_client=httpx2.Client(transport=fake.transport()), **options)


def async_client(fake: FakeLLM, **options: Any) -> anthropic.AsyncAnthropic:
    options.setdefault("api_key", "sk-ant-test")
    transport = fake.async_transport()
    return anthropic.AsyncAnthropic(http_client=httpx2.AsyncClient(transport=transport), **options)


def create(fake: FakeLLM, mode: str, client_options: dict[str, Any] | None = None, **params: Any) -> Any:
    """``messages.create`` through a sync or an async client; a stream is read to its end."""
    params = {"model": MODEL, "max_tokens": 100, "messages": MESSAGES, **params}
    if mode == "sync":
        result = client(fake, **client_options or {}).messages.create(**params)
        return list(result) if params.get("stream") else result

    async def run() -> Any:
        result = await async_client(fake, **client_options or {}).messages.create(**params)
        return [event async for event in result] if params.get("stream") else result

    return asyncio.run(run())


def cost(inputs: int, outputs: int, cache_read: int = 0, cache_write: int = 0) -> float:
    """claude-sonnet-4: $3/M input, $15/M output, $0.30/M cache read, $3.75/M cache write.
    ``inputs`` is Anthropic's own count: the uncached input tokens only."""
    return (inputs * 3 + outputs * 15 + cache_read * 0.30 + cache_write * 3.75) / 1e6


def dumps(items: list[Any]) -> list[dict[str, Any]]:
    return [item.model_dump() for item in items]


@pytest.mark.parametrize("mode", MODES)
def test_create_becomes_one_priced_record(records: Collected, mode: str) -> None:
    fake = FakeLLM().anthropic(ANSWER, input_tokens=14, output_tokens=9)
    message = create(fake, mode, stop_sequences=["\n\n"])
    assert message.content[0].text == ANSWER
    record = records.one()
    assert record.kind == "llm"
    assert record.provider == "anthropic"
    assert record.operation == "chat"
    assert record.request_model == MODEL
    assert record.response_model == DATED_MODEL
    assert record.input == MESSAGES
    assert record.output == ANSWER
    assert record.usage == cert_core.Usage(input_tokens=14, output_tokens=9)
    assert record.finish_reasons == ["end_turn"]
    # Exactly what was given: none of the SDK's Omit sentinels for the parameters left out.
    assert record.request == {"max_tokens": 100, "stop_sequences": ["\n\n"]}
    assert record.duration_ms > 0
    assert record.cost_usd == pytest.approx(cost(14, 9))
    assert "genai-prices" in (record.price_source or "")
    assert record.stream is None
    assert record.incomplete is None
    assert record.error is None


@pytest.mark.parametrize("mode", MODES)
def test_system_prompt_is_part_of_the_input(records: Collected, mode: str) -> None:
    fake = FakeLLM().anthropic(ANSWER)
    create(fake, mode, system="Answer in one sentence.")
    assert records.one().input == {"system": "Answer in one sentence.", "messages": MESSAGES}


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_cache_tokens_count_as_input_and_are_priced_at_their_rates(records: Collected, stream: bool) -> None:
    fake = FakeLLM().anthropic(
        ANSWER,
        input_tokens=100,
        output_tokens=50,
        cache_creation_input_tokens=2000,
        cache_read_input_tokens=3000,
    )
    create(fake, "sync", stream=stream)
    record = records.one()
    # Anthropic's input_tokens (100) leaves the cache out; ours counts every input token.
    assert record.usage == cert_core.Usage(
        input_tokens=100 + 2000 + 3000,
        output_tokens=50,
        cache_read_input_tokens=3000,
        cache_creation_input_tokens=2000,
    )
    assert record.cost_usd == pytest.approx(cost(100, 50, cache_read=3000, cache_write=2000))


def test_cache_tokens_repeated_in_message_delta_are_not_counted_twice(records: Collected) -> None:
    # The API now repeats the whole usage, cache counts included, in message_delta.
    message = anthropic_message(
        ANSWER,
        input_tokens=100,
        output_tokens=50,
        cache_creation_input_tokens=2000,
        cache_read_input_tokens=3000,
    )
    events = anthropic_stream_events(message)
    name, delta = events[-2]
    assert name == "message_delta"
    delta["usage"] = dict(message["usage"])
    create(FakeLLM().add("/v1/messages", Reply(stream=events)), "sync", stream=True)
    record = records.one()
    assert record.usage == cert_core.Usage(
        input_tokens=5100, output_tokens=50, cache_read_input_tokens=3000, cache_creation_input_tokens=2000
    )
    assert record.cost_usd == pytest.approx(cost(100, 50, cache_read=3000, cache_write=2000))


def test_counts_past_64_bits_never_make_a_record_the_reader_refuses(
    records: Collected, tmp_path: Path
) -> None:
    # A count past MAX_COUNT is not taken (as a negative one is not), and a sum of counts the
    # reader accepts one by one is held at MAX_COUNT.
    fake = FakeLLM().anthropic(
        ANSWER,
        input_tokens=2**64,
        output_tokens=2**63,
        cache_creation_input_tokens=2**62,
        cache_read_input_tokens=2**62,
    )
    create(fake, "sync")
    record = records.one()
    assert record.usage == cert_core.Usage(
        input_tokens=cert_core.MAX_COUNT,
        output_tokens=0,
        cache_read_input_tokens=2**62,
        cache_creation_input_tokens=2**62,
    )
    with cert_core.TraceWriter(tmp_path / "t.jsonl") as writer:
        writer.write(record)
    assert [back.usage for back in cert_core.read_traces(tmp_path / "t.jsonl")] == [record.usage]


@pytest.mark.parametrize("mode", MODES)
def test_stream_true_gives_the_same_record_as_a_complete_response(records: Collected, mode: str) -> None:
    fake = FakeLLM().anthropic(ANSWER, input_tokens=14, output_tokens=9)
    create(fake, mode)
    events = create(fake, mode, stream=True)
    assert (events[0].type, events[-1].type) == ("message_start", "message_stop")
    complete, streamed = records.records
    assert streamed.stream is True
    assert streamed.ttft_ms is not None
    assert 0 < streamed.ttft_ms <= streamed.duration_ms
    assert streamed.incomplete is None
    assert streamed.usage_estimated is None
    assert streamed.output == complete.output == ANSWER
    assert streamed.usage == complete.usage == cert_core.Usage(input_tokens=14, output_tokens=9)
    assert streamed.finish_reasons == complete.finish_reasons == ["end_turn"]
    assert streamed.response_model == complete.response_model == DATED_MODEL
    assert streamed.cost_usd == complete.cost_usd == pytest.approx(cost(14, 9))


def stream_helper(fake: FakeLLM, mode: str, read: str) -> str:
    """``messages.stream()``, read by ``text_stream`` or by ``get_final_message()``; the text."""
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": MESSAGES}
    if mode == "sync":
        with client(fake).messages.stream(**params) as stream:
            if read == "text_stream":
                return "".join(stream.text_stream)
            return stream.get_final_message().content[0].text  # type: ignore[union-attr]

    async def run() -> str:
        async with async_client(fake).messages.stream(**params) as stream:
            if read == "text_stream":
                return "".join([text async for text in stream.text_stream])
            return (await stream.get_final_message()).content[0].text  # type: ignore[union-attr]

    return asyncio.run(run())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("read", ["text_stream", "get_final_message"])
def test_messages_stream_helper(records: Collected, mode: str, read: str) -> None:
    fake = FakeLLM().anthropic(ANSWER, input_tokens=14, output_tokens=9)
    assert stream_helper(fake, mode, read) == ANSWER
    record = records.one()
    assert record.stream is True
    assert record.ttft_ms is not None
    assert record.ttft_ms > 0
    assert record.incomplete is None
    assert record.output == ANSWER
    assert record.usage == cert_core.Usage(input_tokens=14, output_tokens=9)
    assert record.finish_reasons == ["end_turn"]
    assert record.cost_usd == pytest.approx(cost(14, 9))


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_tool_use_blocks_are_the_output(records: Collected, stream: bool) -> None:
    fake = FakeLLM().anthropic(
        "Let me check.", tool_use=[{"name": "get_weather", "input": {"city": "Paris", "unit": "C"}}]
    )
    create(fake, "sync", stream=stream, tools=[WEATHER_TOOL])
    record = records.one()
    assert record.output == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": {"city": "Paris", "unit": "C"}},
    ]
    assert record.finish_reasons == ["tool_use"]
    assert record.request == {"max_tokens": 100, "tools": ["get_weather"]}


@pytest.mark.parametrize("mode", MODES)
def test_stream_closed_after_one_event_is_incomplete(records: Collected, mode: str) -> None:
    fake = FakeLLM().anthropic(ANSWER, input_tokens=14, output_tokens=9)
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": MESSAGES, "stream": True}
    if mode == "sync":
        stream = client(fake).messages.create(**params)
        assert next(iter(stream)).type == "message_start"
        stream.close()
    else:

        async def run() -> None:
            stream = await async_client(fake).messages.create(**params)
            assert (await stream.__anext__()).type == "message_start"
            await stream.close()

        asyncio.run(run())
    gc.collect()  # a finalizer must not add a second record
    record = records.one()
    assert record.incomplete is True
    assert record.stream is True
    assert record.error is None
    assert record.usage is not None
    assert record.usage.input_tokens == 14


@pytest.mark.parametrize("mode", MODES)
def test_leaving_messages_stream_block_early_is_incomplete(records: Collected, mode: str) -> None:
    fake = FakeLLM().anthropic(ANSWER)
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": MESSAGES}
    if mode == "sync":
        with client(fake).messages.stream(**params) as stream:
            first = next(iter(stream.text_stream))
    else:

        async def run() -> str:
            async with async_client(fake).messages.stream(**params) as stream:
                async for text in stream.text_stream:
                    return text
            raise AssertionError("the stream had no text")

        first = asyncio.run(run())
    gc.collect()
    record = records.one()
    assert record.incomplete is True
    assert record.output == first
    assert first != ANSWER


@pytest.mark.parametrize("mode", MODES)
def test_stream_dropped_unread_is_recorded_as_incomplete(records: Collected, mode: str) -> None:
    fake = FakeLLM().anthropic(ANSWER)
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": MESSAGES, "stream": True}
    if mode == "sync":
        stream: Any = client(fake).messages.create(**params)
    else:

        async def run() -> Any:
            return await async_client(fake).messages.create(**params)

        stream = asyncio.run(run())
    assert records.records == []
    del stream
    gc.collect()
    record = records.one()
    assert record.incomplete is True
    assert record.stream is True
    assert record.output is None


def stream_cut_by_error_event() -> anthropic.APIStatusError:
    """Read a stream whose fourth event is ``event: error`` (overloaded); the error the SDK raised."""
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events = [*anthropic_stream_events(anthropic_message(ANSWER))[:3], ("error", overloaded)]
    fake = FakeLLM().add("/v1/messages", Reply(stream=events))
    with pytest.raises(anthropic.APIStatusError) as info:
        create(fake, "sync", stream=True)
    return info.value


def test_error_event_inside_a_stream_keeps_what_came_before(records: Collected) -> None:
    stream_cut_by_error_event()
    record = records.one()
    assert record.incomplete is True
    assert record.output == ANSWER[: len(ANSWER) // 2]
    assert record.usage == cert_core.Usage(input_tokens=14, output_tokens=1)  # from message_start


def test_error_event_inside_a_stream_is_the_record_error(records: Collected) -> None:
    error = stream_cut_by_error_event()
    assert isinstance(error, anthropic.APIStatusError)  # what the caller got
    record = records.one()
    assert record.error is not None
    # Read from the error event on the wire: the provider's own error type, not the SDK's class.
    assert record.error.type == "overloaded_error"
    assert "Overloaded" in record.error.message


def test_with_raw_response_is_recorded_once(records: Collected) -> None:
    fake = FakeLLM().anthropic(ANSWER)
    raw = client(fake).messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert raw.http_response.status_code == 200
    assert raw.parse().content[0].text == ANSWER  # type: ignore[union-attr]
    assert records.one().output == ANSWER


def test_with_streaming_response_is_recorded_when_the_body_is_read(records: Collected) -> None:
    fake = FakeLLM().anthropic(ANSWER)
    messages = client(fake).messages
    with messages.with_streaming_response.create(model=MODEL, max_tokens=100, messages=MESSAGES) as response:
        assert response.parse().content[0].text == ANSWER  # type: ignore[union-attr]
    record = records.one()
    assert record.output == ANSWER
    assert record.usage == cert_core.Usage(input_tokens=14, output_tokens=9)
    assert record.incomplete is None


def raises(fake: FakeLLM, mode: str) -> anthropic.APIError:
    with pytest.raises(anthropic.APIError) as info:
        create(fake, mode, client_options={"max_retries": 0})
    return info.value


ERRORS = {
    "429": lambda: FakeLLM().error("/v1/messages", 429, "rate limited"),
    "500": lambda: FakeLLM().error("/v1/messages", 500, "overloaded"),
    "timeout": lambda: FakeLLM().add("/v1/messages", Reply(raises=httpx2.ReadTimeout("timeout"))),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("failure", "expected", "status"),
    [
        ("429", anthropic.RateLimitError, 429),
        ("500", anthropic.InternalServerError, 500),
        ("timeout", anthropic.APITimeoutError, None),
    ],
)
def test_error_is_raised_unchanged_and_recorded(
    records: Collected, mode: str, failure: str, expected: type[anthropic.APIError], status: int | None
) -> None:
    error = raises(ERRORS[failure](), mode)
    cert_core.uninstrument()
    try:
        plain = raises(ERRORS[failure](), mode)
    finally:
        cert_core.instrument()
    assert type(error) is type(plain) is expected
    assert str(error) == str(plain)
    record = records.one()
    assert record.error is not None
    assert record.error.type == expected.__name__
    assert record.error.status == status
    assert record.output is None
    assert record.usage is None
    if status is not None:
        assert record.cost_usd == 0.0
        assert (record.price_source or "").startswith("not billed")
        assert record.price_error is None
    else:
        assert record.cost_usd is None
        assert record.price_error is not None
        assert "unknown" in record.price_error


def both_ways(records: Collected, run: Callable[[], Any]) -> tuple[Any, Any]:
    """``run()`` instrumented, then not; checks the first made exactly one record."""
    traced = run()
    records.one()
    cert_core.uninstrument()
    try:
        plain = run()
    finally:
        cert_core.instrument()
    records.one()
    return traced, plain


@pytest.mark.parametrize("mode", MODES)
def test_message_is_the_same_with_and_without_instrumentation(records: Collected, mode: str) -> None:
    traced, plain = both_ways(records, lambda: create(FakeLLM().anthropic(ANSWER), mode))
    assert isinstance(traced, anthropic.types.Message)
    assert traced.model_dump() == plain.model_dump()


@pytest.mark.parametrize("mode", MODES)
def test_stream_events_are_the_same_with_and_without_instrumentation(records: Collected, mode: str) -> None:
    def run() -> Any:
        fake = FakeLLM().anthropic(
            "Let me check.", tool_use=[{"name": "get_weather", "input": {"city": "Paris"}}]
        )
        return create(fake, mode, stream=True, tools=[WEATHER_TOOL])

    traced, plain = both_ways(records, run)
    assert len(traced) == 11  # start, 2 x (block start, 2 deltas, block stop), delta, stop
    assert dumps(traced) == dumps(plain)


def test_final_message_is_the_same_with_and_without_instrumentation(records: Collected) -> None:
    def run() -> anthropic.types.Message:
        fake = FakeLLM().anthropic(ANSWER)
        with client(fake).messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
            return stream.get_final_message()

    traced, plain = both_ways(records, run)
    assert traced.model_dump() == plain.model_dump()


BEDROCK_MODEL = "anthropic.claude-sonnet-4-20250514-v1:0"


def bedrock_message() -> FakeLLM:
    return FakeLLM().add("/invoke", Reply(anthropic_message(ANSWER, model=DATED_MODEL)))


@pytest.mark.parametrize("credentials", ["api_key", "aws_keys"])
def test_bedrock_client_is_recorded_as_aws_bedrock(records: Collected, credentials: str) -> None:
    if credentials == "aws_keys":
        pytest.importorskip("boto3", reason="AWS SigV4 signing of Bedrock requests needs boto3")
        auth: dict[str, Any] = {"aws_access_key": "x", "aws_secret_key": "y"}
    else:
        auth = {"api_key": "bedrock-test"}  # a Bedrock API key: sent as a bearer token, nothing to sign
    fake = bedrock_message()
    bedrock = anthropic.AnthropicBedrock(
        aws_region="us-east-1", http_client=httpx2.Client(transport=fake.transport()), **auth
    )
    message = bedrock.messages.create(model=BEDROCK_MODEL, max_tokens=100, messages=MESSAGES)
    assert message.content[0].text == ANSWER  # type: ignore[union-attr]
    assert fake.requests[0].url.path == f"/model/{BEDROCK_MODEL}/invoke"
    record = records.one()
    assert record.provider == "aws.bedrock"
    assert record.request_model == BEDROCK_MODEL
    assert record.output == ANSWER
    assert record.usage == cert_core.Usage(input_tokens=14, output_tokens=9)


def test_vertex_client_is_recorded_as_gcp_vertex_ai(records: Collected) -> None:
    fake = FakeLLM().add(":rawPredict", Reply(anthropic_message(ANSWER, model=DATED_MODEL)))
    vertex = anthropic.AnthropicVertex(
        region="us-east5",
        project_id="p",
        access_token="t",
        http_client=httpx2.Client(transport=fake.transport()),
    )
    message = vertex.messages.create(model="claude-sonnet-4@20250514", max_tokens=100, messages=MESSAGES)
    assert message.content[0].text == ANSWER  # type: ignore[union-attr]
    assert fake.requests[0].url.path.endswith("/models/claude-sonnet-4@20250514:rawPredict")
    record = records.one()
    assert record.provider == "gcp.vertex_ai"
    assert record.request_model == "claude-sonnet-4@20250514"
    assert record.output == ANSWER
    assert record.usage == cert_core.Usage(input_tokens=14, output_tokens=9)


def test_vertex_stream_is_recorded(records: Collected) -> None:
    message = anthropic_message(ANSWER, model=DATED_MODEL)
    fake = FakeLLM().add(":streamRawPredict", Reply(stream=anthropic_stream_events(message)))
    vertex = anthropic.AnthropicVertex(
        region="us-east5",
        project_id="p",
        access_token="t",
        http_client=httpx2.Client(transport=fake.transport()),
    )
    params: dict[str, Any] = {"model": "claude-sonnet-4@20250514", "max_tokens": 100, "messages": MESSAGES}
    with vertex.messages.stream(**params) as stream:
        assert "".join(stream.text_stream) == ANSWER
    record = records.one()
    assert record.provider == "gcp.vertex_ai"
    assert record.stream is True
    assert record.output == ANSWER
    assert record.incomplete is None


def test_api_key_never_reaches_the_trace_file(records: Collected, tmp_path: Path) -> None:
    fake = FakeLLM().anthropic(ANSWER)
    create(fake, "sync", client_options={"api_key": "sk-ant-SECRET-123"})
    create(fake, "sync", client_options={"api_key": "sk-ant-SECRET-123"}, stream=True)
    sent = [value for request in fake.requests for value in request.headers.values()]
    assert any("sk-ant-SECRET-123" in value for value in sent)  # the key really went out
    writer = cert_core.TraceWriter(tmp_path / "t.jsonl")
    for record in records.records:
        writer.write(record)
    writer.close()
    data = (tmp_path / "t.jsonl").read_bytes()
    assert data.count(b"\n") == 2
    assert b"SECRET" not in data
    assert b"x-api-key" not in data.lower()
    assert b"authorization" not in data.lower()


def test_temperature_sent_through_extra_body_is_a_request_param(records: Collected) -> None:
    # anthropic 2.14's messages.create has no temperature argument: extra_body is the way to send it.
    fake = FakeLLM().anthropic(ANSWER)
    create(fake, "sync", extra_body={"temperature": 0.2})
    assert json.loads(fake.requests[0].content)["temperature"] == 0.2
    assert records.one().request == {"max_tokens": 100, "temperature": 0.2}


def test_messages_given_as_an_iterator_are_recorded(records: Collected) -> None:
    fake = FakeLLM().anthropic(ANSWER)
    create(fake, "sync", messages=iter(MESSAGES))
    assert json.loads(fake.requests[0].content)["messages"] == MESSAGES
    assert records.one().input == MESSAGES


def test_tool_use_turn_passing_response_blocks_back_is_recorded_as_sent(records: Collected) -> None:
    fake = FakeLLM().anthropic(
        "Let me check.", tool_use=[{"name": "get_weather", "input": {"city": "Paris"}}]
    )
    first = create(fake, "sync", tools=[WEATHER_TOOL])
    result = {"type": "tool_result", "tool_use_id": "toolu_0", "content": "18 C, sunny"}
    turn = [*MESSAGES, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}]
    create(fake, "sync", tools=[WEATHER_TOOL], messages=turn)
    sent = json.loads(fake.requests[-1].content)["messages"]
    assert sent[1]["content"][1]["type"] == "tool_use"
    assert records.records[1].input == sent


def test_record_input_is_not_changed_by_the_next_conversation_turn(records: Collected) -> None:
    fake = FakeLLM().anthropic(ANSWER)
    conversation = [{"role": "user", "content": "What is the capital of France?"}]
    create(fake, "sync", messages=conversation)
    conversation += [{"role": "assistant", "content": ANSWER}, {"role": "user", "content": "And Italy?"}]
    create(fake, "sync", messages=conversation)
    first, second = records.records
    assert len(second.input) == 3
    assert first.input == MESSAGES
