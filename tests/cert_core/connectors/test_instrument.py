from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import anthropic._base_client
import httpx2
import openai
import openai._base_client
import pytest

import cert_core
from cert_core.connectors import _call, _extract
from cert_core.testing import FakeLLM
from tests.cert_core.connectors.conftest import Collected

MESSAGES = [{"role": "user", "content": "hi"}]
BASES = [openai._base_client, anthropic._base_client]


def originals() -> list[Any]:
    return [base.SyncAPIClient.__dict__["request"] for base in BASES] + [
        base.AsyncAPIClient.__dict__["request"] for base in BASES
    ]


def test_instrument_is_idempotent_and_uninstrument_restores_the_original_functions() -> None:
    before = originals()
    assert cert_core.instrument() == ["anthropic", "openai"]
    patched = originals()
    assert all(p is not b for p, b in zip(patched, before, strict=True))
    assert all(p.__wrapped__ is b for p, b in zip(patched, before, strict=True))
    assert cert_core.instrument() == ["anthropic", "openai"]
    assert originals() == patched  # nothing patched twice
    cert_core.uninstrument()
    assert all(a is b for a, b in zip(originals(), before, strict=True))
    assert cert_core.instrumented_providers() == []
    cert_core.uninstrument()  # a second call is harmless


def test_instrument_one_provider() -> None:
    try:
        assert cert_core.instrument(["openai"]) == ["openai"]
        assert anthropic._base_client.SyncAPIClient.__dict__["request"].__name__ == "request"
        assert not hasattr(anthropic._base_client.SyncAPIClient.__dict__["request"], "__cert_original__")
        assert hasattr(openai._base_client.SyncAPIClient.__dict__["request"], "__cert_original__")
    finally:
        cert_core.uninstrument()


def test_bad_arguments_are_refused_with_the_accepted_values() -> None:
    with pytest.raises(ValueError, match="unknown provider 'cohere'; known: openai, anthropic"):
        cert_core.instrument(["cohere"])
    with pytest.raises(ValueError, match="capture must be one of full, hashed, off; got 'some'"):
        cert_core.instrument(capture="some")
    assert cert_core.instrumented_providers() == []


def test_signature_is_kept_for_sdks_that_inspect_it() -> None:
    import inspect

    before = inspect.signature(openai._base_client.SyncAPIClient.request)
    cert_core.instrument()
    try:
        assert inspect.signature(openai._base_client.SyncAPIClient.request) == before
    finally:
        cert_core.uninstrument()


def test_a_failure_inside_instrumentation_never_reaches_the_caller(
    instrumented: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    trace_schema: dict[str, Any],
) -> None:
    def broken(self: Any, result: Any) -> Any:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(_extract.OpenAIChat, "response", broken)
    monkeypatch.setattr(_call, "_reported", False)
    before = cert_core.instrumentation_stats().errors
    client = openai.OpenAI(
        api_key="k", http_client=httpx2.Client(transport=FakeLLM().openai_chat("ok").transport())
    )
    collected = Collected(trace_schema)
    with caplog.at_level(logging.ERROR, logger="cert_core"), cert_core.recording(collected):
        for _ in range(3):
            response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert response.choices[0].message.content == "ok"
    stats = cert_core.instrumentation_stats()
    assert stats.errors == before + 3
    assert "extractor bug" in (stats.last_error or "")
    assert len([r for r in caplog.records if "extractor bug" in r.getMessage()]) == 1
    assert collected.records == []


def test_a_failure_while_observing_a_stream_keeps_the_stream_intact(
    instrumented: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, state: Any, items: Any) -> None:
        raise KeyError("chunk bug")

    monkeypatch.setattr(_extract.OpenAIChat, "stream_items", broken)
    client = openai.OpenAI(
        api_key="k", http_client=httpx2.Client(transport=FakeLLM().openai_chat("ok go").transport())
    )
    before = cert_core.instrumentation_stats().errors
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "ok go"
    cert_core.flush_records()  # the default trace file takes records built in batches
    assert cert_core.instrumentation_stats().errors > before


def test_import_cert_core_auto_instruments() -> None:
    code = (
        "import cert_core.auto, cert_core\n"
        "import openai._base_client as b\n"
        "print(cert_core.instrumented_providers(), hasattr(b.SyncAPIClient.request, '__cert_original__'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "['anthropic', 'openai'] True"


def test_a_stream_in_an_unknown_format_is_recorded_as_unpriced_and_reported(
    instrumented: None, trace_schema: dict[str, Any]
) -> None:
    from cert_core.testing import Reply, openai_chat_chunks

    reply = Reply(stream=openai_chat_chunks(), done=True, headers={"content-type": "application/x-unknown"})
    fake = FakeLLM().add("/chat/completions", reply)
    client = openai.OpenAI(api_key="k", http_client=httpx2.Client(transport=fake.transport()))
    before = cert_core.instrumentation_stats().errors
    collected = Collected(trace_schema)
    with cert_core.recording(collected):
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert chunks  # the caller's stream is untouched
    (record,) = collected.records
    assert record.usage is None
    assert record.cost_usd is None
    assert "not server-sent events" in (record.price_error or "")
    assert cert_core.instrumentation_stats().errors == before + 1


ON_IMPORT_SCRIPT = """
import sys
import cert_core
from cert_core.testing import FakeLLM

assert cert_core.instrument(on_import=True) == ["anthropic", "openai"]
assert "anthropic" not in sys.modules and "openai" not in sys.modules, "on_import must not import the SDKs"
import anthropic, httpx2
from anthropic import _base_client

assert hasattr(_base_client.SyncAPIClient.request, "__cert_original__"), "patched when imported"
fake = FakeLLM().anthropic("Paris.")
client = anthropic.Anthropic(api_key="sk-ant-test", http_client=httpx2.Client(transport=fake.transport()))
records = []

class Collect:
    def record(self, record):
        records.append(record)

with cert_core.recording(Collect()):
    client.messages.create(
        model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": "?"}]
    )
assert [r.provider for r in records] == ["anthropic"], records
cert_core.uninstrument()
assert not hasattr(_base_client.SyncAPIClient.request, "__cert_original__")
assert cert_core.instrumented_providers() == []
assert not any(type(f).__name__ == "_PatchOnImport" for f in sys.meta_path)
print("ok")
"""


def test_on_import_patches_an_sdk_when_the_application_imports_it() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", ON_IMPORT_SCRIPT], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_patch_that_fails_midway_leaves_the_sdk_untouched() -> None:
    import types

    import pytest

    from cert_core.connectors import _patch

    class SyncAPIClient:
        def request(self) -> None: ...

        def _process_response(self) -> None: ...

    class AsyncAPIClient:  # lacks _process_response: the third wrap fails
        async def request(self) -> None: ...

    base = types.SimpleNamespace(SyncAPIClient=SyncAPIClient, AsyncAPIClient=AsyncAPIClient)
    before = dict(SyncAPIClient.__dict__), dict(AsyncAPIClient.__dict__)
    with pytest.raises(KeyError):
        _patch("openai", base)
    assert (dict(SyncAPIClient.__dict__), dict(AsyncAPIClient.__dict__)) == before
