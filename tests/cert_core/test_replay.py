"""Cassettes: record then replay every SDK method the connectors cover, miss errors, modes,
matching, secret scrubbing and the file format.

The real ``openai`` and ``anthropic`` SDKs run on top; a ``MockTransport`` stands in for the
network while recording, and replays run on a transport that fails the test if it is called.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pydantic
import pytest

import cert_core
from cert_core import replay
from cert_core.replay import FORMAT, Cassette, CassetteError, CassetteMiss, use_cassette
from cert_core.testing import FakeLLM, Reply, anthropic_message, anthropic_stream_events
from tests.cert_core.connectors.test_openai import RESPONSE, RESPONSE_EVENTS  # Responses API

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
CLAUDE = "claude-sonnet-4-20250514"
OPENAI_KEY = "sk-proj-0123456789abcdefghijklmnop"
ANTHROPIC_KEY = "sk-ant-api03-0123456789abcdefghijkl"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    assert replay.active_cassette() is None
    replay.uninstall()


class Network:
    """The transports the clients get: the fake API while recording, a tripwire while replaying."""

    def __init__(self, fake: FakeLLM | None, module: str = "httpx2") -> None:
        self.fake = fake
        self.module = module
        self.touched: list[str] = []

    def transport(self) -> Any:
        mod = __import__(self.module)
        if self.fake is not None:
            return self.fake.transport(self.module)

        def tripwire(request: Any) -> Any:
            self.touched.append(str(request.url))
            raise AssertionError(f"the network was called in replay: {request.url}")

        return mod.MockTransport(tripwire)

    def openai(self, **options: Any) -> openai.OpenAI:
        mod = __import__(self.module)
        return openai.OpenAI(
            api_key=OPENAI_KEY, http_client=mod.Client(transport=self.transport()), **options
        )

    def async_openai(self) -> openai.AsyncOpenAI:
        mod = __import__(self.module)
        return openai.AsyncOpenAI(api_key=OPENAI_KEY, http_client=mod.AsyncClient(transport=self.transport()))

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            api_key=ANTHROPIC_KEY, http_client=httpx2.Client(transport=self.transport())
        )

    def async_anthropic(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=ANTHROPIC_KEY, http_client=httpx2.AsyncClient(transport=self.transport())
        )


class Capital(pydantic.BaseModel):
    city: str


EMBEDDING = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
    "model": "text-embedding-3-small",
    "usage": {"prompt_tokens": 8, "total_tokens": 8},
}
COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1730000000,
    "model": "gpt-3.5-turbo-instruct",
    "choices": [{"index": 0, "text": " Paris.", "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8},
}


def _fake() -> FakeLLM:
    # JSON, so that the structured-output parse() call can read it too
    fake = FakeLLM().openai_chat('{"city": "Paris"}', prompt_tokens=30, completion_tokens=8)
    fake.anthropic("Paris is the capital of France.", model=CLAUDE)
    fake.add("/responses", Reply(RESPONSE, stream=RESPONSE_EVENTS))
    fake.add("/embeddings", Reply(EMBEDDING))
    fake.add("/completions", Reply(COMPLETION))
    message = anthropic_message("Paris is the capital of France.", model=CLAUDE)
    fake.add("/invoke", Reply(message))
    fake.add(":streamRawPredict", Reply(stream=anthropic_stream_events(message)))
    return fake


def _azure(n: Network) -> Any:
    azure = openai.AzureOpenAI(
        api_key="azure-key-0123456789",
        api_version="2024-10-21",
        azure_endpoint="https://example-resource.openai.azure.com",
        http_client=httpx2.Client(transport=n.transport()),
    )
    return azure.chat.completions.create(model="my-deployment", messages=MESSAGES).model_dump()


def _bedrock(n: Network) -> Any:
    # AWS keys: the request is SigV4-signed (a fresh date and signature each time; headers are
    # not matched).
    bedrock = anthropic.AnthropicBedrock(
        aws_region="us-east-1",
        aws_access_key="AKIAEXAMPLEKEY123456",
        aws_secret_key="aws-secret-key-0123456789",
        http_client=httpx2.Client(transport=n.transport()),
    )
    return bedrock.messages.create(
        model="anthropic.claude-sonnet-4-20250514-v1:0", max_tokens=100, messages=MESSAGES
    ).model_dump()


def _vertex_stream(n: Network) -> str:
    vertex = anthropic.AnthropicVertex(
        region="us-east5",
        project_id="p",
        access_token="vertex-token-0123456789",
        http_client=httpx2.Client(transport=n.transport()),
    )
    with vertex.messages.stream(model="claude-sonnet-4@20250514", max_tokens=100, messages=MESSAGES) as s:
        return "".join(s.text_stream)


def _chat_stream_text(stream: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


async def _achat_stream_text(stream: Any) -> str:
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


def _anthropic_stream(net: Network) -> tuple[str, str]:
    with net.anthropic().messages.stream(model=CLAUDE, max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return text, final.content[0].text  # type: ignore[union-attr]


async def _anthropic_astream(net: Network) -> tuple[str, str]:
    async with net.async_anthropic().messages.stream(
        model=CLAUDE, max_tokens=100, messages=MESSAGES
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    return text, final.content[0].text  # type: ignore[union-attr]


CALLS: dict[str, Callable[[Network], Any]] = {
    "openai chat": lambda n: (
        n.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).model_dump()
    ),
    "openai chat async": lambda n: asyncio.run(
        n.async_openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    ).model_dump(),
    "openai chat stream": lambda n: _chat_stream_text(
        n.openai().chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    ),
    "openai chat stream async": lambda n: asyncio.run(_openai_astream(n)),
    "openai parse": lambda n: (
        n.openai()
        .chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES, response_format=Capital)
        .choices[0]
        .message.parsed
    ),
    "openai with_raw_response": lambda n: (
        n.openai()
        .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        .parse()
        .model_dump()
    ),
    "openai responses": lambda n: (
        n.openai().responses.create(model="gpt-4o-mini", input="Capital?").output_text
    ),
    "openai responses stream": lambda n: [
        e.type for e in n.openai().responses.create(model="gpt-4o-mini", input="Capital?", stream=True)
    ],
    "openai embeddings": lambda n: (
        n.openai()
        .embeddings.create(model="text-embedding-3-small", input="Paris", encoding_format="float")
        .model_dump()
    ),
    "openai legacy completions": lambda n: (
        n.openai()
        .completions.create(model="gpt-3.5-turbo-instruct", prompt="The capital of France is")
        .model_dump()
    ),
    "anthropic messages": lambda n: (
        n.anthropic().messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES).model_dump()
    ),
    "anthropic messages async": lambda n: asyncio.run(
        n.async_anthropic().messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES)
    ).model_dump(),
    "anthropic stream=True": lambda n: [
        e.type
        for e in n.anthropic().messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES, stream=True)
    ],
    "anthropic messages.stream": _anthropic_stream,
    "anthropic messages.stream async": lambda n: asyncio.run(_anthropic_astream(n)),
    "azure openai chat": _azure,
    "bedrock messages (SigV4)": _bedrock,
    "vertex messages.stream": _vertex_stream,
}


async def _openai_astream(net: Network) -> str:
    stream = await net.async_openai().chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    return await _achat_stream_text(stream)


class Recorded:
    def __init__(self) -> None:
        self.records: list[cert_core.TraceRecord] = []

    def record(self, record: cert_core.TraceRecord) -> None:
        self.records.append(record)


def round_trip(
    path: Path, call: Callable[[Network], Any], module: str = "httpx2"
) -> tuple[Any, Any, list[Any], list[Any]]:
    """Record ``call`` against the fake API, then replay it with the network switched off."""
    live, offline = Network(_fake(), module), Network(None, module)
    first, second = Recorded(), Recorded()
    with cert_core.recording(first), use_cassette(path, "once") as cassette:
        recorded = call(live)
    assert cassette.recorded >= 1
    with cert_core.recording(second), use_cassette(path, "none") as cassette:
        replayed = call(offline)
    assert offline.touched == []
    assert cassette.replayed == len(second.records) >= 1
    return recorded, replayed, first.records, second.records


@pytest.mark.parametrize("name", list(CALLS))
def test_record_then_replay_gives_the_same_answer_and_record(
    instrumented: None, tmp_path: Path, name: str
) -> None:
    recorded, replayed, live, offline = round_trip(tmp_path / "c.json", CALLS[name])
    assert replayed == recorded
    assert [r.replayed for r in live] == [None] * len(live)
    assert [r.replayed for r in offline] == [True] * len(offline)
    for before, after in zip(live, offline, strict=True):
        assert (after.provider, after.operation, after.output, after.usage, after.stream) == (
            before.provider,
            before.operation,
            before.output,
            before.usage,
            before.stream,
        )
        assert after.cost_usd == before.cost_usd  # the recorded cost, reported apart from spend
        assert after.error is None
        assert after.incomplete is None


@pytest.mark.parametrize("name", ["openai chat", "openai chat stream", "openai chat stream async"])
def test_round_trip_over_classic_httpx(instrumented: None, tmp_path: Path, name: str) -> None:
    recorded, replayed, _, offline = round_trip(tmp_path / "c.json", CALLS[name], module="httpx")
    assert replayed == recorded
    assert all(r.replayed for r in offline)


def test_cassette_keeps_latency_usage_and_cost_and_replay_reports_them(
    instrumented: None, tmp_path: Path
) -> None:
    path = tmp_path / "c.json"
    _, _, live, offline = round_trip(path, CALLS["openai chat stream"])
    entry = json.loads(path.read_text())["interactions"][0]
    recorded = entry["recorded"]
    assert recorded["usage"] == {"input_tokens": 30, "output_tokens": 8}
    assert recorded["cost_usd"] == pytest.approx(live[0].cost_usd)
    assert "genai-prices" in recorded["price_source"]
    assert recorded["latency_ms"] > 0  # the HTTP exchange
    assert 0 < recorded["first_byte_ms"] <= recorded["latency_ms"]
    # What the caller saw, as the connector measured it live: the whole call, the first token.
    assert recorded["call_ms"] == pytest.approx(live[0].duration_ms, abs=1e-3)
    assert recorded["ttft_ms"] == pytest.approx(live[0].ttft_ms, abs=1e-3)
    # The replayed record carries the recorded latency and time to first token, not replay speed.
    assert offline[0].duration_ms == pytest.approx(recorded["call_ms"])
    assert offline[0].ttft_ms == pytest.approx(recorded["ttft_ms"])


def test_stream_is_stored_event_by_event_and_replayed_chunk_by_chunk(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with use_cassette(path, "once"):
        _chat_stream_text(
            Network(_fake())
            .openai()
            .chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        )
    events = json.loads(path.read_text())["interactions"][0]["response"]["events"]
    assert [e["data"].startswith("data: ") and e["data"].endswith("\n\n") for e in events] == [True] * len(
        events
    )
    assert events[-1]["data"] == "data: [DONE]\n\n"
    assert all(isinstance(e["t_ms"], float) for e in events)
    chunks: list[bytes] = []
    with use_cassette(path, "none"):
        client = httpx2.Client(transport=Network(None).transport())
        request = client.build_request(
            "POST",
            "https://api.openai.com/v1/chat/completions",
            json={"messages": MESSAGES, "model": "gpt-4o-mini", "stream": True},
            headers={"x-stainless-lang": "python"},
        )
        response = client.send(request, stream=True)
        try:
            chunks.extend(response.iter_raw())
        finally:
            response.close()
    assert [c.decode() for c in chunks] == [e["data"] for e in events]


def test_none_mode_never_calls_the_network_and_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with use_cassette(path, "once"):
        Network(_fake()).openai().chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, temperature=0
        )
    offline = Network(None)
    asked = [{"role": "user", "content": "What is the capital of Spain?"}]
    with use_cassette(path, "none"), pytest.raises(CassetteMiss) as caught:
        offline.openai(max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=asked, temperature=0
        )
    assert offline.touched == []
    text = str(caught.value)
    assert f"no recording for this request in cassette {path} (record mode none)" in text
    assert "request: POST https://api.openai.com/v1/chat/completions model=gpt-4o-mini body sha256:" in text
    assert "nearest recordings:" in text
    assert (
        "differs in body.messages[0].content: recorded 'What is the capital of France?', "
        "requested 'What is the capital of Spain?'" in text
    )
    assert "--cert-record-mode=new_episodes" in text


def test_miss_is_not_retried_or_wrapped_by_the_sdk(tmp_path: Path) -> None:
    offline = Network(None)
    with (
        use_cassette(tmp_path / "absent.json", "none"),
        pytest.raises(CassetteMiss, match="holds no recordings"),
    ):
        offline.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert offline.touched == []


def test_async_miss_raises_in_the_caller(tmp_path: Path) -> None:
    with use_cassette(tmp_path / "absent.json", "none"), pytest.raises(CassetteMiss):
        asyncio.run(
            Network(None).async_anthropic().messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
        )


def test_identical_requests_replay_in_recorded_order_then_miss(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    fake = FakeLLM().openai_chat("first").openai_chat("second")
    with use_cassette(path, "once"):
        live = Network(fake).openai()
        answers = [
            live.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
            for _ in "ab"
        ]
    assert answers == ["first", "second"]
    offline = Network(None).openai()
    with use_cassette(path, "none"):
        again = [
            offline.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
            for _ in "ab"
        ]
        assert again == answers
        with pytest.raises(CassetteMiss, match=r"recorded 2 time\(s\) and each recording was already used"):
            offline.chat.completions.create(model="m", messages=MESSAGES)


def test_once_records_a_new_cassette_and_then_only_replays(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with use_cassette(path, "once"):
        Network(_fake()).openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    network = Network(_fake())
    with (
        use_cassette(path, "once"),
        pytest.raises(CassetteMiss, match="record mode once, the cassette exists"),
    ):
        network.openai().embeddings.create(model="text-embedding-3-small", input="x")
    assert network.fake is not None
    assert network.fake.requests == []


def test_new_episodes_replays_what_it_has_and_records_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with use_cassette(path, "once"):
        Network(_fake()).openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    network = Network(_fake())
    with use_cassette(path, "new_episodes") as cassette:
        network.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        network.openai().embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float")
    assert (cassette.replayed, cassette.recorded) == (1, 1)
    assert network.fake is not None
    assert [r.url.path for r in network.fake.requests] == ["/v1/embeddings"]
    urls = [i["request"]["url"] for i in json.loads(path.read_text())["interactions"]]
    assert urls == ["https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1/embeddings"]


def test_all_records_everything_anew(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with use_cassette(path, "once"):
        Network(FakeLLM().openai_chat("old")).openai().chat.completions.create(model="m", messages=MESSAGES)
    with use_cassette(path, "all") as cassette:
        Network(FakeLLM().openai_chat("new")).openai().chat.completions.create(model="m", messages=MESSAGES)
    assert (cassette.replayed, cassette.recorded) == (0, 1)
    (item,) = json.loads(path.read_text())["interactions"]
    assert item["response"]["body"]["choices"][0]["message"]["content"] == "new"


def test_matching_ignores_key_order_and_configured_volatile_fields(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    url = "https://api.openai.com/v1/chat/completions"
    headers = {"x-stainless-lang": "python"}
    body = {"model": "m", "messages": MESSAGES, "metadata": {"user_id": "u-1", "team": "a"}}
    with use_cassette(path, "once"):
        httpx2.Client(transport=FakeLLM().openai_chat("ok").transport()).post(url, json=body, headers=headers)
    reordered = {"metadata": {"team": "a", "user_id": "u-2"}, "messages": MESSAGES, "model": "m"}
    offline = httpx2.Client(transport=Network(None).transport())
    with use_cassette(path, "none", ignore=["metadata.user_id"]):
        assert (
            offline.post(url, json=reordered, headers=headers).json()["choices"][0]["message"]["content"]
            == "ok"
        )
    with (
        use_cassette(path, "none"),
        pytest.raises(CassetteMiss, match=r"body\.metadata\.user_id: recorded 'u-1'"),
    ):
        offline.post(url, json=reordered, headers=headers)


def test_other_http_traffic_passes_through(tmp_path: Path) -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200, json={"ok": True})

    with use_cassette(tmp_path / "c.json", "none") as cassette:
        assert httpx2.Client(transport=httpx2.MockTransport(handler)).get(
            "http://localhost:9/health"
        ).json() == {"ok": True}
    assert seen == ["http://localhost:9/health"]
    assert (cassette.replayed, cassette.recorded) == (0, 0)
    assert not (tmp_path / "c.json").exists()


def test_secrets_never_reach_the_cassette(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    leaked_in_reply = f"Incorrect API key provided: {OPENAI_KEY}"
    fake = FakeLLM().openai_chat(leaked_in_reply).anthropic("hi", model=CLAUDE)
    fake.add("/openai/deployments/gpt4/chat/completions", Reply(json.loads(json.dumps(_azure_body()))))
    network = Network(fake)
    with use_cassette(path, "once"):
        network.openai().chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_body={"api_key": "body-secret-value-123", "password": "hunter2hunter2"},
            extra_query={"key": "query-secret-value-456"},
            extra_headers={"x-custom-token": "header-secret-value-789"},
        )
        network.anthropic().messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES)
        openai.AzureOpenAI(
            api_key="azure-secret-key-abcdef",
            api_version="2024-10-21",
            azure_endpoint="https://example.openai.azure.com",
            http_client=httpx2.Client(transport=network.transport()),
        ).chat.completions.create(model="gpt4", messages=MESSAGES)
    text = path.read_text()
    for secret in (
        OPENAI_KEY,
        ANTHROPIC_KEY,
        "azure-secret-key-abcdef",
        "body-secret-value-123",
        "hunter2hunter2",
        "query-secret-value-456",
        "header-secret-value-789",
    ):
        assert secret not in text
    # Sent for real while recording: scrubbing is of the file only.
    sent = [" ".join(r.headers.values()) for r in fake.requests]
    for request_headers, key in zip(
        sent, (OPENAI_KEY, ANTHROPIC_KEY, "azure-secret-key-abcdef"), strict=True
    ):
        assert key in request_headers
    data = json.loads(text)
    first = data["interactions"][0]
    assert first["request"]["url"] == "https://api.openai.com/v1/chat/completions?key=<scrubbed>"
    assert first["request"]["body"]["api_key"] == "<scrubbed>"
    assert (
        first["response"]["body"]["choices"][0]["message"]["content"]
        == "Incorrect API key provided: <scrubbed>"
    )
    for item in data["interactions"]:
        assert set(item["request"].get("headers", {})) <= replay.KEPT_REQUEST_HEADERS
    # A scrubbed cassette still replays: requests are scrubbed the same way before matching.
    with use_cassette(path, "none") as cassette:
        Network(None).openai().chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_body={"api_key": "another-secret-value", "password": "other-password"},
            extra_query={"key": "another-query-secret"},
        )
    assert cassette.replayed == 1


def _azure_body() -> dict[str, Any]:
    from cert_core.testing import openai_chat_completion

    return openai_chat_completion("hello")


def test_upstream_sends_recordings_elsewhere_and_keeps_the_addressed_url(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    fake = FakeLLM().openai_chat("from the stand-in")
    with use_cassette(path, "once", upstream="http://127.0.0.1:8765"):
        Network(fake).openai().chat.completions.create(model="m", messages=MESSAGES)
    assert str(fake.requests[0].url) == "http://127.0.0.1:8765/v1/chat/completions"
    assert fake.requests[0].headers["accept-encoding"] == "identity"
    (item,) = json.loads(path.read_text())["interactions"]
    assert item["request"]["url"] == "https://api.openai.com/v1/chat/completions"
    assert item["recorded"]["upstream"] == "http://127.0.0.1:8765"


def test_error_responses_are_recorded_and_replayed_with_their_cost(
    instrumented: None, tmp_path: Path
) -> None:
    path = tmp_path / "c.json"
    fake = FakeLLM().error("/chat/completions", 400, "bad request")

    def call(network: Network) -> str:
        with pytest.raises(openai.BadRequestError) as caught:
            network.openai().chat.completions.create(model="m", messages=MESSAGES)
        return caught.value.message

    first, second = Recorded(), Recorded()
    with cert_core.recording(first), use_cassette(path, "once"):
        live = call(Network(fake))
    with cert_core.recording(second), use_cassette(path, "none"):
        assert call(Network(None)) == live
    (record,) = second.records
    assert record.replayed is True
    assert record.error is not None
    assert record.error.status == 400
    assert record.cost_usd == 0.0


def test_cassette_format_version_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"format": "cert.cassette/0", "interactions": []}))
    with pytest.raises(
        CassetteError, match=rf"{path}: format: found 'cert.cassette/0', this pytest-cert reads"
    ):
        Cassette(path, "none")
    path.write_text(json.dumps({"interactions": []}))
    with pytest.raises(CassetteError, match="format: found None"):
        Cassette(path, "none")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("{not json", r":1: not JSON"),
        (json.dumps([]), "expected a JSON object"),
        (json.dumps({"format": FORMAT, "interactions": {}}), "interactions: expected a list"),
        (
            json.dumps({"format": FORMAT, "interactions": [{"request": {}}]}),
            r"interactions\[0\]: expected 'request'",
        ),
        (
            json.dumps({"format": FORMAT, "interactions": [{"request": {"method": "POST"}, "response": {}}]}),
            r"interactions\[0\].request.url: expected a string",
        ),
        (
            json.dumps(
                {
                    "format": FORMAT,
                    "interactions": [
                        {"request": {"method": "POST", "url": "u"}, "response": {"status": "200"}}
                    ],
                }
            ),
            r"interactions\[0\].response.status: expected an integer",
        ),
    ],
)
def test_bad_cassettes_name_file_and_field(tmp_path: Path, document: str, problem: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(document)
    with pytest.raises(CassetteError, match=problem) as caught:
        Cassette(path, "none")
    assert str(path) in str(caught.value)


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="record mode 'sometimes' is not one of none, once, new_episodes, all"
    ):
        Cassette(tmp_path / "c.json", "sometimes")


def test_file_is_indented_json_with_its_format(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.json"
    with use_cassette(path, "once"):
        Network(_fake()).anthropic().messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES)
    text = path.read_text()
    assert text.startswith('{\n  "format": "cert.cassette/1",\n  "interactions": [\n')
    assert text.endswith("}\n")
    assert not list(path.parent.glob(".*"))  # the temporary file was renamed into place


def test_uninstall_restores_the_clients(tmp_path: Path) -> None:
    originals = [(cls, cls.__dict__["_transport_for_url"]) for cls in (httpx2.Client, httpx2.AsyncClient)]
    with use_cassette(tmp_path / "c.json", "none"):
        assert httpx2.Client.__dict__["_transport_for_url"] is not originals[0][1]
    replay.uninstall()
    assert [(cls, cls.__dict__["_transport_for_url"]) for cls, _ in originals] == originals


def test_a_stream_left_open_is_saved_as_far_as_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with use_cassette(path, "once"):
        stream = (
            Network(_fake())
            .openai()
            .chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        )
        next(iter(stream))  # one chunk read; the stream is neither finished nor closed
    (item,) = json.loads(path.read_text())["interactions"]
    assert item["recorded"]["incomplete"] is True
    assert len(item["response"]["events"]) >= 1
    Cassette(path, "none")  # and the file loads
    stream.close()


def test_a_failed_request_is_not_recorded(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    fake = FakeLLM().add("/chat/completions", Reply(raises=httpx2.ConnectError("refused")))
    with use_cassette(path, "once") as cassette, pytest.raises(openai.APIConnectionError):
        Network(fake).openai(max_retries=0).chat.completions.create(model="m", messages=MESSAGES)
    assert (cassette.recorded, cassette.interactions) == (0, [])
    assert not path.exists()  # so the next "once" run records it


def test_multipart_upload_records_and_replays(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    transcript = {"text": "Paris is the capital of France."}
    fake = FakeLLM().add("/audio/transcriptions", Reply(transcript))
    audio = ("question.wav", b"RIFF\x00\x01fake-audio-bytes", "audio/wav")
    with use_cassette(path, "once"):
        live = Network(fake).openai().audio.transcriptions.create(model="whisper-1", file=audio)
    with use_cassette(path, "none") as cassette:  # a new random boundary: still a match
        again = Network(None).openai().audio.transcriptions.create(model="whisper-1", file=audio)
    assert again.text == live.text == transcript["text"]
    assert cassette.replayed == 1
    stored = json.loads(path.read_text())["interactions"][0]["request"]
    assert replay.MULTIPART_BOUNDARY in stored["headers"]["content-type"]


def test_more_secrets_never_reach_the_cassette(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    client_secret = "ek_0123456789abcdefABCDEF"
    fake = FakeLLM().add(
        "/realtime/client_secrets", Reply({"value": client_secret, "client_secret": {"value": client_secret}})
    )
    client = openai.OpenAI(
        api_key=OPENAI_KEY,
        base_url="https://ci-user:gateway-password-123@gateway.example/v1",
        http_client=httpx2.Client(transport=fake.transport()),
    )
    with use_cassette(
        path, "once", hosts=["gateway.example"], upstream="https://rec:upstream-pass-456@127.0.0.1:9"
    ):
        client.post(
            "/realtime/client_secrets",
            cast_to=object,
            body={"private_key": "-----BEGIN KEY-----abc", "access_key": "AKIA1234567890"},
            options={"params": {"subscription-key": "apim-key-7890abcdef"}},
        )
    text = path.read_text()
    for secret in (
        "gateway-password-123",
        "upstream-pass-456",
        "BEGIN KEY",
        "AKIA1234567890",
        "apim-key-7890abcdef",
        client_secret,
    ):
        assert secret not in text


def test_answers_are_not_scrubbed_by_field_name(tmp_path: Path) -> None:
    """A model's answer has fields named "token" (logprobs) and "signature" (thinking): kept."""
    path = tmp_path / "c.json"
    body = _azure_body()
    body["choices"][0]["logprobs"] = {
        "content": [{"token": "Paris", "logprob": -0.1, "bytes": None, "top_logprobs": []}]
    }
    headers = {"x-ratelimit-remaining-tokens": "149000", "x-multi": "a"}
    fake = FakeLLM().add("/chat/completions", Reply(body, headers=headers))
    with use_cassette(path, "once"):
        Network(fake).openai().chat.completions.create(model="m", messages=MESSAGES, logprobs=True)
    stored = json.loads(path.read_text())["interactions"][0]["response"]
    assert stored["body"]["choices"][0]["logprobs"]["content"][0]["token"] == "Paris"
    assert stored["headers"]["x-ratelimit-remaining-tokens"] == "149000"
    with use_cassette(path, "none"):
        raw = (
            Network(None)
            .openai()
            .chat.completions.with_raw_response.create(model="m", messages=MESSAGES, logprobs=True)
        )
    assert raw.headers["x-ratelimit-remaining-tokens"] == "149000"
    assert raw.parse().choices[0].logprobs.content[0].token == "Paris"  # type: ignore[union-attr, index]


