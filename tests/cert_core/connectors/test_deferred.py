"""Records built after the call returns, in batches, for recorders that accept them later.

Trace writers (the default trace file included) declare ``cert_deferred = True``: an LLM call
hands them its raw facts and the record is built with others, by the thread that finishes the
64th waiting call, before any record made on the spot, by the trace files' background flusher,
by ``cert_core.flush_records()`` and at exit. Every other recorder gets its record before the
call returns, as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

import cert_core
from cert_core import _recording
from cert_core.connectors import _extract
from cert_core.testing import FakeLLM

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


class Later:
    """A recorder that accepts records built after the call (as a trace writer does)."""

    cert_deferred = True

    def __init__(self) -> None:
        self.records: list[cert_core.TraceRecord] = []

    def record(self, record: cert_core.TraceRecord) -> None:
        self.records.append(record)


class OnTheSpot:
    def __init__(self) -> None:
        self.records: list[cert_core.TraceRecord] = []

    def record(self, record: cert_core.TraceRecord) -> None:
        self.records.append(record)


def client(fake: FakeLLM) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=fake.transport()))


def ask(messages: list[dict[str, str]] = MESSAGES) -> str | None:
    response = client(FakeLLM().openai_chat("Paris.")).chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,  # type: ignore[arg-type]
    )
    return response.choices[0].message.content


@pytest.fixture
def quiet_flusher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records wait until the test builds them (the background flusher builds none meanwhile)."""
    cert_core.flush_records()  # none left over from other tests counts towards the limit
    monkeypatch.setattr(cert_core._store, "before_flush_hook", None)


def test_a_deferred_record_keeps_the_times_and_request_of_its_call(
    instrumented: None, quiet_flusher: None
) -> None:
    later = Later()
    messages = [dict(m) for m in MESSAGES]
    with cert_core.recording(later):
        started = time.time()
        client(FakeLLM().openai_chat("Paris.")).chat.completions.create(
            model="gpt-4o-mini", messages=messages
        )
        returned = time.time()
        assert later.records == []  # waiting to be built
        messages.append({"role": "assistant", "content": "Paris."})  # the caller goes on
        time.sleep(0.3)
    cert_core.flush_records()
    (record,) = later.records
    assert record.output == "Paris."
    assert record.input == MESSAGES  # as sent, not as the list is now
    assert record.cost_usd is not None
    assert record.cost_usd > 0
    # The call's own times, not those of the moment the record was built.
    assert started - 0.01 <= record.start.timestamp() <= returned
    assert record.end.timestamp() <= returned + 0.01
    assert record.duration_ms < 300


def test_other_recorders_get_the_record_before_the_call_returns(
    instrumented: None, quiet_flusher: None
) -> None:
    spot, later = OnTheSpot(), Later()
    with cert_core.recording(spot), cert_core.recording(later):
        client(FakeLLM().openai_chat("Paris.")).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        # One recorder that needs it now: the record is built now, for both.
        assert [r.output for r in spot.records] == ["Paris."]
        assert [r.output for r in later.records] == ["Paris."]


def test_records_of_earlier_calls_go_before_a_record_made_on_the_spot(
    instrumented: None, quiet_flusher: None
) -> None:
    later = Later()

    @cert_core.trace
    def ask() -> str:
        response = client(FakeLLM().openai_chat("Paris.")).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        return response.choices[0].message.content or ""

    with cert_core.recording(later):
        assert ask() == "Paris."
    kinds = [r.kind for r in later.records]
    assert kinds == ["llm", "function"]  # delivered in the order the calls finished
    llm, function = later.records
    assert llm.parent_span_id == function.span_id
    assert llm.trace_id == function.trace_id


def test_the_calls_waiting_are_built_at_the_limit(instrumented: None, quiet_flusher: None) -> None:
    later = Later()
    llm = client(FakeLLM().openai_chat("Paris."))
    with cert_core.recording(later):
        for _ in range(_recording.PENDING_LIMIT - 1):
            llm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert later.records == []
        llm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert len(later.records) == _recording.PENDING_LIMIT
    assert len({r.span_id for r in later.records}) == _recording.PENDING_LIMIT


def test_the_background_flusher_builds_waiting_records(instrumented: None) -> None:
    later = Later()
    with cert_core.recording(later):
        client(FakeLLM().openai_chat("Paris.")).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    deadline = time.monotonic() + 5
    while not later.records and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r.output for r in later.records] == ["Paris."]


def test_a_record_that_cannot_be_built_is_counted_and_the_others_arrive(
    instrumented: None, quiet_flusher: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = Later()
    llm = client(FakeLLM().openai_chat("Paris."))
    original = _extract.OpenAIChat.response
    calls = 0

    def sometimes_broken(self: Any, result: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("extractor bug")
        return original(self, result)

    monkeypatch.setattr(_extract.OpenAIChat, "response", sometimes_broken)
    before = cert_core.instrumentation_stats().errors
    with cert_core.recording(later):
        answers = [
            llm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content
            for _ in range(3)
        ]
    assert answers == ["Paris."] * 3  # the calls themselves were never affected
    cert_core.flush_records()
    assert len(later.records) == 2
    stats = cert_core.instrumentation_stats()
    assert stats.errors == before + 1
    assert "extractor bug" in (stats.last_error or "")


def test_a_deferred_stream_record_has_its_text_and_first_token_time(
    instrumented: None, quiet_flusher: None
) -> None:
    later = Later()
    fake = FakeLLM().openai_chat("Paris.")  # streamed as two pieces, with usage
    with cert_core.recording(later):
        stream = client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        early = client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        next(iter(early))
        early.close()
    assert text == "Paris."
    cert_core.flush_records()
    complete, closed = later.records
    assert complete.output == "Paris."
    assert complete.incomplete is None
    assert complete.ttft_ms is not None
    assert 0 < complete.ttft_ms <= complete.duration_ms
    assert closed.incomplete is True


def test_a_trace_writer_flush_writes_the_waiting_records(instrumented: None, tmp_path: Path) -> None:
    writer = cert_core.TraceWriter(tmp_path / "traces.jsonl")
    cert_core.add_recorder(writer)
    try:
        client(FakeLLM().openai_chat("Paris.")).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    finally:
        cert_core.remove_recorder(writer)
    writer.flush()  # builds the records still waiting, then writes
    (record,) = cert_core.read_traces(tmp_path / "traces.jsonl")
    assert record.output == "Paris."
    writer.close()


def test_records_still_waiting_at_exit_are_written(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        import httpx2, openai
        import cert_core
        from cert_core.testing import FakeLLM

        cert_core.configure(log_path=sys.argv[1])
        cert_core.instrument()
        transport = FakeLLM().openai_chat("Paris.").transport()
        client = openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=transport))
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "?"}])
        """
    )
    path = tmp_path / "traces.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env, timeout=120)
    records = list(cert_core.read_traces(path))
    assert [r.output for r in records] == ["Paris."] * 3
    report = cert_core.verify_traces(path)
    assert report.exit_code == 0
    assert report.chained == 3
