"""The ``cert`` section of pytest's terminal summary."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cert_core._evidence import format_usd, robustness_line, security_line

if TYPE_CHECKING:
    from .session import CertSession

__all__ = ["github_annotations", "write_summary"]


def _row(t: dict[str, Any], width: int) -> str:
    measured = [m["confidence"] for m in t["measurements"] if m["confidence"] is not None]
    if t["statistical"]:
        s = t["statistical"]
        confidence = f"{s['passed']}/{s['n']}" if s["n"] else "n/m"
    else:
        confidence = f"{min(measured):.3f}" if measured else "-"
    verdict = {"passed": "pass", "failed": "FAIL", "not measured": "n/m", "no check": "-"}[t["verdict"]]
    if t["outcome"] == "xfailed":
        verdict = "xfail"  # a failure the test expected
    latency = "-" if t["latency_ms"] is None else f"{t['latency_ms']:.0f}ms"
    # Replayed calls show their recorded cost, marked "r" (not spent by this run).
    cost = format_usd(t["cost_usd"] + t["replayed_cost_usd"]) + ("r" if t["replayed_calls"] else "")
    threshold = "-" if t["threshold"] is None else f"{t['threshold']:.3f}"
    name = t["nodeid"] if len(t["nodeid"]) <= width else "..." + t["nodeid"][-(width - 3) :]
    return (
        f"{name:<{width}} {confidence:>6} {threshold:>6} {verdict:>5} {t['calls']:>5} "
        f"{t['input_tokens'] + t['output_tokens']:>8,} {cost:>11} {latency:>8}"
    )


def write_summary(cs: CertSession, tr: pytest.TerminalReporter) -> None:
    """Per-test rows (not under ``-q``), totals, violations, evidence location. Never raises into
    pytest: a rendering problem is reported as one line."""
    try:
        _write(cs, tr)
    except Exception as exc:  # the summary must never turn a run into an internal error
        tr.write_line(f"cert: could not print the summary: {type(exc).__name__}: {exc}", red=True)


def _write(cs: CertSession, tr: pytest.TerminalReporter) -> None:
    results = cs.results_doc
    if results is None:
        if cs.evidence_error:
            tr.write_line(f"cert: {cs.evidence_error}", red=True)
        return
    quiet = cs.config.get_verbosity() < 0
    tests, totals = results["tests"], results["totals"]
    tr.write_sep("-", "cert")
    if tests and not quiet:
        columns = cs.config.get_terminal_writer().fullwidth
        width = min(max(len(t["nodeid"]) for t in tests), max(20, columns - 60))
        tr.write_line(
            f"{'test':<{width}} {'conf':>6} {'thresh':>6} {'gate':>5} {'calls':>5} {'tokens':>8} "
            f"{'cost':>11} {'slowest':>8}"
        )
        for t in tests:
            tr.write_line(_row(t, width), red=t["verdict"] == "failed" and t["outcome"] != "xfailed")
    line = (
        f"{totals['tests']} test(s), {totals['calls']} call(s), "
        f"{totals['input_tokens'] + totals['output_tokens']:,} tokens, cost {format_usd(totals['cost_usd'])}"
    )
    if totals["replayed_calls"]:
        replayed = format_usd(totals["replayed_cost_usd"])
        line += f"; {totals['replayed_calls']} replayed call(s) ({replayed} recorded cost, not spent)"
        if cs.settings.budget is not None:
            both = format_usd(totals["cost_usd"] + totals["replayed_cost_usd"])
            line += f"; {both} of {format_usd(cs.settings.budget)} budget"
    elif cs.settings.budget is not None:
        line += f" of {format_usd(cs.settings.budget)} budget"
    if totals["unknown_price_calls"]:
        line += f"; {totals['unknown_price_calls']} call(s) with unknown price (not counted)"
    if totals["measurements"]:
        line += (
            f"; measurements: {totals['measurements_passed']} passed, "
            f"{totals['measurements_failed']} failed, "
            f"{totals['measurements_not_measured']} not measured"
        )
    tr.write_line(line)
    if not quiet:
        tr.write_line(robustness_line(totals) + "; " + security_line(totals))
    if results["config"]["instrumentation_errors"]:
        tr.write_line(
            f"cert: {results['config']['instrumentation_errors']} problem(s) inside the instrumentation were "
            "contained (the calls themselves were not affected); see the log",
            yellow=True,
        )
    for v in results["violations"]:
        tr.write_line(f"{v['where']} - {v['message'].splitlines()[0]}", red=True)
    if not quiet:
        for title, body in cs.summary_sections:
            tr.write_line(f"{title}:")
            for text in body.splitlines():
                tr.write_line(f"  {text}")
    for problem in cs.decode_errors:
        tr.write_line(f"cert: {problem}", red=True)
    if cs.evidence_error:
        tr.write_line(f"cert: {cs.evidence_error}", red=True)
    elif cs.evidence_dir is not None and not quiet:
        tr.write_line(f"evidence: {cs.evidence_dir}")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in github_annotations(results, cs.config.rootpath):
            tr.write_line(line)


def _escape(text: str, *, prop: bool = False) -> str:
    """GitHub workflow-command escaping (data, or a property value)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def github_annotations(results: Mapping[str, Any], rootdir: Path) -> list[str]:
    """``::error`` workflow commands for each failed cert check, pointing at its test.

    Paths are made relative to ``$GITHUB_WORKSPACE`` (the checkout), where GitHub looks for them,
    whatever folder pytest ran from. An expected failure (xfail) is not annotated.
    """
    workspace = Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())
    lines = []
    for t in results["tests"]:
        if t["outcome"] == "xfailed" or not t["violations"]:
            continue
        path = rootdir / t["file"]
        try:
            shown = path.resolve().relative_to(workspace.resolve()).as_posix()
        except ValueError:
            shown = t["file"]
        for v in t["violations"]:
            title = _escape(f"cert {v['kind']}: {t['nodeid']}", prop=True)
            where = f"file={_escape(shown, prop=True)},line={t['line']},title={title}"
            lines.append(f"::error {where}::{_escape(v['message'])}")
    for v in results["violations"]:
        lines.append(
            f"::error title={_escape('cert session ' + v['kind'], prop=True)}::{_escape(v['message'])}"
        )
    return lines
