"""``cert costs``: what the LLM calls cost, broken down, over time, and where a day stands out."""

from __future__ import annotations

import dataclasses
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ._traces import DailyGroup, TraceScan, in_period

__all__ = ["BY", "Anomaly", "CostReport", "CostRow", "cost_report", "parse_period"]

BY = ("model", "function", "day", "provider")
#: A day is an anomaly when its cost is this many robust standard deviations above the median.
ANOMALY_Z = 3.5
_PERIOD = re.compile(r"^(\d+)([dw])$")


def parse_period(text: str) -> int | None:
    """Days in a period such as ``30d`` or ``4w``; ``all`` is ``None``."""
    if text == "all":
        return None
    match = _PERIOD.match(text.strip())
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"period {text!r}: expected a number of days or weeks such as 30d or 4w, or all")
    return int(match.group(1)) * (7 if match.group(2) == "w" else 1)


@dataclasses.dataclass(frozen=True)
class CostRow:
    """Totals of one group (a model, function, day or provider), or of everything."""

    key: str
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    share: float  # of the period's cost
    unpriced: int
    mean_latency_ms: float | None
    evaluated: int
    passed: int
    evaluated_cost_usd: float  # cost of the calls that carry an evaluation
    mean_confidence: float | None
    cost_per_success_usd: float | None  # cost of evaluated calls / calls that passed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Anomaly:
    """A day whose cost is far above the period's robust baseline."""

    day: str
    cost_usd: float
    expected_usd: float  # the median daily cost
    robust_z: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CostReport:
    by: str
    first_day: str | None
    last_day: str | None
    days: int
    total: CostRow
    rows: list[CostRow]
    daily: list[CostRow]
    anomalies: list[Anomaly]
    records: int
    skipped: list[str]
    converted: list[str]
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "period": {"first_day": self.first_day, "last_day": self.last_day, "days": self.days},
            "total": self.total.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
            "daily": [r.to_dict() for r in self.daily],
            "anomalies": [a.to_dict() for a in self.anomalies],
            "anomaly_rule": f"daily cost above median + {ANOMALY_Z} x 1.4826 x MAD of the period's days",
            "records": self.records,
            "skipped_lines": self.skipped,
            "converted_files": self.converted,
            "files": self.files,
        }


def _row(key: str, groups: Sequence[DailyGroup], period_cost: float) -> CostRow:
    calls = sum(g.calls for g in groups)
    cost = sum(g.cost_usd for g in groups)
    evaluated = sum(g.evaluated for g in groups)
    passed = sum(g.passed for g in groups)
    evaluated_cost = sum(g.evaluated_cost_usd for g in groups)
    return CostRow(
        key=key,
        calls=calls,
        errors=sum(g.errors for g in groups),
        input_tokens=sum(g.input_tokens for g in groups),
        output_tokens=sum(g.output_tokens for g in groups),
        cost_usd=round(cost, 8),
        share=round(cost / period_cost, 6) if period_cost > 0 else 0.0,
        unpriced=sum(g.unpriced for g in groups),
        mean_latency_ms=round(sum(g.latency_ms_sum for g in groups) / calls, 3) if calls else None,
        evaluated=evaluated,
        passed=passed,
        evaluated_cost_usd=round(evaluated_cost, 8),
        mean_confidence=round(sum(g.confidence_sum for g in groups) / evaluated, 6) if evaluated else None,
        cost_per_success_usd=round(evaluated_cost / passed, 8) if passed else None,
    )


def _anomalies(daily: Sequence[CostRow]) -> list[Anomaly]:
    if len(daily) < 7:  # too few days for a baseline
        return []
    costs = [d.cost_usd for d in daily]
    median = statistics.median(costs)
    mad = statistics.median(abs(c - median) for c in costs)
    scale = 1.4826 * mad
    if scale <= 0:
        scale = max(median * 0.05, 1e-9)  # a flat series: 5% of the median is already unusual
    found = []
    for d in daily:
        z = (d.cost_usd - median) / scale
        if z > ANOMALY_Z:
            found.append(Anomaly(d.key, d.cost_usd, round(median, 8), round(z, 2)))
    return found


def cost_report(scan: TraceScan, *, by: str = "model", period_days: int | None = 30) -> CostReport:
    """Totals, a breakdown, the daily trend and the anomalous days of a scan.

    The period ends on the newest day in the traces (not today: an export may be old) and goes
    back ``period_days`` days; ``None`` takes everything.
    """
    if by not in BY:
        raise ValueError(f"by {by!r}: expected one of {', '.join(BY)}")
    groups = in_period(scan.groups, period_days)
    period_cost = sum(g.cost_usd for g in groups)
    buckets: dict[str, list[DailyGroup]] = defaultdict(list)
    per_day: dict[str, list[DailyGroup]] = defaultdict(list)
    for g in groups:
        buckets[getattr(g, by)].append(g)
        per_day[g.day].append(g)
    rows = sorted((_row(k, v, period_cost) for k, v in buckets.items()), key=lambda r: (-r.cost_usd, r.key))
    if by == "day":
        rows.sort(key=lambda r: r.key)
    daily = [_row(day, per_day[day], period_cost) for day in sorted(per_day)]
    days = sorted(per_day)
    return CostReport(
        by=by,
        first_day=days[0] if days else None,
        last_day=days[-1] if days else None,
        days=len(days),
        total=_row("total", groups, period_cost),
        rows=rows,
        daily=daily,
        anomalies=_anomalies(daily),
        records=scan.records,
        skipped=scan.skipped,
        converted=[str(p) for p in scan.converted],
        files=[str(p) for p in scan.files],
    )
