"""The report's content, computed from the evidence: one plain dict the templates render.

Everything here is measured or read from files; nothing is inferred about the system. What
only a person can supply comes from ``cert-system.yaml`` and is marked as such, or as missing.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

import msgspec

from .._stats import wilson_interval

__all__ = ["REPORT_SCHEMA", "ComponentTally", "build_report", "load_evidence", "tested_components"]

REPORT_SCHEMA = "cert.report/1"


def ai_act() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(files("cert_core.report").joinpath("ai_act.json").read_text("utf-8"))
    return data


def load_evidence(folder: str | Path) -> dict[str, Any]:
    """``results.json`` and (when present) ``manifest.json`` and the models in ``traces.jsonl``
    of an evidence folder, or of a ``results.json`` path."""
    path = Path(folder)
    base = path.parent if path.is_file() else path
    results_path = path if path.is_file() else path / "results.json"
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{results_path}: cannot read the test results: {exc}") from exc
    if not isinstance(results, dict) or "tests" not in results:
        raise ValueError(f"{results_path}: not a pytest-cert results.json (no 'tests')")
    manifest = None
    if (base / "manifest.json").is_file():
        manifest = json.loads((base / "manifest.json").read_text(encoding="utf-8"))
    tally = _tally(base / "traces.jsonl")
    models, functions = tally.result()
    return {
        "results": results,
        "results_sha256": hashlib.sha256(results_path.read_bytes()).hexdigest(),
        "manifest": manifest,
        "models": models,
        "functions": functions,
        "perplexities": tally.perplexities,
        "llm_calls": tally.llm_calls,
    }


#: The returned model of a call that got no response (it failed before one came).
NO_RESPONSE = "(no response)"


class ComponentTally:
    """What the tests exercised, counted record by record (so the evidence writer can count
    while it writes the trace file instead of reading it back): the LLM components (provider,
    requested model, the snapshot the API returned, sampling parameters, calls) and the names of
    the ``@trace`` functions that ran."""

    def __init__(self) -> None:
        self._seen: Counter[tuple[str, str, str, bytes]] = Counter()
        self._functions: set[str] = set()
        self.llm_calls = 0
        #: Perplexity of each call that returned token logprobs (the others are not measured).
        self.perplexities: list[float] = []

    def add(self, record: Any) -> None:
        kind = record.kind
        if kind == "function":
            if record.function:
                self._functions.add(record.function)
        elif kind == "llm":
            self.llm_calls += 1
            uncertainty = getattr(record, "uncertainty", None)
            if uncertainty is not None and uncertainty.perplexity is not None:
                self.perplexities.append(uncertainty.perplexity)
            params = msgspec.json.encode(record.request or {}, order="sorted", enc_hook=str)
            returned = record.response_model or (NO_RESPONSE if record.error is not None else "?")
            self._seen[(record.provider or "?", record.request_model or "?", returned, params)] += 1

    def result(self) -> tuple[list[dict[str, Any]], list[str]]:
        models = [
            {
                "provider": p,
                "request_model": m,
                "response_model": r,
                "parameters": json.loads(params),
                "calls": n,
            }
            for (p, m, r, params), n in sorted(self._seen.items())
        ]
        return models, sorted(self._functions)


def _tally(traces: Path) -> ComponentTally:
    tally = ComponentTally()
    if traces.is_file():
        from .._store import read_traces

        for record in read_traces(traces, strict=False, on_error=lambda error: None):
            tally.add(record)
    return tally


def tested_components(traces: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """:class:`ComponentTally` of a trace file, read once."""
    return _tally(traces).result()


def _test_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for t in results["tests"]:
        measured = [m["confidence"] for m in t["measurements"] if m.get("confidence") is not None]
        stat = t.get("statistical")
        rows.append(
            {
                "nodeid": t["nodeid"],
                "outcome": t["outcome"],
                "verdict": "xfailed (expected failure)" if t["outcome"] == "xfailed" else t["verdict"],
                "confidence": min(measured) if measured else None,
                "threshold": t["threshold"],
                "threshold_source": t["threshold_source"],
                "measurements": len(t["measurements"]),
                "statistical": None
                if not stat
                else {
                    "n": stat["n"],
                    "passed": stat["passed"],
                    "lower": stat["lower"],
                    "upper": stat["upper"],
                    "min_pass_rate": stat["min_pass_rate"],
                    "confidence": stat["confidence"],
                },
                "calls": t["calls"],
                "cost_usd": t["cost_usd"] + t["replayed_cost_usd"],
                "replayed_calls": t["replayed_calls"],
                "latency_ms": t["latency_ms"],
                "violations": [v["message"] for v in t["violations"]],
                "unsupported_terms": sorted(
                    {u for m in t["measurements"] for u in m.get("unsupported_terms", [])}
                ),
            }
        )
    return rows


def _declaration(results: Mapping[str, Any], system: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Measured pass rate per preset (expected failures left out), against the declared level."""
    per_preset: dict[str, list[bool]] = defaultdict(list)
    thresholds: dict[str, set[float]] = defaultdict(set)
    for t in results["tests"]:
        if t["outcome"] == "xfailed":
            continue  # a known-bad answer kept to show the gate catches it
        for m in t["measurements"]:
            if m.get("passed") is None:
                continue
            per_preset[m["preset"]].append(bool(m["passed"]))
            thresholds[m["preset"]].add(m["threshold"])
    declared = {d.get("preset"): d.get("declared_pass_rate") for d in system.get("accuracy_declaration", [])}
    rows = []
    for preset in sorted(set(per_preset) | {p for p in declared if p}):
        outcomes = per_preset.get(preset, [])
        n, passed = len(outcomes), sum(outcomes)
        interval = wilson_interval(passed, n) if n else None
        level = declared.get(preset)
        if level is None:
            check = "not declared (a person states the level in cert-system.yaml)"
        elif interval is None:
            check = "no measurement with this preset"
        elif interval[0] >= level:
            check = "the measured lower bound reaches the declared level"
        else:
            check = "NOT SUPPORTED: the measured lower bound is below the declared level"
        rows.append(
            {
                "preset": preset,
                "thresholds": sorted(thresholds.get(preset, set())),
                "n": n,
                "passed": passed,
                "rate": passed / n if n else None,
                "lower": interval[0] if interval else None,
                "upper": interval[1] if interval else None,
                "declared": level,
                "check": check,
            }
        )
    return rows


