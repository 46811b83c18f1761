"""Production trace analysis: the scan (DuckDB, with the reader as the slow path), the cost report
and ``cert costs``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from cert_core import cli
from cert_core.analysis import AnalysisError, cost_report, optimize, parse_period, scan_traces, wilson_lower

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


def _optimizable(tmp_path: Path) -> Path:
    """An intent classifier on gpt-4o that always passes, a repeated prompt, one long prompt."""
    parent = {
        "schema": "cert.trace/1",
        "trace_id": "3" * 32,
        "span_id": "e" * 16,
        "start_time": "2026-10-01T00:00:00.000000Z",
        "end_time": "2026-10-01T00:00:01.000000Z",
        "duration_ms": 1000.0,
        "kind": "function",
        "function": "app.classify",
    }
    records: list[dict[str, Any]] = [parent]
    passed = {"confidence": 0.95, "threshold": 0.7, "passed": True}
    for i in range(40):
        records.append(
            _llm(
                1 + i % 20,
                model="gpt-4o",
                cost=0.0035,
                parent_span_id="e" * 16,
                evaluation=passed,
                input=[{"role": "user", "content": f"Classify ticket {i}"}],
                usage={"input_tokens": 1000, "output_tokens": 100},
            )
        )
    for day in range(1, 6):  # the very same input, five times
        records.append(_llm(day, input=[{"role": "user", "content": "What are your opening hours?"}]))
    for i in range(20):
        tokens = 50_000 if i == 0 else 1_000
        records.append(
            _llm(
                3, model="gpt-4o-mini", input=f"doc {i}", usage={"input_tokens": tokens, "output_tokens": 10}
            )
        )
    return _write(tmp_path / "t.jsonl", records)


def test_optimize_finds_downgrades_repeats_and_long_prompts(tmp_path: Path) -> None:
    scan = scan_traces(_optimizable(tmp_path), prompts=True)
    found = {r.kind: r for r in optimize(scan, period_days=None)}
    assert set(found) == {"model downgrade", "response cache", "long prompts"}
    down = found["model downgrade"]
    assert down.target == "app.classify on gpt-4o"
    assert down.evidence["cheaper_model"] == "gpt-4o-mini"
    assert down.evidence["pass_rate_wilson_lower_95"] == round(wilson_lower(40, 40), 4) == 0.9124
    # 40 calls x (1000 in, 100 out) on gpt-4o-mini ($0.15 / $0.60 per million tokens)
    assert down.evidence["cost_on_cheaper_model_usd"] == pytest.approx(40 * (1000 * 0.15 + 100 * 0.60) / 1e6)
    assert down.saving_usd == pytest.approx(40 * 0.0035 - 40 * (1000 * 0.15 + 100 * 0.60) / 1e6)
    cache = found["response cache"]
    assert cache.evidence["calls"] == 5
    assert cache.saving_usd == pytest.approx(4 * 0.01)
    assert "opening hours" in cache.target
    long = found["long prompts"]
    assert long.target == "gpt-4o-mini"
    assert long.evidence["long_calls"] == 1


def test_no_downgrade_without_enough_evidence(tmp_path: Path) -> None:
    scan = scan_traces(_optimizable(tmp_path), prompts=True)
    assert "model downgrade" not in {r.kind for r in optimize(scan, period_days=None, min_evaluated=41)}
    assert "model downgrade" not in {r.kind for r in optimize(scan, period_days=None, min_pass_rate=0.95)}
    assert wilson_lower(0, 0) == 0.0


def test_cert_optimize_text_json_and_roi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _optimizable(tmp_path)
    assert cli.main(["optimize", str(path), "--period", "all", "--value-per-success", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "[model downgrade] app.classify on gpt-4o: saves about" in out
    assert "Suggestions only: nothing is changed." in out
    assert "ROI: 40 successful tasks x $0.01 = $0.4 of value for $0.14 spent on them: ROI 185.7%" in out
    assert cli.main(["optimize", str(path), "--period", "all", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["kind"] for r in data["recommendations"]} == {
        "model downgrade",
        "response cache",
        "long prompts",
    }
    assert data["roi"] is None
