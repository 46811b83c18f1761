"""Production trace analysis: costs, trends and anomalies (``cert costs``).

Needs the ``analysis`` extra (DuckDB). See :func:`scan_traces` and :func:`cost_report`.
"""

from __future__ import annotations

from ._costs import BY, Anomaly, CostReport, CostRow, cost_report, parse_period
from ._traces import AnalysisError, DailyGroup, TraceScan, scan_traces

__all__ = [
    "BY",
    "AnalysisError",
    "Anomaly",
    "CostReport",
    "CostRow",
    "DailyGroup",
    "TraceScan",
    "cost_report",
    "parse_period",
    "scan_traces",
]