def test_a_stream_that_broke_replays_the_break_and_a_complete_one_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with use_cassette(path, "once"):
        _chat_stream_text(
            Network(_fake())
            .openai()
            .chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        )
    assert "incomplete" not in json.loads(path.read_text())["interactions"][0]["recorded"]

    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    first = {**chunk, "choices": [{"index": 0, "delta": {"content": "Par"}, "finish_reason": None}]}

    class Broken(httpx2.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield f"data: {json.dumps(first)}\n\n".encode()
            raise httpx2.ReadError("connection reset")

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=Broken())

    cut = tmp_path / "cut.json"

    def read(transport: Any) -> str:
        client = openai.OpenAI(
            api_key=OPENAI_KEY, max_retries=0, http_client=httpx2.Client(transport=transport)
        )
        parts: list[str] = []

        def consume() -> None:
            for piece in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
                parts.append(piece.choices[0].delta.content or "")

        # The SDK turns the broken read into a connection error, live and replayed alike.
        with pytest.raises(openai.APIConnectionError):
            consume()
        return "".join(parts)

    with use_cassette(cut, "once"):
        assert read(httpx2.MockTransport(handler)) == "Par"
    item = json.loads(cut.read_text())["interactions"][0]
    assert item["recorded"]["incomplete"] is True
    assert item["response"]["error"] == {"type": "ReadError", "message": "connection reset"}
    with use_cassette(cut, "none"):
        assert read(Network(None).transport()) == "Par"


