from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import pytest

import cert_core
from cert_core import TraceRecord, format_timestamp, new_span_id, new_trace_id

pytest_plugins = ["pytester"]

# The price cache of this test run (and of the processes it starts) stays out of the user's home.
os.environ["CERT_CACHE_DIR"] = tempfile.mkdtemp(prefix="cert-cache-")


def make_record(i: int = 0, **changes: Any) -> TraceRecord:
    """A valid LLM record; ``i`` varies its content."""
    start = 1_764_000_000_000_000_000 + i * 1_000_000
    fields: dict[str, Any] = {
        "schema": cert_core.SCHEMA,
        "trace_id": new_trace_id(),
        "span_id": new_span_id(),
        "start_time": format_timestamp(start),
        "end_time": format_timestamp(start + 250_000_000),
        "duration_ms": 250.0,
        "kind": "llm",
        "provider": "openai",
        "operation": "chat",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "input": [{"role": "user", "content": f"question {i}"}],
        "output": f"answer {i}",
        "usage": cert_core.Usage(input_tokens=10 + i, output_tokens=5),
        "cost_usd": 0.0000045,
        "price_source": "test",
        "metadata": {"i": i},
    }
    fields.update(changes)
    return TraceRecord(**fields)


@pytest.fixture
def record_factory() -> Callable[..., TraceRecord]:
    return make_record


@pytest.fixture(scope="session")
def trace_schema() -> dict[str, Any]:
    return json.loads(files("cert_core").joinpath("schemas/trace.schema.json").read_text(encoding="utf-8"))
