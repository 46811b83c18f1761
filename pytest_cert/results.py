"""The session's results document (``results.json``), its session-level checks, and the evidence
folder written from them (controller only)."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .gate import Violation
from .totals import CallTotals

if TYPE_CHECKING:
    from .session import CertSession

__all__ = ["build_results", "session_violations", "totals", "write_session_evidence"]


def session_violations(cs: CertSession) -> list[Violation]:
    """Checks over the whole run: the session budget, and (strict) calls outside tests with an
    unknown price. Per-test violations failed their tests already."""
    found = []
    budget = cs.settings.budget
    outside = CallTotals.of(cs.session_records)
    # Live spend plus replayed calls at their recorded cost: the suite's cost, whether or not
    # this run paid it.
    spent = sum(t["cost_usd"] + t["replayed_cost_usd"] for t in cs.results)
    spent += outside.cost_usd + outside.replayed_cost_usd
    if budget is not None and spent > budget:
        replayed = sum(t["replayed_cost_usd"] for t in cs.results) + outside.replayed_cost_usd
        note = f", {replayed:.6f} USD of it replayed at recorded cost" if replayed else ""
        found.append(
            Violation(
                "budget",
                f"cost {spent:.6f} USD > session budget {budget:.6f} USD "
                f"({cs.settings.sources['budget']}){note}",
            )
        )
    first = outside.first_unknown
    if cs.settings.strict and first is not None:
        found.append(
            Violation(
                "unknown_price",
                f"{outside.unknown_price} call(s) outside tests with unknown price, e.g. "
                f"{first.provider}/{first.request_model} (--cert-strict)",
            )
        )
    return found


def totals(tests: list[dict[str, Any]], session_records: list[Any]) -> dict[str, Any]:
    """Sums over the tests and the calls made outside any test (equal with and without xdist)."""
    outside = CallTotals.of(session_records)
    measurements = [m for t in tests for m in t["measurements"]]
    # An xfailed test's failed check was expected: counted apart.
    verdicts = ["xfailed" if t["outcome"] == "xfailed" else t["verdict"] for t in tests]
    return {
        "tests": len(tests),
        "verdicts": {
            v: verdicts.count(v) for v in ("passed", "failed", "not measured", "no check", "xfailed")
        },
        "calls": sum(t["calls"] for t in tests) + outside.calls,
        "errors": sum(t["errors"] for t in tests) + outside.errors,
        "input_tokens": sum(t["input_tokens"] for t in tests) + outside.input_tokens,
        "output_tokens": sum(t["output_tokens"] for t in tests) + outside.output_tokens,
        "cost_usd": round(sum(t["cost_usd"] for t in tests) + outside.cost_usd, 10),
        "unknown_price_calls": sum(t["unknown_price_calls"] for t in tests) + outside.unknown_price,
        "replayed_calls": sum(t["replayed_calls"] for t in tests) + outside.replayed_calls,
        "replayed_cost_usd": round(
            sum(t["replayed_cost_usd"] for t in tests) + outside.replayed_cost_usd, 10
        ),
        "measurements": len(measurements),
        "measurements_passed": sum(1 for m in measurements if m["passed"] is True),
        "measurements_failed": sum(1 for m in measurements if m["passed"] is False),
        "measurements_not_measured": sum(1 for m in measurements if m["passed"] is None),
        "calls_outside_tests": outside.calls,
        "robustness": robustness_totals(tests),
        "security": security_totals(tests),
    }


def robustness_totals(tests: list[dict[str, Any]]) -> dict[str, int]:
    """Art. 15(4) checks over the tests: perturbed variants, repeated tests, fault injections."""
    checks = [
        c
        for t in tests
        for run in (t.get("robustness") or {}).get("perturbations") or []
        for c in run["checks"]
    ]
    return {
        "tests": sum(1 for t in tests if t.get("robustness")),
        "variants": len(checks),
        "variants_failed": sum(1 for c in checks if c["verdict"] in ("failed", "error")),
        "repeated_tests": sum(1 for t in tests if (t.get("robustness") or {}).get("consistency")),
        "fault_injections": sum(len((t.get("robustness") or {}).get("faults") or []) for t in tests),
        "logprob_calls": sum(
            ((t.get("robustness") or {}).get("uncertainty") or {}).get("measured", 0) for t in tests
        ),
    }


def security_totals(tests: list[dict[str, Any]]) -> dict[str, int]:
    """Art. 15(5) checks over the tests: injection probes run and succeeded, PII checks."""
    reports = [r for t in tests for r in (t.get("security") or {}).get("probes") or []]
    pii = [(t.get("security") or {}).get("pii") or {} for t in tests]
    return {
        "tests": sum(1 for t in tests if t.get("security")),
        "probes": sum(r["overall"]["probes"] for r in reports),
        "attacks_succeeded": sum(r["overall"]["successes"] for r in reports),
        "probe_errors": sum(r["overall"]["errors"] for r in reports),
        "pii_checked": sum(p.get("checked", 0) for p in pii),
        "pii_findings": sum(p.get("findings", 0) for p in pii),
    }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_results(cs: CertSession, exitstatus: int) -> dict[str, Any]:
    import cert_core

    from .plugin import OPTIONS

    tests = sorted(cs.results, key=lambda t: (t["file"], t["line"], t["nodeid"]))
    # An xfailed test's violation was expected (a known-bad answer the gate must catch).
    violations = [
        {"where": t["nodeid"], **v} for t in tests if t["outcome"] != "xfailed" for v in t["violations"]
    ]
    violations += [{"where": "session", **v.to_dict()} for v in cs.session_violations]
    finished = datetime.now(timezone.utc).timestamp()
    return {
        "schema": "cert.results/1",
        "tool": {"name": "pytest-cert", "version": cert_core.__version__, "pytest": pytest.__version__},
        "session": {
            "started": _iso(cs.started),
            "finished": _iso(finished),
            "duration_s": round(finished - cs.started, 3),
            "exitstatus": exitstatus,
            "args": [str(a) for a in cs.config.invocation_params.args],
            "workers": len(cs._workers),
            "python": sys.version.split()[0],
        },
        "config": {
            **cs.settings.to_dict(),
            "options": [o.flag for o in OPTIONS if o.name in cs.settings.sources],
            "instrumented": cs.instrumented,
            "instrumentation_errors": cs.instrumentation_errors,
        },
        "tests": tests,
        "totals": totals(tests, cs.session_records),
        "violations": violations,
        "extra": {},
    }


def _relative(path: Path | str | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).name


def threshold_sources(cs: CertSession, tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every threshold in force and the file that holds it (for the manifest's commits)."""
    root = cs.config.rootpath
    out: list[dict[str, Any]] = []
    source = cs.settings.sources.get("threshold")
    if source is not None:
        entry: dict[str, Any] = {"scope": "session", "threshold": cs.settings.threshold, "source": source}
        entry["file"] = _relative(cs.config.inipath, root) if source.startswith("ini") else None
        out.append(entry)
    seen: set[tuple[str, float, str]] = set()
    for t in tests:
        key = (t["threshold_source"], t["threshold"], t["file"])
        scope = {"the cert marker": "marker", "the expect() argument": "argument"}.get(t["threshold_source"])
        if scope is not None and key not in seen:
            seen.add(key)
            out.append(
                {
                    "scope": scope,
                    "threshold": t["threshold"],
                    "source": t["threshold_source"],
                    "file": t["file"],
                }
            )
    presets = {
        t["preset"]: t["threshold"] for t in tests if (t["threshold_source"] or "").startswith("preset")
    }
    for name in sorted(presets):
        out.append(
            {
                "scope": "preset",
                "preset": name,
                "threshold": presets[name],
                "source": f"preset {name} (shipped with pytest-cert)",
                "file": None,
            }
        )
    return out


