"""``cert evaluate``: production traces that carry a reference, scored as the gate scores answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import cert_core
from cert_core import cli
from cert_core.analysis._evaluate import evaluate_traces, skip_reason

pytest.importorskip("numpy")

CONTEXT = "The Helios 10 battery stores 10.2 kWh and carries a 10-year warranty."


def _record(i: int, output: Any, reference: Any, **extra: Any) -> dict[str, Any]:
    stamp = f"2026-10-01T10:00:{i:02d}.000000Z"
    record = {
        "schema": "cert.trace/1",
        "trace_id": "b" * 32,
        "span_id": f"{i + 1:016x}",
        "start_time": stamp,
        "end_time": stamp,
        "duration_ms": 200.0,
        "kind": "llm",
        "provider": "openai",
        "operation": "chat",
        "request_model": "gpt-4o-mini",
        "output": output,
        "usage": {"input_tokens": 50, "output_tokens": 12},
        "cost_usd": 0.00002,
    }
    if reference is not None:
        record["reference"] = reference
    record.update(extra)
    return record


def _traces(tmp_path: Path) -> Path:
    records = [
        _record(0, "The Helios 10 stores 10.2 kWh.", CONTEXT),
        _record(1, "The Helios 10 stores 25 kWh and was designed in Oslo.", CONTEXT),
        _record(2, "It carries a 10-year warranty.", [CONTEXT, "Support is open on weekdays."]),
        _record(3, "Hello.", None),
        _record(4, {"tool_calls": 1}, CONTEXT),
        _record(5, None, CONTEXT, error={"type": "APIError", "message": "boom"}),
    ]
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_evaluable_traces_are_measured_and_the_rest_say_why(tmp_path: Path) -> None:
    items = list(evaluate_traces(_traces(tmp_path), batch=2))
    assert len(items) == 6  # in file order, one per record
    measured = [i.measurement for i in items[:3]]
    assert [m.passed for m in measured] == [True, False, True]
    assert "25 kWh" in " ".join(measured[1].unsupported_terms) or "25" in " ".join(
        measured[1].unsupported_terms
    )
    assert [i.skipped for i in items[3:]] == [
        "no reference recorded",
        "no text output (hashed or not captured, or a tool call)",
        "the call failed",
    ]


def test_skip_reasons_for_other_records() -> None:
    record = cert_core.TraceRecord.from_dict(
        {
            "schema": "cert.trace/1",
            "trace_id": "c" * 32,
            "span_id": "d" * 16,
            "start_time": "2026-10-01T10:00:00.000000Z",
            "end_time": "2026-10-01T10:00:00.000000Z",
            "duration_ms": 1.0,
            "kind": "function",
            "function": "f",
        }
    )
    assert skip_reason(record) == "not an LLM call"


def test_cert_evaluate_summary_out_and_annotated_traces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, annotated = tmp_path / "eval.jsonl", tmp_path / "annotated.jsonl"
    code = cli.main(["evaluate", str(_traces(tmp_path)), "--out", str(out), "--annotate", str(annotated)])
    assert code == 0
    text = capsys.readouterr().out
    assert "cert evaluate: 6 records; 3 evaluated against their reference: 2 passed (66.7%" in text
    assert "not evaluated: 1 (no reference recorded)" in text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [("evaluation" in r, r.get("skipped")) for r in rows][:4] == [
        (True, None),
        (True, None),
        (True, None),
        (False, "no reference recorded"),
    ]
    records = list(cert_core.read_traces(annotated))
    assert [r.evaluation is not None for r in records] == [True, True, True, False, False, False]
    assert cert_core.verify_traces(annotated).exit_code == 0  # a new, intact chain
    assert cli.main(["evaluate", str(_traces(tmp_path)), "--json", "--threshold", "0.1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["evaluated"], summary["passed"], summary["threshold"]) == (3, 3, 0.1)


def test_threshold_calibrated_on_labelled_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labelled = tmp_path / "labelled.jsonl"
    rows = [
        {"answer": "The Helios 10 stores 10.2 kWh.", "reference": CONTEXT, "label": 1},
        {"answer": "It carries a 10-year warranty.", "reference": CONTEXT, "label": 1},
        {"answer": "The Helios 10 battery stores 10.2 kWh.", "reference": CONTEXT, "label": 1},
        {"answer": "The Helios 10 stores 99 kWh and costs $5.", "reference": CONTEXT, "label": 0},
        {"answer": "It was founded in Oslo by Maria Berg.", "reference": CONTEXT, "label": 0},
        {"answer": "The warranty lasts 50 years in Norway.", "reference": CONTEXT, "label": 0},
    ]
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = cli.main(["evaluate", str(_traces(tmp_path)), "--optimize-threshold", str(labelled), "--json"])
    assert code == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "Youden's J over 6 labelled pairs" in captured.err
    assert 0 < summary["threshold"] <= 1


def test_bad_lines_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _traces(tmp_path)
    path.write_text(path.read_text() + "{broken\n")
    assert cli.main(["evaluate", str(path)]) == 2
    assert f"{path}:7:" in capsys.readouterr().err
    assert cli.main(["evaluate", str(path), "--tolerant"]) == 0
    assert f"skipped: {path}:7:" in capsys.readouterr().err


def test_personal_data_in_outputs_is_counted_never_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "traces.jsonl"
    leak = "Your refund goes to IBAN GB82 WEST 1234 5698 7654 32; questions to ana@example.com."
    path.write_text(
        json.dumps(_record(0, leak, CONTEXT)) + "\n" + json.dumps(_record(1, "Fine.", CONTEXT)) + "\n"
    )
    out = tmp_path / "eval.jsonl"
    assert cli.main(["evaluate", str(path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert (
        "personal data in 1 output(s): iban 1, email 1" in text
        or "personal data in 1 output(s): email 1, iban 1" in text
    )
    assert "GB82" not in text
    assert "ana@example.com" not in text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["pii"] == {"iban": 1, "email": 1}
    assert "pii" not in rows[1]
    assert "GB82" not in out.read_text()
