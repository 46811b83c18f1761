"""``cert evaluate``: score production traces that carry a reference, in batches, streaming.

A trace is evaluable when it is an LLM record whose ``output`` is text and whose ``reference``
(the retrieved context or a gold answer the app recorded) is text or a list of passages. Each one
is measured with :mod:`cert_core.measure` exactly as the test gate measures answers; the others
are counted with the reason they were skipped, never scored.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._records import TraceRecord
from .._store import TraceReadError, read_traces

__all__ = ["Evaluated", "evaluate_traces", "skip_reason"]


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """One trace and its measurement (``None`` when it could not be evaluated, with ``skipped``)."""

    record: TraceRecord
    measurement: Any  # cert_core.measure.Measurement | None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        r = self.record
        out: dict[str, Any] = {
            "trace_id": r.trace_id,
            "span_id": r.span_id,
            "start_time": r.start_time,
            "provider": r.provider,
            "model": r.request_model or r.response_model,
        }
        if self.measurement is None:
            out["skipped"] = self.skipped
            return out
        out["evaluation"] = self.measurement.to_dict()
        return out


def skip_reason(record: TraceRecord) -> str | None:
    """Why ``record`` cannot be evaluated (``None`` when it can)."""
    if record.kind != "llm":
        return "not an LLM call"
    if record.error is not None:
        return "the call failed"
    if not isinstance(record.output, str) or not record.output.strip():
        return "no text output (hashed or not captured, or a tool call)"
    reference = record.reference
    if reference is None or reference == "" or reference == []:
        return "no reference recorded"
    if not (
        isinstance(reference, str)
        or (isinstance(reference, list) and all(isinstance(p, str) for p in reference))
    ):
        return "reference is not text or a list of passages"
    return None


def evaluate_traces(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    threshold: float | None = None,
    preset: str | None = None,
    batch: int = 64,
    strict: bool = True,
    on_error: Callable[[TraceReadError], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[Evaluated]:
    """Every record of ``sources`` with its measurement (or why it has none), in file order.

    Reads one record at a time and measures ``batch`` evaluable records at once (embeddings are
    batched); ``progress(records_read, evaluated)`` is called after each batch.
    """
    from ..measure import default_measurer, resolve_preset

    chosen = resolve_preset(preset)
    measurer = default_measurer()
    pending: list[tuple[int, TraceRecord]] = []
    buffered: list[Evaluated | None] = []
    read = evaluated = 0

    def flush() -> Iterator[Evaluated]:
        nonlocal evaluated
        if pending:
            pairs = [
                (r.output, r.reference if isinstance(r.reference, str) else "\n\n".join(r.reference))
                for _, r in pending
            ]
            measurements = measurer.measure_many(pairs, threshold=threshold, preset=chosen)
            for (slot, record), m in zip(pending, measurements, strict=True):
                buffered[slot] = Evaluated(record, m)
            evaluated += len(pending)
            pending.clear()
        for item in buffered:
            assert item is not None
            yield item
        buffered.clear()
        if progress is not None:
            progress(read, evaluated)

    for record in read_traces(sources, strict=strict, on_error=on_error):
        read += 1
        reason = skip_reason(record)
        if reason is None:
            pending.append((len(buffered), record))
            buffered.append(None)
        else:
            buffered.append(Evaluated(record, None, reason))
        if len(pending) >= batch or len(buffered) >= 16 * batch:
            yield from flush()
    yield from flush()
