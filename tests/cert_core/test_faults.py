"""Provider faults injected under the real ``openai`` and ``anthropic`` SDKs: what each SDK makes
of each fault (its exceptions, its retries and how long it sleeps), the log, the filters, nesting,
threads and tasks, restoring the clients, and stacking with replay cassettes.

A ``FakeLLM`` behind an ``httpx2.MockTransport`` stands in for the providers. Each client's
``_calculate_retry_timeout`` is wrapped to record the sleeps the SDK computes; tests of faults
that get no ``retry-after`` (timeouts, connection errors) also skip the sleep itself, which is the
SDK's exponential backoff (0.5 s and up).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from cert_core import faults, replay
from cert_core.faults import Fault, FaultKind, FaultLog, RequestRecord, inject_faults
from cert_core.replay import use_cassette
from cert_core.testing import FakeLLM

OPENAI_KEY = "sk-proj-0123456789abcdefghijklmnop"
ANTHROPIC_KEY = "sk-ant-api03-0123456789abcdefghijkl"
GPT = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-20250514"
ANSWER = "Paris is the capital of France."
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
CLIENT_CLASSES = (httpx2.Client, httpx2.AsyncClient, httpx.Client, httpx.AsyncClient)
FAST = 0.001  # retry-after in seconds: both SDKs then sleep a millisecond


def _layers(cls: type) -> list[Any]:
    """The chain of ``_transport_for_url`` functions of a client class, outermost first."""
    chain = []
    method: Any = cls.__dict__["_transport_for_url"]
    while method is not None:
        chain.append(method)
        method = getattr(method, "__wrapped__", None)
    return chain


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    before = {cls: cls.__dict__["_transport_for_url"] for cls in CLIENT_CLASSES}
    yield
    assert faults._active == []
    for cls in CLIENT_CLASSES:
        assert not [m for m in _layers(cls) if m.__module__ == "cert_core.faults"], cls
    if all(cls.__dict__["_transport_for_url"] is method for cls, method in before.items()):
        return
    assert replay.active_cassette() is None
    replay.uninstall()  # a cassette test leaves replay's layer on, as cassettes do


def _fake() -> FakeLLM:
    return FakeLLM().openai_chat(ANSWER, model=GPT).anthropic(ANSWER, model=CLAUDE)


@dataclass
class Call:
    """One LLM call the way an app makes it, through a client over a fake provider.

    ``delivered`` collects the text pieces the app received (before any error); ``sleeps`` the
    retry delays the SDK computed; with ``backoff=False`` those delays are not slept."""

    sdk: str
    is_async: bool = False
    stream: bool = False
    max_retries: int = 2
    module: str = "httpx2"
    backoff: bool = True
    fake: FakeLLM = field(default_factory=_fake)
    network: Any = None  # a transport to use instead of the fake provider's
    delivered: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def client(self) -> Any:
        mod = __import__(self.module)
        http = (mod.AsyncClient if self.is_async else mod.Client)(
            transport=self.network or self.fake.transport(self.module)
        )
        if self.sdk == "openai":
            cls: Any = openai.AsyncOpenAI if self.is_async else openai.OpenAI
            client = cls(api_key=OPENAI_KEY, http_client=http, max_retries=self.max_retries)
        else:
            cls = anthropic.AsyncAnthropic if self.is_async else anthropic.Anthropic
            client = cls(api_key=ANTHROPIC_KEY, http_client=http, max_retries=self.max_retries)
        compute = client._calculate_retry_timeout

        def calculate(*args: Any, **kwargs: Any) -> float:
            seconds: float = compute(*args, **kwargs)
            self.sleeps.append(seconds)
            return seconds if self.backoff else 0.0

        client._calculate_retry_timeout = calculate
        return client

    def __call__(self) -> str:
        client = self.client()
        if self.is_async:
            return asyncio.run(self._ask_async(client))
        return self._ask(client)

    def _request(self) -> dict[str, Any]:
        if self.sdk == "openai":
            return {"model": GPT, "messages": QUESTION, "stream": self.stream}
        return {"model": CLAUDE, "max_tokens": 64, "messages": QUESTION, "stream": self.stream}

    def _create(self, client: Any) -> Any:
        api = client.chat.completions if self.sdk == "openai" else client.messages
        return api.create(**self._request())

    def _text(self, answer: Any) -> str:
        return str(answer.choices[0].message.content if self.sdk == "openai" else answer.content[0].text)

    def _piece(self, event: Any) -> str | None:
        if self.sdk == "openai":
            return event.choices[0].delta.content if event.choices else None
        return event.delta.text if event.type == "content_block_delta" else None

    def _ask(self, client: Any) -> str:
        answer = self._create(client)
        if not self.stream:
            return self._text(answer)
        for event in answer:
            piece = self._piece(event)
            if piece:
                self.delivered.append(piece)
        return "".join(self.delivered)

    async def _ask_async(self, client: Any) -> str:
        answer = await self._create(client)
        if not self.stream:
            return self._text(answer)
        async for event in answer:
            piece = self._piece(event)
            if piece:
                self.delivered.append(piece)
        return "".join(self.delivered)


CALLS = [
    pytest.param(
        sdk, is_async, stream, id=f"{sdk}{' async' if is_async else ''}{' stream' if stream else ''}"
    )
    for sdk in ("openai", "anthropic")
    for is_async in (False, True)
    for stream in (False, True)
]
STREAMS = [p for p in CALLS if p.values[2]]
NOT_STREAMS = [p for p in CALLS if not p.values[2]]


def _statuses(log: FaultLog) -> list[tuple[int | None, str | None]]:
    return [(r.status, r.error) for r in log.requests]


# --------------------------------------------------------------------------- status faults


@pytest.mark.parametrize(("sdk", "is_async", "stream"), CALLS)
def test_status_faults_are_retried_by_the_sdk_and_it_succeeds_on_the_third_attempt(
    sdk: str, is_async: bool, stream: bool
) -> None:
    call = Call(sdk, is_async, stream, max_retries=2)
    with inject_faults([Fault.status(429, retry_after=FAST), Fault.status(500, retry_after=FAST)]) as log:
        assert call() == ANSWER

    assert _statuses(log) == [(429, None), (500, None), (200, None)]
    assert [r.attempt for r in log.requests] == [1, 2, 3]
    assert [r.fault for r in log.injected] == [
        Fault.status(429, retry_after=FAST),
        Fault.status(500, retry_after=FAST),
    ]
    assert len(log.passed_through) == 1
    assert len(call.fake.requests) == 1  # the faults never reached the provider
    assert call.sleeps == [FAST, FAST]  # retry-after-ms honoured
    assert log.unused == []
    assert log.recovered
    assert log.raised is None
    record = log.requests[0]
    assert (record.method, record.stream) == ("POST", stream)
    assert record.model == (GPT if sdk == "openai" else CLAUDE)
    assert record.provider == sdk


@pytest.mark.parametrize(
    ("sdk", "code", "error", "error_type"),
    [
        ("openai", 429, openai.RateLimitError, "requests"),
        ("openai", 500, openai.InternalServerError, "server_error"),
        ("openai", 503, openai.InternalServerError, "server_error"),
        ("openai", 529, openai.InternalServerError, "server_error"),
        ("anthropic", 429, anthropic.RateLimitError, "rate_limit_error"),
        ("anthropic", 500, anthropic.InternalServerError, "api_error"),
        ("anthropic", 503, anthropic.ServiceUnavailableError, "api_error"),
        ("anthropic", 529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_without_retries_the_caller_gets_the_sdks_status_error_unchanged(
    sdk: str, code: int, error: type[Exception], error_type: str
) -> None:
    call = Call(sdk, max_retries=0)
    with pytest.raises(error) as raised, inject_faults([Fault.status(code, retry_after=0)]) as log:
        call()

    exc: Any = raised.value
    assert exc.status_code == code
    assert exc.response.headers["retry-after"] == "0"
    assert exc.response.headers["retry-after-ms"] == "0"
    body = exc.body if sdk == "openai" else exc.body["error"]  # openai keeps the "error" object
    assert body["type"] == error_type
    assert "Injected by cert_core.faults" in body["message"]
    assert _statuses(log) == [(code, None)]
    assert log.raised == f"{sdk}.{error.__name__}"
    assert not log.recovered
    assert call.fake.requests == []


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_retry_after_zero_leaves_the_wait_to_the_sdks_backoff(sdk: str) -> None:
    call = Call(sdk, max_retries=2, backoff=False)
    with inject_faults([Fault.status(429, retry_after=0), Fault.status(503)]) as log:
        assert call() == ANSWER

    assert _statuses(log) == [(429, None), (503, None), (200, None)]
    # 0.5 s, then 1 s, each less up to 25 % jitter: what the SDK sleeps without a usable header
    assert 0.375 <= call.sleeps[0] <= 0.5
    assert 0.75 <= call.sleeps[1] <= 1.0


# --------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize(("sdk", "is_async", "stream"), CALLS)
def test_a_timeout_surfaces_as_the_sdks_api_timeout_error_after_its_retries(
    sdk: str, is_async: bool, stream: bool
) -> None:
    call = Call(sdk, is_async, stream, max_retries=2, backoff=False)
    error = openai.APITimeoutError if sdk == "openai" else anthropic.APITimeoutError
    with pytest.raises(error) as raised, inject_faults([Fault.timeout()] * 3) as log:
        call()

    assert isinstance(raised.value.__cause__, httpx2.ReadTimeout)
    assert "injected by cert_core.faults" in str(raised.value.__cause__)
    assert _statuses(log) == [(None, "httpx2.ReadTimeout")] * 3
    assert [r.attempt for r in log.requests] == [1, 2, 3]
    assert len(call.sleeps) == 2  # two retries, at the SDK's backoff
    assert call.fake.requests == []
    assert log.raised == f"{sdk}.APITimeoutError"


def test_a_timeout_then_success() -> None:
    call = Call("anthropic", max_retries=1, backoff=False)
    with inject_faults([Fault.timeout()]) as log:
        assert call() == ANSWER
    assert _statuses(log) == [(None, "httpx2.ReadTimeout"), (200, None)]
    assert log.recovered


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_classic_httpx_clients_get_classic_httpx_exceptions(is_async: bool) -> None:
    call = Call("openai", is_async, max_retries=0, module="httpx")
    with pytest.raises(openai.APITimeoutError) as raised, inject_faults([Fault.timeout()]) as log:
        call()
    assert isinstance(raised.value.__cause__, httpx.ReadTimeout)
    assert _statuses(log) == [(None, "httpx.ReadTimeout")]

    call = Call("openai", is_async, stream=True, module="httpx")
    with pytest.raises(openai.APIConnectionError) as cut, inject_faults([Fault.interrupted_stream(2)]) as log:
        call()
    assert isinstance(cut.value.__cause__, httpx.ReadError)
    assert call.delivered == ["part 1 "]
    assert _statuses(log) == [(200, "httpx.ReadError")]


# --------------------------------------------------------------------------- bodies that do not parse


@pytest.mark.parametrize(
    "fault", [Fault.malformed_json(), Fault.truncated_json()], ids=lambda f: f.kind.value
)
@pytest.mark.parametrize(("sdk", "is_async", "stream"), CALLS)
def test_a_body_that_does_not_parse_raises_json_decode_error_and_is_not_retried(
    sdk: str, is_async: bool, stream: bool, fault: Fault
) -> None:
    # Neither SDK wraps it: the json module's error reaches the app (from the first event of a
    # stream), after one request: a 200 is never retried.
    call = Call(sdk, is_async, stream, max_retries=2)
    with pytest.raises(json.JSONDecodeError) as raised, inject_faults([fault]) as log:
        call()

    if fault.kind is FaultKind.TRUNCATED_JSON:
        assert raised.value.msg.startswith("Unterminated string")
    else:
        assert raised.value.msg == "Expecting value"
    assert _statuses(log) == [(200, None)]
    assert call.delivered == []
    assert call.sleeps == []
    assert log.raised == "json.JSONDecodeError"


# --------------------------------------------------------------------------- interrupted streams


@pytest.mark.parametrize(("sdk", "is_async", "stream"), STREAMS)
def test_an_interrupted_stream_raises_mid_iteration_after_the_first_chunks(
    sdk: str, is_async: bool, stream: bool
) -> None:
    # OpenAI wraps the cut in APIConnectionError; Anthropic lets the HTTP library's ReadError
    # through. Neither retries: the SDK had handed the stream over already.
    call = Call(sdk, is_async, stream, max_retries=2)
    error = openai.APIConnectionError if sdk == "openai" else httpx2.ReadError
    opening = 1 if sdk == "openai" else 2  # the role chunk; message_start, content_block_start
    with pytest.raises(error) as raised, inject_faults([Fault.interrupted_stream(opening + 2)]) as log:
        call()

    assert call.delivered == ["part 1 ", "part 2 "]
    cut = raised.value.__cause__ if sdk == "openai" else raised.value
    assert isinstance(cut, httpx2.ReadError)
    assert "Connection reset by peer" in str(cut)
    assert _statuses(log) == [(200, "httpx2.ReadError")]
    assert call.fake.requests == []
    assert call.sleeps == []


@pytest.mark.parametrize(("sdk", "is_async", "stream"), STREAMS)
def test_an_interrupted_stream_of_the_real_answer_delivers_its_first_events(
    sdk: str, is_async: bool, stream: bool
) -> None:
    call = Call(sdk, is_async, stream)
    events = 2 if sdk == "openai" else 3  # up to the first half of the answer
    error = openai.APIConnectionError if sdk == "openai" else httpx2.ReadError
    with pytest.raises(error), inject_faults([Fault.interrupted_stream(events, upstream=True)]) as log:
        call()

    assert call.delivered == [ANSWER[: len(ANSWER) // 2]]
    assert len(call.fake.requests) == 1  # the request went on; its answer was cut
    assert log.injected[0].fault == Fault.interrupted_stream(events, upstream=True)
    assert _statuses(log) == [(200, "httpx2.ReadError")]


@pytest.mark.parametrize(("sdk", "is_async", "stream"), NOT_STREAMS)
def test_a_body_cut_mid_read_is_a_connection_error_the_sdk_retries(
    sdk: str, is_async: bool, stream: bool
) -> None:
    call = Call(sdk, is_async, stream, max_retries=2, backoff=False)
    error = openai.APIConnectionError if sdk == "openai" else anthropic.APIConnectionError
    with pytest.raises(error) as raised, inject_faults([Fault.interrupted_stream()] * 3) as log:
        call()
    assert isinstance(raised.value.__cause__, httpx2.ReadError)
    assert _statuses(log) == [(200, "httpx2.ReadError")] * 3
    assert len(call.sleeps) == 2

    call = Call(sdk, is_async, stream, max_retries=1, backoff=False)
    with inject_faults([Fault.interrupted_stream(upstream=True)]) as log:
        assert call() == ANSWER
    assert _statuses(log) == [(200, "httpx2.ReadError"), (200, None)]
    assert len(call.fake.requests) == 2


# --------------------------------------------------------------------------- choosing requests


def test_providers_and_models_narrow_the_requests_that_get_faults() -> None:
    gpt, claude = Call("openai", max_retries=0), Call("anthropic", max_retries=0)
    with inject_faults([Fault.status(500)], providers=["anthropic"]) as log:
        assert gpt() == ANSWER
        with pytest.raises(anthropic.InternalServerError):
            claude()
    assert [(r.provider, r.fault) for r in log.requests] == [
        ("openai", None),
        ("anthropic", Fault.status(500)),
    ]

    with inject_faults([Fault.status(500)], models=["gpt-4o*"]) as log:
        assert claude() == ANSWER
        with pytest.raises(openai.InternalServerError):
            gpt()
    assert [(r.model, r.status) for r in log.requests] == [(CLAUDE, 200), (GPT, 500)]

    with inject_faults([Fault.status(500)], providers=["api.openai.com"], models=["claude-*"]) as log:
        assert gpt() == ANSWER
        assert claude() == ANSWER
    assert log.injected == []
    assert log.unused == [Fault.status(500)]


def test_repeat_cycles_through_the_faults() -> None:
    call = Call("openai", max_retries=3)
    cycle = [Fault.status(503, retry_after=FAST), Fault.status(429, retry_after=FAST)]
    with pytest.raises(openai.RateLimitError), inject_faults(cycle, repeat=True) as log:
        call()
    assert _statuses(log) == [(503, None), (429, None), (503, None), (429, None)]
    assert log.unused == []
    assert log.to_dict()["repeat"] is True


def test_unused_faults_are_reported() -> None:
    call = Call("anthropic", max_retries=0)
    planned = [Fault.status(529, retry_after=0), Fault.timeout(), Fault.malformed_json()]
    with pytest.raises(anthropic.OverloadedError), inject_faults(planned) as log:
        call()
    assert log.unused == planned[1:]
    summary = log.to_dict()
    assert summary["unused"] == [{"kind": "timeout"}, {"kind": "malformed_json"}]
    assert summary["planned"][0] == {"kind": "status", "code": 529, "retry_after": 0}


def test_requests_other_than_the_sdks_pass_untouched() -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200, json={"ok": True})

    with (
        inject_faults([Fault.status(500)]) as log,
        httpx2.Client(transport=httpx2.MockTransport(handler)) as http,
    ):
        assert http.get("https://api.openai.com/v1/models").json() == {"ok": True}
    assert seen == ["https://api.openai.com/v1/models"]
    assert log.requests == []
    assert log.unused == [Fault.status(500)]


# --------------------------------------------------------------------------- the log


def test_the_summary_is_json_and_holds_no_secret() -> None:
    secret = "query-secret-0123456789"
    client = openai.OpenAI(
        api_key=OPENAI_KEY,
        base_url="https://user:hunter2-password@gateway.example.com/v1",
        default_query={"api_key": secret, "api-version": "2024-10-21"},
        http_client=httpx2.Client(transport=_fake().transport()),
        max_retries=1,
    )
    with inject_faults([Fault.status(429, retry_after=FAST)]) as log:
        client.chat.completions.create(model=GPT, messages=QUESTION)  # type: ignore[arg-type]

    text = json.dumps(log.to_dict())
    for leaked in (OPENAI_KEY, secret, "hunter2", "Bearer", "authorization"):
        assert leaked not in text
    url = log.requests[0].url
    assert url.startswith("https://<scrubbed>@gateway.example.com/v1/chat/completions?")
    assert "api-version=2024-10-21" in url
    summary = json.loads(text)
    assert summary["requests_seen"] == 2
    assert [r["fault"] for r in summary["injected"]] == [{"kind": "status", "code": 429, "retry_after": FAST}]
    assert [r["status"] for r in summary["passed_through"]] == [200]
    assert summary["recovered"] is True
    assert set(summary["injected"][0]) == set(RequestRecord.__dataclass_fields__)


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match=r"code 200 is not an HTTP error status"):
        Fault.status(200)
    with pytest.raises(ValueError, match=r"retry_after -1 is not a number of seconds"):
        Fault.status(429, retry_after=-1)
    with pytest.raises(ValueError, match=r"after_events -1"):
        Fault.interrupted_stream(-1)
    with pytest.raises(ValueError, match=r"code and retry_after belong to status faults"):
        Fault(FaultKind.TIMEOUT, code=500)
    with pytest.raises(ValueError, match=r"repeat=True needs at least one fault"):
        FaultLog([], repeat=True)
    with pytest.raises(TypeError, match=r"is not a Fault"):
        FaultLog(["timeout"])  # type: ignore[list-item]
    assert Fault("status", code=503) == Fault.status(503)  # type: ignore[arg-type]
    assert faults.__all__ == ["Fault", "FaultKind", "FaultLog", "RequestRecord", "inject_faults"]


# --------------------------------------------------------------------------- patching and restoring


def test_the_clients_are_restored_after_the_block_even_when_it_raises() -> None:
    replay.uninstall()
    originals = {cls: cls.__dict__["_transport_for_url"] for cls in CLIENT_CLASSES}
    call = Call("openai", max_retries=0)
    with inject_faults([Fault.status(429)]):
        assert all(cls.__dict__["_transport_for_url"] is not originals[cls] for cls in CLIENT_CLASSES)
        with pytest.raises(ZeroDivisionError), inject_faults([Fault.status(429)]) as inner:
            call.delivered.append(str(1 / 0))
        with pytest.raises(openai.RateLimitError):
            call()
    assert all(cls.__dict__["_transport_for_url"] is originals[cls] for cls in CLIENT_CLASSES)
    assert inner.raised == "builtins.ZeroDivisionError"
    assert inner.requests == []
    assert call() == ANSWER  # no fault left behind


def test_nested_and_overlapping_blocks() -> None:
    call = Call("openai", max_retries=0)
    outer = inject_faults([Fault.status(500), Fault.status(503)])
    outer_log = outer.__enter__()
    with inject_faults([Fault.status(429)]) as inner_log:
        with pytest.raises(openai.RateLimitError):  # the innermost block injects first
            call()
        with pytest.raises(openai.InternalServerError) as raised:  # then the outer one
            call()
        assert raised.value.status_code == 500
    outer.__exit__(None, None, None)
    assert [r.fault for r in inner_log.requests] == [Fault.status(429), None]
    assert [r.status for r in inner_log.requests] == [429, 500]
    assert [r.fault for r in outer_log.requests] == [None, Fault.status(500)]
    assert outer_log.unused == [Fault.status(503)]

    # overlapping: the first block ends while the second is still in force
    first = inject_faults([Fault.status(500)])
    first.__enter__()
    second = inject_faults([Fault.status(429), Fault.status(503)])
    second_log = second.__enter__()
    first.__exit__(None, None, None)
    with pytest.raises(openai.RateLimitError):
        call()
    second.__exit__(None, None, None)
    assert [r.fault for r in second_log.injected] == [Fault.status(429)]
    assert call() == ANSWER


def test_threads_and_tasks_share_the_faults_one_each() -> None:
    answers: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            answers.append(Call("openai", max_retries=0)())
        except openai.InternalServerError as exc:
            errors.append(exc)

    with inject_faults([Fault.status(500)] * 4) as log:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert (len(answers), len(errors)) == (4, 4)
    assert sorted(r.index for r in log.requests) == list(range(8))
    assert len(log.injected) == 4

    async def ask_all() -> list[Any]:
        fake = _fake()
        client = anthropic.AsyncAnthropic(
            api_key=ANTHROPIC_KEY, http_client=httpx2.AsyncClient(transport=fake.transport()), max_retries=0
        )
        asks = [client.messages.create(model=CLAUDE, max_tokens=8, messages=QUESTION) for _ in range(6)]  # type: ignore[arg-type]
        return await asyncio.gather(*asks, return_exceptions=True)

    with inject_faults([Fault.status(529), Fault.timeout()]) as log:
        results = asyncio.run(ask_all())
    kinds = sorted(type(r).__name__ for r in results)
    assert kinds == ["APITimeoutError", "Message", "Message", "Message", "Message", "OverloadedError"]
    assert len(log.requests) == 6
    assert log.unused == []


# --------------------------------------------------------------------------- with replay cassettes


def _tripwire(module: str = "httpx2") -> Any:
    """A transport that fails the test when a request reaches it (replay must answer)."""
    mod = __import__(module)

    def handler(request: Any) -> Any:
        raise AssertionError(f"the network was called: {request.url}")

    return mod.MockTransport(handler)


@pytest.mark.parametrize("first", ["faults", "cassette"])
def test_faults_come_before_the_cassette_whichever_block_is_entered_first(tmp_path: Path, first: str) -> None:
    path = tmp_path / "c.json"

    def both(mode: str, planned: list[Fault]) -> tuple[ExitStack, FaultLog, replay.Cassette]:
        stack = ExitStack()
        blocks = [("faults", inject_faults(planned)), ("cassette", use_cassette(path, mode))]
        entered = {
            name: stack.enter_context(block) for name, block in sorted(blocks, key=lambda b: b[0] != first)
        }
        log, cassette = entered["faults"], entered["cassette"]
        assert isinstance(log, FaultLog)
        assert isinstance(cassette, replay.Cassette)
        return stack, log, cassette

    call = Call("openai", max_retries=1)
    stack, log, cassette = both("once", [Fault.status(429, retry_after=FAST)])
    with stack:
        assert call() == ANSWER
    assert _statuses(log) == [(429, None), (200, None)]
    assert cassette.recorded == 1
    interactions = json.loads(path.read_text())["interactions"]
    assert [i["response"]["status"] for i in interactions] == [200]  # the fault was not recorded

    call = Call("openai", max_retries=1, network=_tripwire())
    stack, log, cassette = both("none", [Fault.status(500, retry_after=FAST)])
    with stack:
        assert call() == ANSWER
    assert _statuses(log) == [(500, None), (200, None)]
    assert cassette.replayed == 1


def test_an_interrupted_stream_of_the_real_answer_is_recorded_whole(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    cut = Fault.interrupted_stream(2, upstream=True)
    recording = Call("openai", stream=True)
    with use_cassette(path, "once"), inject_faults([cut]), pytest.raises(openai.APIConnectionError):
        recording()
    stored = json.loads(path.read_text())["interactions"][0]
    assert stored["response"]["events"][-1]["data"] == "data: [DONE]\n\n"
    assert "incomplete" not in stored["recorded"]

    replaying = Call("openai", stream=True, network=_tripwire())
    with use_cassette(path, "none"), inject_faults([cut]), pytest.raises(openai.APIConnectionError):
        replaying()
    assert replaying.delivered == recording.delivered == [ANSWER[: len(ANSWER) // 2]]
    with use_cassette(path, "none"):
        assert Call("openai", stream=True, network=_tripwire())() == ANSWER


def test_the_cassette_layer_put_under_the_faults_goes_with_them(tmp_path: Path) -> None:
    replay.uninstall()
    original = httpx2.Client.__dict__["_transport_for_url"]
    with inject_faults([]):
        layers = _layers(httpx2.Client)
        assert [m.__module__ for m in layers] == ["cert_core.faults", "cert_core.replay", original.__module__]
    assert httpx2.Client.__dict__["_transport_for_url"] is original

    # overlapping: the cassette outlives the faults, so its layer stays (as it would without them)
    path = tmp_path / "c.json"
    faults_block = inject_faults([Fault.status(429, retry_after=FAST)])
    log = faults_block.__enter__()
    cassette_block = use_cassette(path, "once")
    cassette = cassette_block.__enter__()
    call = Call("anthropic", max_retries=1)
    assert call() == ANSWER
    faults_block.__exit__(None, None, None)
    assert _layers(httpx2.Client)[0].__module__ == "cert_core.replay"
    assert call() == ANSWER  # recorded: the cassette still works
    cassette_block.__exit__(None, None, None)
    assert _statuses(log) == [(429, None), (200, None)]
    assert cassette.recorded == 2