def _monitoring(
    scan: Any, tested: Sequence[Mapping[str, Any]], functions: Sequence[str], period_days: int | None
) -> dict[str, Any]:
    from ..analysis import cost_report, in_period

    report = cost_report(scan, by="model", period_days=period_days)
    groups = in_period(scan.groups, period_days)
    versions: dict[tuple[str, str], dict[str, Any]] = {}
    for g in groups:
        key = (g.model, g.response_model)
        entry = versions.setdefault(key, {"model": g.model, "response_model": g.response_model, "calls": 0})
        entry["calls"] += g.calls
        entry["first_day"] = min(entry.get("first_day", g.day), g.day)
        entry["last_day"] = max(entry.get("last_day", g.day), g.day)
    tested_models = {m["request_model"] for m in tested} | {m["response_model"] for m in tested}
    untested = sorted(
        {(g.provider, g.model) for g in groups if g.model not in tested_models},
    )
    # Functions: calls made inside a @trace function the test suite never ran.
    untested_functions = sorted({g.function for g in groups if g.function != "(none)"} - set(functions))
    daily = [
        {
            "day": d.key,
            "calls": d.calls,
            "errors": d.errors,
            "cost_usd": d.cost_usd,
            "mean_latency_ms": d.mean_latency_ms,
            "evaluated": d.evaluated,
            "mean_confidence": d.mean_confidence,
        }
        for d in report.daily
    ]
    total = report.total
    return {
        "first_day": report.first_day,
        "last_day": report.last_day,
        "days": report.days,
        "calls": total.calls,
        "errors": total.errors,
        "error_rate": total.errors / total.calls if total.calls else None,
        "cost_usd": total.cost_usd,
        "mean_latency_ms": total.mean_latency_ms,
        "evaluated": total.evaluated,
        "passed": total.passed,
        "mean_confidence": total.mean_confidence,
        "by_model": [r.to_dict() for r in report.rows],
        "daily": daily,
        "anomalies": [a.to_dict() for a in report.anomalies],
        "model_versions": sorted(versions.values(), key=lambda v: (v["model"], v["response_model"])),
        "untested": [{"provider": p, "model": m} for p, m in untested],
        "untested_functions": untested_functions,
        "tested_functions": list(functions),
        "files": report.files,
        "skipped_lines": report.skipped,
    }


