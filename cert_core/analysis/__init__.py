"""Production trace analysis: costs, trends and anomalies (``cert costs``), where the bill could
shrink (``cert optimize``), and the accuracy of traces that carry a reference (``cert evaluate``).

Needs the ``analysis`` extra (DuckDB). See :func:`scan_traces`, :func:`cost_report` and
:func:`optimize`.
"""

from __future__ import annotations

from ._costs import BY, Anomaly, CostReport, CostRow, cost_report, parse_period
from ._evaluate import Evaluated, evaluate_traces, skip_reason
from ._optimize import CHEAPER, Recommendation, optimize, wilson_lower
from ._traces import (
    AnalysisError,
    DailyGroup,
    LongPrompts,
    RepeatedPrompt,
    TraceScan,
    in_period,
    period_start,
    scan_traces,
)

__all__ = [
    "BY",
    "CHEAPER",
    "AnalysisError",
    "Anomaly",
    "CostReport",
    "CostRow",
    "DailyGroup",
    "Evaluated",
    "LongPrompts",
    "Recommendation",
    "RepeatedPrompt",
    "TraceScan",
    "cost_report",
    "evaluate_traces",
    "in_period",
    "optimize",
    "parse_period",
    "period_start",
    "scan_traces",
    "skip_reason",
    "wilson_lower",
]
