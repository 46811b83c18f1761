"""Production trace analysis: the scan (DuckDB, with the reader as the slow path), the cost report
and ``cert costs``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from cert_core import cli
from cert_core.analysis import AnalysisError, cost_report, parse_period, scan_traces

pytest.importorskip("duckdb")


def _llm(day: int, *, model: str = "gpt-4o-mini", cost: float | None = 0.01, **extra: Any) -> dict[str, Any]:
    stamp = f"2026-10-{day:02d}T12:00:00.000000Z"
    record: dict[str, Any] = {
        "schema": "cert.trace/1",
        "trace_id": "1" * 32,
        "span_id": f"{day:04x}{len(extra):04x}aaaaaaaa",
        "start_time": stamp,
        "end_time": stamp,
        "duration_ms": 100.0,
        "kind": "llm",
        "provider": "anthropic" if model.startswith("claude") else "openai",
        "operation": "chat",
        "request_model": model,
        "input": [{"role": "user", "content": "Hello?"}],
        "output": "Hi.",
        "usage": {"input_tokens": 100, "output_tokens": 10},
        "cost_usd": cost,
    }
    record.update(extra)
    return record


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _month(tmp_path: Path) -> Path:
    """Twenty days of calls; day 15 costs ten times more."""
    records = []
    for day in range(1, 21):
        records.append(_llm(day, cost=0.10 if day == 15 else 0.01))
        records.append(_llm(day, model="claude-sonnet-4-0", cost=0.02))
    return _write(tmp_path / "traces.jsonl", records)


def test_totals_breakdowns_and_anomaly(tmp_path: Path) -> None:
    report = cost_report(scan_traces(_month(tmp_path)), by="model", period_days=None)
    assert (report.total.calls, report.days, report.first_day, report.last_day) == (
        40,
        20,
        "2026-10-01",
        "2026-10-20",
    )
    assert report.total.cost_usd == pytest.approx(19 * 0.01 + 0.10 + 20 * 0.02)
    assert [(r.key, r.calls) for r in report.rows] == [("claude-sonnet-4-0", 20), ("gpt-4o-mini", 20)]
    assert report.rows[0].share == pytest.approx(0.4 / 0.69, abs=1e-6)
    assert report.total.input_tokens == 4000
    assert [(a.day, a.cost_usd) for a in report.anomalies] == [("2026-10-15", pytest.approx(0.12))]
    assert report.anomalies[0].expected_usd == pytest.approx(0.03)
    by_provider = cost_report(scan_traces(_month(tmp_path)), by="provider", period_days=None)
    assert {r.key: r.calls for r in by_provider.rows} == {"anthropic": 20, "openai": 20}
    by_day = cost_report(scan_traces(_month(tmp_path)), by="day", period_days=None)
    assert [r.key for r in by_day.rows] == [f"2026-10-{d:02d}" for d in range(1, 21)]


def test_period_ends_on_the_newest_day(tmp_path: Path) -> None:
    report = cost_report(scan_traces(_month(tmp_path)), period_days=7)
    assert (report.first_day, report.last_day, report.days, report.total.calls) == (
        "2026-10-14",
        "2026-10-20",
        7,
        14,
    )
    assert [a.day for a in report.anomalies] == ["2026-10-15"]
    assert cost_report(scan_traces(_month(tmp_path)), period_days=5).anomalies == []  # too few days
    assert parse_period("4w") == 28
    assert parse_period("all") is None
    with pytest.raises(ValueError, match="expected a number of days or weeks"):
        parse_period("30x")


def test_functions_come_from_the_parent_span_and_success_from_evaluations(tmp_path: Path) -> None:
    parent = {
        "schema": "cert.trace/1",
        "trace_id": "2" * 32,
        "span_id": "f" * 16,
        "start_time": "2026-10-01T12:00:00.000000Z",
        "end_time": "2026-10-01T12:00:01.000000Z",
        "duration_ms": 1000.0,
        "kind": "function",
        "function": "app.answer",
    }
    records = [
        parent,
        _llm(1, parent_span_id="f" * 16, evaluation={"confidence": 0.9, "threshold": 0.7, "passed": True}),
        _llm(1, parent_span_id="f" * 16, evaluation={"confidence": 0.5, "threshold": 0.7, "passed": False}),
        _llm(1, cost=None),  # unknown price, no parent
        _llm(1, error={"type": "RateLimitError", "message": "slow down", "status": 429}, cost=0.0),
    ]
    report = cost_report(scan_traces(_write(tmp_path / "t.jsonl", records)), by="function", period_days=None)
    rows = {r.key: r for r in report.rows}
    assert set(rows) == {"app.answer", "(none)"}
    answer = rows["app.answer"]
    assert (answer.calls, answer.evaluated, answer.passed) == (2, 2, 1)
    assert answer.cost_per_success_usd == pytest.approx(0.02)  # both evaluated calls, one success
    assert answer.mean_confidence == pytest.approx(0.7)
    assert (rows["(none)"].unpriced, rows["(none)"].errors) == (1, 1)


def test_gzip_legacy_and_directories(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    with gzip.open(folder / "a.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(_llm(2)) + "\n")
    legacy = {
        "timestamp": "2026-10-03T09:00:00",
        "platform": "openai",
        "model": "gpt-4o",
        "input_data": "Q",
        "output_data": "A",
        "cost": 0.5,
        "confidence": 0.8,
        "metadata": {"tokens": {"prompt": 10, "completion": 5}, "latency_ms": 250},
    }
    _write(folder / "production.jsonl", [legacy])
    scan = scan_traces(folder)
    assert [p.name for p in scan.converted] == ["production.jsonl"]
    report = cost_report(scan, period_days=None)
    assert {r.key: r.cost_usd for r in report.rows} == {"gpt-4o": 0.5, "gpt-4o-mini": 0.01}


def test_a_bad_line_is_named_or_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_llm(1)) + "\n{not json\n" + json.dumps(_llm(2)) + "\n")
    with pytest.raises(AnalysisError, match=rf"{path}:2: "):
        scan_traces(path)
    scan = scan_traces(path, strict=False)
    assert len(scan.skipped) == 1
    assert scan.skipped[0].startswith(f"{path}:2: ")
    assert cost_report(scan, period_days=None).total.calls == 2


def test_a_wrongly_typed_field_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [_llm(1), _llm(2, cost="twelve dollars")])
    with pytest.raises(AnalysisError, match=rf"{path}:2: cost_usd"):
        scan_traces(path)


def test_lines_that_are_not_trace_records_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [_llm(1), {**_llm(2), "schema": "cert.trace/9"}])
    with pytest.raises(AnalysisError, match=rf"{path}:2: schema"):
        scan_traces(path)


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="no such file or directory"):
        scan_traces(tmp_path / "absent.jsonl")


def test_cert_costs_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _month(tmp_path)
    assert cli.main(["costs", str(path), "--period", "all"]) == 0
    out = capsys.readouterr().out
    assert (
        "cert costs: 40 records in 1 file(s); 2026-10-01 to 2026-10-20 (20 day(s) with calls, period all)"
        in out
    )
    assert "claude-sonnet-4-0" in out
    assert "anomaly: 2026-10-15 cost $0.12, expected about $0.03" in out
    assert cli.main(["costs", str(path), "--json", "--by", "provider", "--period", "2w"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["by"] == "provider"
    assert data["period"] == {"first_day": "2026-10-07", "last_day": "2026-10-20", "days": 14}
    assert {r["key"] for r in data["rows"]} == {"openai", "anthropic"}


def test_cert_costs_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["costs", str(tmp_path / "absent.jsonl")]) == 2
    assert "cert costs: error:" in capsys.readouterr().err
    assert cli.main(["costs", str(_month(tmp_path)), "--period", "soon"]) == 2
