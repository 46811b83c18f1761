from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import httpx2
import openai
import pydantic
import pytest

import cert_core
from cert_core.testing import FakeLLM, Reply, openai_chat_chunks, openai_chat_completion
from tests.cert_core.connectors.conftest import Collected

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def client(fake: FakeLLM, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=fake.transport()), **options)


def async_client(fake: FakeLLM, **options: Any) -> openai.AsyncOpenAI:
    transport = fake.async_transport()
    return openai.AsyncOpenAI(
        api_key="sk-test", http_client=httpx2.AsyncClient(transport=transport), **options
    )


def test_chat_completion_becomes_one_priced_record(records: Collected) -> None:
    fake = FakeLLM().openai_chat(
        "Paris.", model="gpt-4o-2024-08-06", prompt_tokens=1000, completion_tokens=200
    )
    response = client(fake).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, temperature=0.2, max_tokens=50
    )
    assert response.choices[0].message.content == "Paris."
    record = records.one()
    assert record.kind == "llm"
    assert record.provider == "openai"
    assert record.operation == "chat"
    assert record.request_model == "gpt-4o"
    assert record.response_model == "gpt-4o-2024-08-06"
    assert record.input == MESSAGES
    assert record.output == "Paris."
    assert record.finish_reasons == ["stop"]
    assert record.request == {"temperature": 0.2, "max_tokens": 50}
    assert record.usage == cert_core.Usage(input_tokens=1000, output_tokens=200)
    # gpt-4o: $2.50 per million input tokens, $10 per million output tokens
    assert record.cost_usd == pytest.approx(1000 * 2.50 / 1e6 + 200 * 10.0 / 1e6)
    assert "genai-prices" in (record.price_source or "")
    assert record.duration_ms > 0
    assert record.stream is None
    assert record.error is None


def test_cached_and_reasoning_tokens_are_priced(records: Collected) -> None:
    fake = FakeLLM().openai_chat(
        "4",
        model="o1-2024-12-17",
        prompt_tokens=2000,
        completion_tokens=900,
        cached_tokens=1500,
        reasoning_tokens=800,
    )
    client(fake).chat.completions.create(model="o1", messages=MESSAGES)
    record = records.one()
    assert record.usage == cert_core.Usage(
        input_tokens=2000, output_tokens=900, cache_read_input_tokens=1500, reasoning_tokens=800
    )
    # o1: $15/M input, $7.50/M cached input, $60/M output (reasoning tokens are billed as output)
    assert record.cost_usd == pytest.approx((500 * 15 + 1500 * 7.5 + 900 * 60) / 1e6)


