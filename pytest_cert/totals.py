"""``CallTotals``: what a set of trace records adds up to (calls, tokens, cost, latency)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cert_core import TraceRecord

__all__ = ["CallTotals"]


@dataclass
class CallTotals:
    """Sums over the LLM records among some records, in one pass.

    ``cost_usd`` is the known cost of real calls; replayed calls are counted apart, and a call
    whose price is unknown (not an error) is counted in ``unknown_price`` with its cost left out.
    """

    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unknown_price: int = 0
    first_unknown: TraceRecord | None = None
    replayed_calls: int = 0
    replayed_cost_usd: float = 0.0
    total_latency_ms: float = 0.0
    slowest: TraceRecord | None = None

    @classmethod
    def of(cls, records: Iterable[TraceRecord]) -> CallTotals:
        t = cls()
        for r in records:
            if r.kind != "llm":
                continue
            t.calls += 1
            if r.error is not None:
                t.errors += 1
            elif r.cost_usd is None:
                t.unknown_price += 1
                if t.first_unknown is None:
                    t.first_unknown = r
            if r.usage is not None:
                t.input_tokens += r.usage.input_tokens
                t.output_tokens += r.usage.output_tokens
            if r.replayed:
                t.replayed_calls += 1
                t.replayed_cost_usd += r.cost_usd or 0.0
            else:
                t.cost_usd += r.cost_usd or 0.0
            t.total_latency_ms += r.duration_ms
            if t.slowest is None or r.duration_ms > t.slowest.duration_ms:
                t.slowest = r
        return t

    @property
    def latency_ms(self) -> float | None:
        """Latency of the slowest call; ``None`` without calls."""
        return None if self.slowest is None else self.slowest.duration_ms