def test_an_undecodable_stream_is_kept_raw_and_replays(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    body = b"event: message_stop\ndata: {}\n\n"

    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream", "content-encoding": "x-custom"}
        return httpx2.Response(200, headers=headers, content=body)

    client = httpx2.Client(transport=httpx2.MockTransport(handler))
    url, headers = "https://api.anthropic.com/v1/messages", {"x-stainless-lang": "python"}
    with (
        use_cassette(path, "once"),
        client.stream("POST", url, json={"stream": True}, headers=headers) as response,
    ):
        live = b"".join(response.iter_raw())
    stored = json.loads(path.read_text())["interactions"][0]["response"]
    assert stored["headers"]["content-encoding"] == "x-custom"
    assert "base64" in stored["events"][0]
    offline = httpx2.Client(transport=Network(None).transport())
    with (
        use_cassette(path, "none"),
        offline.stream("POST", url, json={"stream": True}, headers=headers) as response,
    ):
        assert b"".join(response.iter_raw()) == live == body


def test_a_body_that_breaks_while_recording_leaves_a_loadable_cassette(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    attempts = []

    class Cut(httpx2.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b'{"id": "x",'
            raise httpx2.ReadError("reset")

    def handler(request: httpx2.Request) -> httpx2.Response:
        attempts.append(1)
        if len(attempts) == 1:
            return httpx2.Response(200, headers={"content-type": "application/json"}, stream=Cut())
        return httpx2.Response(200, json=_azure_body())

    client = openai.OpenAI(
        api_key=OPENAI_KEY, http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
    )
    with use_cassette(path, "once") as cassette:
        client.chat.completions.create(model="m", messages=MESSAGES)  # the SDK retries and succeeds
    assert (len(attempts), cassette.recorded) == (2, 1)
    assert len(Cassette(path, "none").interactions) == 1


def test_retries_replay_with_the_whole_calls_latency(instrumented: None, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    fake = FakeLLM().error("/chat/completions", 429, "slow down", **{"retry-after-ms": "50"})
    fake.openai_chat("ok")
    first, second = Recorded(), Recorded()
    with cert_core.recording(first), use_cassette(path, "once"):
        Network(fake).openai().chat.completions.create(model="m", messages=MESSAGES)
    with cert_core.recording(second), use_cassette(path, "none"):
        Network(None).openai().chat.completions.create(model="m", messages=MESSAGES)
    assert len(json.loads(path.read_text())["interactions"]) == 2
    (live,), (again,) = first.records, second.records
    assert live.duration_ms >= 50  # the wait before the retry is part of the call
    assert again.duration_ms == pytest.approx(live.duration_ms, abs=1e-3)


def test_miss_message_compares_what_is_matched(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    url, headers = "https://api.openai.com/v1/chat/completions", {"x-stainless-lang": "python"}
    with use_cassette(path, "once"):
        httpx2.Client(transport=FakeLLM().openai_chat("ok").transport()).post(
            url, json={"model": "gpt-4o-mini", "metadata": {"run_id": "run-1"}}, headers=headers
        )
    offline = httpx2.Client(transport=Network(None).transport())
    with use_cassette(path, "none", ignore=["metadata"]), pytest.raises(CassetteMiss) as caught:
        offline.post(url, json={"model": "gpt-4o", "metadata": {"run_id": "run-2"}}, headers=headers)
    assert "differs in body.model: recorded 'gpt-4o-mini', requested 'gpt-4o'" in str(caught.value)


def test_all_keeps_a_cassette_when_nothing_was_recorded(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with use_cassette(path, "once"):
        Network(_fake()).openai().chat.completions.create(model="m", messages=MESSAGES)
    before = path.read_text()
    with use_cassette(path, "all"):
        pass  # e.g. the test skipped itself before its first call
    assert path.read_text() == before


def test_cassette_files_are_readable_by_the_project(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with use_cassette(path, "once"):
        Network(_fake()).openai().chat.completions.create(model="m", messages=MESSAGES)
    assert path.stat().st_mode & 0o777 == 0o644