def test_async_chat_completion(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris.")

    async def call() -> str | None:
        response = await async_client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return response.choices[0].message.content

    assert asyncio.run(call()) == "Paris."
    record = records.one()
    assert record.output == "Paris."
    assert record.usage is not None
    assert record.usage.input_tokens == 12


def test_stream_with_usage_chunk(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris is the capital.", prompt_tokens=30, completion_tokens=6)
    stream = client(fake).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert isinstance(stream, openai.Stream)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Paris is the capital."
    record = records.one()
    assert record.stream is True
    assert record.output == "Paris is the capital."
    assert record.usage == cert_core.Usage(input_tokens=30, output_tokens=6)
    assert record.usage_estimated is None
    assert record.incomplete is None
    assert record.finish_reasons == ["stop"]
    assert record.ttft_ms is not None
    assert 0 < record.ttft_ms <= record.duration_ms


def test_stream_without_usage_is_estimated_never_zero(records: Collected) -> None:
    chunks = openai_chat_chunks(["Paris is ", "the capital."], usage=None)  # no include_usage
    fake = FakeLLM().add("/chat/completions", Reply(stream=chunks, done=True))
    for _ in client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass
    record = records.one()
    assert record.usage_estimated is True
    assert record.usage is not None
    assert record.usage.input_tokens > 0
    assert record.usage.output_tokens > 0
    assert record.cost_usd is not None
    assert record.cost_usd > 0


def test_async_stream(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris is the capital.")

    async def call() -> str:
        stream = await async_client(fake).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        assert isinstance(stream, openai.AsyncStream)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(call()) == "Paris is the capital."
    record = records.one()
    assert record.output == "Paris is the capital."
    assert record.stream is True


def test_stream_closed_early_is_recorded_incomplete(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris is the capital.")
    stream = client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(iter(stream))
    assert records.records == []
    stream.close()
    record = records.one()
    assert record.incomplete is True
    assert record.stream is True


def test_stream_context_manager_left_early_is_recorded_incomplete(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris is the capital.")
    with client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
        for _ in stream:
            break
    assert records.one().incomplete is True


def test_stream_dropped_unread_is_recorded_when_collected(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris is the capital.")
    stream = client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    del stream
    gc.collect()
    record = records.one()
    assert record.incomplete is True
    assert record.usage is None
    assert record.cost_usd is None
    assert record.price_error


def test_tool_calls_are_recorded(records: Collected) -> None:
    tool = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    fake = FakeLLM().openai_chat(None, tool_calls=[tool], finish_reason="tool_calls")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    c = client(fake)
    c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools)  # type: ignore[arg-type]
    for _ in c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools, stream=True):  # type: ignore[arg-type]
        pass
    plain, streamed = records.records
    assert plain.output == {"content": None, "tool_calls": [tool]}
    assert plain.finish_reasons == ["tool_calls"]
    assert plain.request == {"tools": ["get_weather"]}
    assert streamed.output == {"content": None, "tool_calls": [tool]}


class Capital(pydantic.BaseModel):
    city: str
    country: str


def test_structured_output_parse(records: Collected) -> None:
    fake = FakeLLM().openai_chat('{"city": "Paris", "country": "France"}')
    parsed = client(fake).chat.completions.parse(
        model="gpt-4o-mini", messages=MESSAGES, response_format=Capital
    )
    assert parsed.choices[0].message.parsed == Capital(city="Paris", country="France")
    record = records.one()
    assert record.output == '{"city": "Paris", "country": "France"}'


def test_with_raw_response(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris.")
    raw = client(fake).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.http_response.status_code == 200
    assert raw.parse().choices[0].message.content == "Paris."
    assert records.one().output == "Paris."


RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1730000000,
    "model": "gpt-4o-mini-2024-07-18",
    "status": "completed",
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Paris.", "annotations": []}],
        }
    ],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "usage": {
        "input_tokens": 20,
        "output_tokens": 3,
        "total_tokens": 23,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    },
}


RESPONSE_EVENTS = [
    (
        "response.created",
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": {**RESPONSE, "status": "in_progress", "output": [], "usage": None},
        },
    ),
    (
        "response.output_text.delta",
        {
            "type": "response.output_text.delta",
            "sequence_number": 1,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "Paris.",
            "logprobs": [],
        },
    ),
    ("response.completed", {"type": "response.completed", "sequence_number": 2, "response": RESPONSE}),
]


def test_responses_api(records: Collected) -> None:
    body = RESPONSE
    fake = FakeLLM().add("/responses", Reply(body))
    response = client(fake).responses.create(
        model="gpt-4o-mini", input="Capital of France?", instructions="Be brief."
    )
    assert response.output_text == "Paris."
    record = records.one()
    assert record.operation == "responses"
    assert record.input == {"instructions": "Be brief.", "input": "Capital of France?"}
    assert record.output == "Paris."
    assert record.usage == cert_core.Usage(input_tokens=20, output_tokens=3)
    assert record.finish_reasons == ["completed"]


def test_responses_stream(records: Collected) -> None:
    final = RESPONSE
    events = RESPONSE_EVENTS
    fake = FakeLLM().add("/responses", Reply(final, stream=events))
    for _ in client(fake).responses.create(model="gpt-4o-mini", input="Capital of France?", stream=True):
        pass
    record = records.one()
    assert record.output == "Paris."
    assert record.usage == cert_core.Usage(input_tokens=20, output_tokens=3)
    assert record.ttft_ms is not None


def test_embeddings(records: Collected) -> None:
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    fake = FakeLLM().add("/embeddings", Reply(body))
    client(fake).embeddings.create(model="text-embedding-3-small", input="Paris", encoding_format="float")
    record = records.one()
    assert record.operation == "embeddings"
    assert record.input == "Paris"
    assert record.output == {"vectors": 1, "dimensions": 3}
    assert record.usage == cert_core.Usage(input_tokens=8)
    assert record.cost_usd == pytest.approx(8 * 0.02 / 1e6)  # $0.02 per million tokens


def test_legacy_completions(records: Collected) -> None:
    body = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1730000000,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"index": 0, "text": " Paris.", "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8},
    }
    fake = FakeLLM().add("/completions", Reply(body))
    client(fake).completions.create(model="gpt-3.5-turbo-instruct", prompt="The capital of France is")
    record = records.one()
    assert record.operation == "text_completion"
    assert record.input == "The capital of France is"
    assert record.output == " Paris."


def test_azure_client_is_its_own_provider(records: Collected) -> None:
    fake = FakeLLM().openai_chat("Paris.", model="gpt-4o-2024-08-06", prompt_tokens=100, completion_tokens=10)
    azure = openai.AzureOpenAI(
        api_key="azure-key",
        api_version="2024-10-21",
        azure_endpoint="https://example-resource.openai.azure.com",
        http_client=httpx2.Client(transport=fake.transport()),
    )
    azure.chat.completions.create(model="my-gpt4o-deployment", messages=MESSAGES)
    record = records.one()
    assert record.provider == "azure.openai"
    assert record.request_model == "my-gpt4o-deployment"
    assert record.response_model == "gpt-4o-2024-08-06"
    assert record.cost_usd == pytest.approx((100 * 2.5 + 10 * 10) / 1e6)


def test_non_llm_calls_are_not_recorded(records: Collected) -> None:
    fake = FakeLLM().add("/models", Reply({"object": "list", "data": []}))
    assert list(client(fake).models.list()) == []
    assert records.records == []