def _lineage(current: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    def confidences(results: Mapping[str, Any]) -> dict[str, float | None]:
        out = {}
        for t in results["tests"]:
            values = [m["confidence"] for m in t["measurements"] if m.get("confidence") is not None]
            out[t["nodeid"]] = min(values) if values else None
        return out

    now, before = confidences(current["results"]), confidences(previous["results"])
    deltas = []
    for nodeid in sorted(set(now) & set(before)):
        a, b = before[nodeid], now[nodeid]
        if a is not None and b is not None and abs(b - a) > 1e-9:
            deltas.append({"nodeid": nodeid, "before": a, "after": b, "delta": b - a})

    def thresholds(evidence: Mapping[str, Any]) -> dict[str, Any]:
        manifest = evidence.get("manifest") or {}
        return {
            f"{e.get('scope')}:{e.get('file') or e.get('preset') or e.get('source')}": e.get("threshold")
            for e in manifest.get("thresholds", [])
        }

    t_now, t_before = thresholds(current), thresholds(previous)
    changed_thresholds = [
        {"where": key, "before": t_before.get(key), "after": t_now.get(key)}
        for key in sorted(set(t_now) | set(t_before))
        if t_now.get(key) != t_before.get(key)
    ]
    m_now = {(m["provider"], m["request_model"], m["response_model"]) for m in current["models"]}
    m_before = {(m["provider"], m["request_model"], m["response_model"]) for m in previous["models"]}
    previous_git = (previous.get("manifest") or {}).get("git", {})
    return {
        "previous_results_sha256": previous["results_sha256"],
        "previous_commit": previous_git.get("commit"),
        "added_tests": sorted(set(now) - set(before)),
        "removed_tests": sorted(set(before) - set(now)),
        "confidence_changes": deltas,
        "threshold_changes": changed_thresholds,
        "models_added": [list(m) for m in sorted(m_now - m_before)],
        "models_removed": [list(m) for m in sorted(m_before - m_now)],
        "totals_before": {k: previous["results"]["totals"].get(k) for k in ("tests", "calls", "cost_usd")},
    }


def _annex_index(data: Mapping[str, Any], system: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for item in ai_act()["annex_iv"]:
        field = item.get("system_field")
        section = item.get("section")
        supplied = bool(field) and _filled(system.get(field))
        content = data.get(section) if section else None
        has_section = bool(content) and (not isinstance(content, Mapping) or content.get("tested", True))
        if item["filled_by"] == "tool":
            status = "filled by the tool" if has_section else "missing (no input for it)"
        elif item["filled_by"] == "person":
            status = "supplied by a person" if supplied else "missing: to be supplied by a person"
        elif has_section and supplied:
            status = "filled by the tool and supplied by a person"
        elif has_section:
            status = "filled by the tool; the person's part is missing"
        elif supplied:
            status = "supplied by a person; the tool's part is missing (no input for it)"
        else:
            status = "missing"
        rows.append({"item": item["item"], "title": item["title"], "status": status, "section": section})
    return rows


FAILURES_LISTED = 50  # failed robustness checks listed one by one in the report
PERPLEXITIES_KEPT = 10_000  # per-call perplexities kept for the report's histogram


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def _uncertainty(perplexities: Sequence[float], llm_calls: int) -> dict[str, Any]:
    if not perplexities:
        return {"measured": 0, "llm_calls": llm_calls, "values": [], "perplexity": None}
    return {
        "measured": len(perplexities),
        "llm_calls": llm_calls,
        "values": [round(v, 4) for v in perplexities[:PERPLEXITIES_KEPT]],
        "perplexity": {
            "min": min(perplexities),
            "median": _quantile(perplexities, 0.5),
            "p90": _quantile(perplexities, 0.9),
            "max": max(perplexities),
        },
    }


def _robustness(results: Mapping[str, Any], uncertainty: dict[str, Any]) -> dict[str, Any]:
    """Art. 15(4): perturbation drops by kind, the failed variants, repeat-run consistency,
    fault injection, and token-logprob uncertainty, gathered from every test."""
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    failures: list[dict[str, Any]] = []
    consistency: list[dict[str, Any]] = []
    faults: list[dict[str, Any]] = []
    for t in results["tests"]:
        rob = t.get("robustness") or {}
        for run in rob.get("perturbations") or []:
            for c in run["checks"]:
                by_kind.setdefault(c["perturbation"], []).append(c)
                if c["verdict"] in ("failed", "error"):
                    failures.append({"nodeid": t["nodeid"], "expected": t["outcome"] == "xfailed", **c})
        if rob.get("consistency"):
            consistency.append({"nodeid": t["nodeid"], **rob["consistency"]})
        for log in rob.get("faults") or []:
            faults.append({"nodeid": t["nodeid"], "outcome": t["outcome"], **_fault_row(log)})
    rows = [_perturbation_row(kind, checks) for kind, checks in by_kind.items()]
    return {
        "tested": bool(rows or consistency or faults or uncertainty["measured"]),
        "perturbations": rows,
        "failures": failures[:FAILURES_LISTED],
        "failures_total": len(failures),
        "consistency": consistency,
        "faults": faults,
        "uncertainty": uncertainty,
    }


def _perturbation_row(kind: str, checks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The checks of one perturbation kind, over all tests: verdicts and drops."""
    verdicts = Counter(c["verdict"] for c in checks)
    drops = [c["drop"] for c in checks if c["drop"] is not None]
    return {
        "perturbation": kind,
        "variants": len(checks),
        "max_drops": sorted({c["max_drop"] for c in checks}),
        "passed": verdicts["passed"],
        "failed": verdicts["failed"],
        "error": verdicts["error"],
        "not_measured": verdicts["not measured"],
        "mean_drop": sum(drops) / len(drops) if drops else None,
        "largest_drop": max(drops) if drops else None,
    }


def _fault_row(log: Mapping[str, Any]) -> dict[str, Any]:
    """One fault-injection log (:meth:`cert_core.faults.FaultLog.to_dict`) in a row: which
    faults met how many requests, and whether the app came through."""
    kinds: Counter[str] = Counter()
    for request in log.get("injected") or []:
        fault = request.get("fault") or {}
        name = str(fault.get("kind", "?"))
        kinds[f"{name} {fault['code']}" if fault.get("code") else name] += 1
    raised = log.get("raised")
    return {
        "injected": sum(kinds.values()),
        "kinds": ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(kinds.items())) or "-",
        "requests": log.get("requests_seen", 0),
        "answered": len(log.get("passed_through") or []),
        "unused": len(log.get("unused") or []),
        "recovered": log.get("recovered"),
        "raised": raised if isinstance(raised, str) or raised is None else str(raised),
    }


def _security(results: Mapping[str, Any], components: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Art. 15(5): attack success per probe category (summed over the tests that probed, with
    its Wilson interval), canary leaks, PII checks, and whether the model ids are pinned."""
    attempts: Counter[str] = Counter()
    successes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    leaks = probed_tests = 0
    pii_checked = pii_found = pii_tests = 0
    confidence = 0.95
    note = None
    for t in results["tests"]:
        sec = t.get("security") or {}
        for report in sec.get("probes") or []:
            probed_tests += 1
            confidence = report.get("confidence", confidence)
            note = report.get("mapping_note") or note
            for row in (report.get("categories") or {}).values():
                attempts[row["category"]] += row["attempts"]
                successes[row["category"]] += row["successes"]
                errors[row["category"]] += row["errors"]
            leaks += sum(1 for o in report.get("outcomes") or [] if o.get("canary_leaked"))
        if sec.get("pii"):
            pii_tests += 1
            pii_checked += sec["pii"]["checked"]
            pii_found += sec["pii"]["findings"]
    categories = []
    if attempts:
        from ..injection import ART_15_5, MAPPING_NOTE

        note = note or MAPPING_NOTE
    for category in sorted(attempts):
        n, k = attempts[category], successes[category]
        low, high = wilson_interval(k, n, confidence) if n else (None, None)
        categories.append(
            {
                "category": category,
                "clause": ART_15_5.get(category, "not mapped"),
                "attempts": n,
                "successes": k,
                "errors": errors[category],
                "rate": k / n if n else None,
                "lower": low,
                "upper": high,
            }
        )
    returned: dict[tuple[str, str], set[str]] = {}
    for c in components:
        seen = returned.setdefault((c["provider"], c["request_model"]), set())
        if c["response_model"] not in (NO_RESPONSE, "?"):
            seen.add(c["response_model"])
    pinned = [
        {
            "provider": provider,
            "request_model": model,
            "response_models": sorted(answers),
            "pinned": answers == {model} if answers else None,
        }
        for (provider, model), answers in sorted(returned.items())
    ]
    return {
        "tested": bool(categories or pii_tests),
        "categories": categories,
        "confidence": confidence,
        "probed_tests": probed_tests,
        "canary_leaks": leaks,
        "mapping_note": note,
        "pii": {"tests": pii_tests, "checked": pii_checked, "findings": pii_found} if pii_tests else None,
        "models": pinned,
    }


def _filled(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_filled(v) for v in value.values())
    if isinstance(value, list):
        return any(_filled(v) for v in value)
    return value not in (None, "", 0.0) if not isinstance(value, bool) else True


def build_report(
    evidence: Mapping[str, Any],
    *,
    system: Mapping[str, Any] | None = None,
    production: Any = None,
    previous: Mapping[str, Any] | None = None,
    period_days: int | None = 30,
) -> dict[str, Any]:
    """The report's data: ``evidence`` from :func:`load_evidence`, ``production`` a
    :class:`~cert_core.analysis.TraceScan`, ``previous`` another :func:`load_evidence`."""
    from .. import __version__

    results = evidence["results"]
    manifest = evidence.get("manifest") or {}
    system = dict(system or {})
    act = ai_act()
    totals = results["totals"]
    tests = _test_rows(results)
    confidences = [
        m["confidence"]
        for t in results["tests"]
        for m in t["measurements"]
        if m.get("confidence") is not None
    ]
    retention = (system.get("logging") or {}).get("retention_days")
    data: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "report_id": evidence["results_sha256"][:16],
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "pytest-cert", "version": __version__},
        "regulation": act["regulation"],
        "clause_note": act["note"],
        "dates": act["dates"],
        "system": {
            "name": "",
            "version": "",
            "provider": "",
            "intended_purpose": "",
            "deployment": "",
            **(system.get("system") or {}),
        },
        "people": system.get("people") or [],
        "results_sha256": evidence["results_sha256"],
        "validation": {
            "session": results["session"],
            "git": manifest.get("git") or {},
            "python": manifest.get("python"),
            "platform": manifest.get("platform"),
            "tool": results["tool"],
            "metric": manifest.get("metrics") or {},
            "thresholds": manifest.get("thresholds") or [],
            "tests": tests,
            "totals": totals,
            "violations": results["violations"],
            "confidences": confidences,
            "verdict": (
                f"{len(results['violations'])} session-level violation(s)"
                if results["violations"]
                else (
                    f"{totals['verdicts'].get('failed', 0)} test(s) failed a gate check"
                    if totals["verdicts"].get("failed")
                    else "every gate check held"
                )
            ),
            "chains": manifest.get("chains") or [],
            "test_data": system.get("test_data") or {},
        },
        "components": evidence.get("models") or [],
        "declaration": _declaration(results, system),
        "logging": {
            "retention_days": retention,
            "retention_min_days": act["log_retention_min_days"],
            "retention_check": (
                "not stated (a person states it in cert-system.yaml)"
                if retention is None
                else (
                    "meets the six-month minimum"
                    if retention >= act["log_retention_min_days"]
                    else "BELOW the six-month minimum of Art. 19(1) / 26(6)"
                )
            ),
            "location": (system.get("logging") or {}).get("location") or "",
        },
        "monitoring": None,
        "lineage": None,
        "person": {
            k: system.get(k)
            for k in (
                "development",
                "human_oversight",
                "cybersecurity",
                "metrics_rationale",
                "known_limitations",
                "risk_management",
                "standards_applied",
                "post_market_plan",
            )
        },
        "declaration_of_conformity": {
            "items": act["declaration_of_conformity"],
            "reference": (system.get("declaration_of_conformity") or {}).get("reference") or "",
        },
    }
    data["robustness"] = _robustness(
        results, _uncertainty(evidence.get("perplexities") or [], evidence.get("llm_calls") or 0)
    )
    data["security"] = _security(results, data["components"])
    if production is not None:
        data["monitoring"] = _monitoring(
            production, data["components"], evidence.get("functions") or [], period_days
        )
    if previous is not None:
        data["lineage"] = _lineage(evidence, previous)
    data["annex_iv"] = _annex_index(data, system)
    return data
