"""Helpers for the plugin's pytester tests: an inner conftest with SDK clients on FakeLLM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# In-process pytester runs drop the modules an inner run imported; numpy and tokenizers refuse a
# second import in one process, so the outer process imports them first and they stay loaded.
pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
# onnx and onnxruntime (nanobind/pybind11) abort the process on such a second import.
for _module in ("onnx", "onnxruntime"):
    try:
        __import__(_module)
    except ImportError:  # the onnx extra is optional: the numpy backend runs without it
        pass
# Kept loaded for speed: each inner run would import the SDKs again otherwise.
pytest.importorskip("openai")
pytest.importorskip("anthropic")

# The inner projects' conftest: real SDK clients whose network is a FakeLLM transport.
INNER_CONFTEST = """
import httpx2, openai, anthropic, pytest
from cert_core.testing import FakeLLM

CONTEXT = "The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall."
GOOD = "The Eiffel Tower was completed in 1889."
BAD = "The Eiffel Tower was completed in 1925 by Gustave Flaubert."

@pytest.fixture
def fake():
    f = FakeLLM()
    f.openai_chat(GOOD, prompt_tokens=100, completion_tokens=20)
    f.anthropic(GOOD)
    return f

@pytest.fixture
def client(fake):
    return openai.OpenAI(api_key="sk-test-secret", http_client=httpx2.Client(transport=fake.transport()))

@pytest.fixture
def aclient(fake):
    http = httpx2.AsyncClient(transport=fake.transport())
    return openai.AsyncOpenAI(api_key="sk-test-secret", http_client=http)

@pytest.fixture
def claude(fake):
    return anthropic.Anthropic(api_key="sk-ant-secret", http_client=httpx2.Client(transport=fake.transport()))

def ask(client, model="gpt-4o-mini"):
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "When?"}])
    return r.choices[0].message.content
"""


@pytest.fixture(autouse=True)
def _no_github_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inner runs would append their summaries to this CI job's summary.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    # And in CI, an inner project's ini record mode would be lowered to "none".
    monkeypatch.delenv("CI", raising=False)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with the inner conftest (clients on FakeLLM)."""
    pytester.makeconftest(INNER_CONFTEST)
    return pytester


class Evidence:
    """Reads what an inner run left in its evidence folder."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester

    def path(self, name: str, folder: str = "cert-report") -> Path:
        return self.pytester.path / folder / name

    def results(self, folder: str = "cert-report") -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path("results.json", folder).read_text("utf-8"))
        return data

    def test(self, name: str, folder: str = "cert-report") -> dict[str, Any]:
        matches = [t for t in self.results(folder)["tests"] if t["nodeid"].endswith("::" + name)]
        assert len(matches) == 1, [t["nodeid"] for t in self.results(folder)["tests"]]
        return matches[0]


@pytest.fixture
def evidence(pytester: pytest.Pytester) -> Evidence:
    return Evidence(pytester)