def write_session_evidence(cs: CertSession, session: pytest.Session, exitstatus: int) -> None:
    import cert_core
    from cert_core._evidence import summary_markdown, write_evidence

    results = build_results(cs, exitstatus)
    if cs.decode_errors:
        results["extra"]["errors"] = list(cs.decode_errors)
    cs.config.hook.pytest_cert_results(config=cs.config, results=results)
    sections = [s for s in cs.config.hook.pytest_cert_summary(config=cs.config, results=results) if s]
    cs.summary_sections = sections
    summary = summary_markdown(results, sections)
    order = {t["nodeid"]: i for i, t in enumerate(results["tests"])}
    records = sorted(cs.test_records, key=lambda r: order.get(r.test_id or "", len(order)))
    records += cs.session_records
    root = cs.config.rootpath
    folder = Path(cs.settings.report_dir)
    if not folder.is_absolute():
        folder = cs.config.invocation_params.dir / folder
    try:
        write_evidence(
            folder,
            results=results,
            records=records,
            summary=summary,
            thresholds=threshold_sources(cs, results["tests"]),
            root=root,
        )
        cs.evidence_dir = folder
    except OSError as exc:
        cs.evidence_error = f"could not write the evidence folder {folder}: {exc}"
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    cs.results_doc = results
    if cs.settings.traces:
        writer = cert_core.TraceWriter(cs.settings.traces)
        try:
            for record in records:
                writer.write(record)
        finally:
            writer.close()
        if writer.stats.dropped or writer.stats.errors:
            cs.evidence_error = (
                f"could not append all records to {cs.settings.traces}: {writer.stats.last_error}"
            )
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with Path(step_summary).open("a", encoding="utf-8") as f:
                f.write(summary + "\n")
        except OSError as exc:
            cs.evidence_error = f"could not append to $GITHUB_STEP_SUMMARY ({step_summary}): {exc}"