@pytest.mark.parametrize(
    ("status", "error"), [(429, openai.RateLimitError), (500, openai.InternalServerError)]
)
def test_api_errors_are_recorded_and_reraised_unchanged(records: Collected, status: int, error: type) -> None:
    fake = FakeLLM().error("/chat/completions", status, "slow down")
    with pytest.raises(error) as info:
        client(fake, max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.status_code == status
    record = records.one()
    assert record.error is not None
    assert record.error.type == error.__name__
    assert record.error.status == status
    assert "slow down" in record.error.message
    assert record.cost_usd == 0.0
    assert "not billed" in (record.price_source or "")


def test_timeout_is_recorded_with_unknown_cost(records: Collected) -> None:
    fake = FakeLLM().add("/chat/completions", Reply(raises=httpx2.ReadTimeout("timed out")))
    with pytest.raises(openai.APITimeoutError):
        client(fake, max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    record = records.one()
    assert record.error is not None
    assert record.error.type == "APITimeoutError"
    assert record.error.status is None
    assert record.cost_usd is None
    assert "may still have billed" in (record.price_error or "")


def test_retries_make_one_record(records: Collected) -> None:
    fake = FakeLLM().error("/chat/completions", 500, "boom").openai_chat("Paris.")
    fake.replies["/chat/completions"][0].headers["retry-after-ms"] = "1"
    client(fake, max_retries=1).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(fake.requests) == 2
    assert records.one().output == "Paris."


def test_results_and_errors_are_identical_without_instrumentation(trace_schema: dict[str, Any]) -> None:
    def run() -> tuple[Any, ...]:
        fake = FakeLLM().openai_chat("Paris.").error("/embeddings", 400, "bad input")
        c = client(fake, max_retries=0)
        plain = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).model_dump()
        chunks = [
            x.model_dump()
            for x in c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        ]
        try:
            c.embeddings.create(model="text-embedding-3-small", input="x")
        except openai.BadRequestError as exc:
            error = (type(exc), exc.status_code, str(exc), exc.body)
        return plain, chunks, error

    bare = run()
    cert_core.instrument()
    try:
        collected = Collected(trace_schema)
        with cert_core.recording(collected):
            observed = run()
    finally:
        cert_core.uninstrument()
    assert observed == bare
    assert len(collected.records) == 3


@pytest.mark.parametrize("mode", ["hashed", "off"])
def test_capture_modes(mode: str, trace_schema: dict[str, Any]) -> None:
    import hashlib

    import msgspec

    cert_core.instrument(capture=mode)
    collected = Collected(trace_schema)
    try:
        with cert_core.recording(collected):
            client(FakeLLM().openai_chat("Paris.")).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
    finally:
        cert_core.instrument(capture="full")
        cert_core.uninstrument()
    (record,) = collected.records
    if mode == "off":
        assert record.input is None
        assert record.output is None
    else:
        assert record.input == {"sha256": hashlib.sha256(msgspec.json.encode(MESSAGES)).hexdigest()}
        assert record.output == {"sha256": hashlib.sha256(b'"Paris."').hexdigest()}
    assert record.usage is not None  # usage and cost are kept in every mode


def test_no_secret_reaches_the_trace_file(records: Collected, tmp_path: Path) -> None:
    key = "sk-proj-SECRET-0123456789"
    fake = FakeLLM().openai_chat("Paris.").error("/embeddings", 401, "invalid key")
    c = openai.OpenAI(
        api_key=key,
        http_client=httpx2.Client(transport=fake.transport()),
        default_headers={"x-api-key": key, "api-key": key},
        max_retries=0,
    )
    c.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"Authorization": f"Bearer {key}"}
    )
    with pytest.raises(openai.AuthenticationError):
        c.embeddings.create(model="text-embedding-3-small", input="x")
    assert fake.requests[0].headers["authorization"] == f"Bearer {key}"  # the SDK did send it
    path = tmp_path / "t.jsonl"
    with cert_core.TraceWriter(path) as writer:
        for record in records.records:
            writer.write(record)
    data = path.read_bytes()
    assert len(records.records) == 2
    for secret in (key.encode(), b"SECRET", b"Bearer", b"Authorization", b"authorization", b"api-key"):
        assert secret not in data


def test_chat_completion_object_is_the_sdk_object(records: Collected) -> None:
    fake = FakeLLM().add("/chat/completions", Reply(openai_chat_completion("Paris.")))
    response = client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert type(response) is openai.types.chat.ChatCompletion


def test_a_chat_completion_of_another_shape_is_read_as_far_as_it_fits() -> None:
    from cert_core.connectors._extract import OPENAI_EXTRACTORS

    chat = OPENAI_EXTRACTORS["/chat/completions"]
    body = (
        b'{"model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 2},'
        b' "choices": ["odd", {"message": "not an object", "finish_reason": "stop"},'
        b' {"message": {"content": "Paris."}, "finish_reason": "length"}]}'
    )
    output, usage, finish, model = chat.response(chat.read(body))
    assert output == [None, None, "Paris."]
    assert usage == cert_core.Usage(input_tokens=3, output_tokens=2)
    assert finish == ["stop", "length"]
    assert model == "m"
    assert chat.response(chat.read(b"[1, 2]")) == (None, None, None, None)
