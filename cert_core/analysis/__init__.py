"""Production trace analysis: costs, trends and anomalies (``cert costs``), and where the bill
could shrink (``cert optimize``).

Needs the ``analysis`` extra (DuckDB). See :func:`scan_traces`, :func:`cost_report` and
:func:`optimize`.
"""

from __future__ import annotations

from ._costs import BY, Anomaly, CostReport, CostRow, cost_report, parse_period
from ._optimize import CHEAPER, Recommendation, optimize, wilson_lower
from ._traces import AnalysisError, DailyGroup, LongPrompts, RepeatedPrompt, TraceScan, scan_traces

__all__ = [
    "BY",
    "CHEAPER",
    "AnalysisError",
    "Anomaly",
    "CostReport",
    "CostRow",
    "DailyGroup",
    "LongPrompts",
    "Recommendation",
    "RepeatedPrompt",
    "TraceScan",
    "cost_report",
    "optimize",
    "parse_period",
    "scan_traces",
    "wilson_lower",
]
