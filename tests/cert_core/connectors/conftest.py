from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

import cert_core
from cert_core import TraceRecord


class Collected:
    """Records made while a test runs, each checked against the shipped JSON Schema."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.records: list[TraceRecord] = []
        self.schema = schema

    def record(self, record: TraceRecord) -> None:
        jsonschema.validate(record.to_dict(), self.schema)
        self.records.append(record)

    def one(self) -> TraceRecord:
        assert len(self.records) == 1, [r.operation for r in self.records]
        return self.records[0]


@pytest.fixture
def records(instrumented: None, trace_schema: dict[str, Any]) -> Iterator[Collected]:
    collected = Collected(trace_schema)
    before = cert_core.instrumentation_stats().errors
    with cert_core.recording(collected):
        yield collected
    assert cert_core.instrumentation_stats().errors == before, cert_core.instrumentation_stats().last_error
