"""The evidence folder: trace file, results, summary and a manifest that hashes them all.

``write_evidence()`` is what a test run (the pytest plugin) or the ``cert`` command leaves for CI
to upload and a reviewer to check: ``traces.jsonl`` (hash-chained), ``results.json`` (schema
``cert.results/1``, JSON Schema in ``cert_core/schemas/results.schema.json``), ``summary.md`` and
``manifest.json`` (SHA-256 of every file, tool and Python versions, platform, git commit and dirty
flag, thresholds with the commit that last changed the file holding them, metric definitions,
chain heads). Writing never leaves a half-written file: each is written beside and renamed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec

from ._records import TraceRecord, json_fallback
from ._store import TraceWriter

__all__ = [
    "MANIFEST_SCHEMA",
    "RESULTS_SCHEMA",
    "format_usd",
    "git_state",
    "last_commit",
    "metric_definitions",
    "robustness_line",
    "security_line",
    "sha256_file",
    "summary_markdown",
    "write_evidence",
]

RESULTS_SCHEMA = "cert.results/1"
MANIFEST_SCHEMA = "cert.manifest/1"
#: The files a run writes; nothing else in the folder is touched, hashed or removed.
REPORT_FILES = ("report.md", "report.html", "report.json")
OWN_FILES = ("traces.jsonl", "results.json", "summary.md", *REPORT_FILES, "manifest.json")


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(root: str | os.PathLike[str]) -> dict[str, Any]:
    """``commit`` and ``dirty`` (tracked files changed) of the repository holding ``root``;
    ``commit`` is ``None`` with a ``reason`` outside a repository or without git."""
    cwd = Path(root)
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        if _git(["rev-parse", "--git-dir"], cwd) is not None:
            reason = "a git repository without commits"
        else:
            reason = "not a git repository, git is not installed, or git refused the folder (safe.directory)"
        return {"commit": None, "dirty": None, "reason": reason}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    return {"commit": commit, "dirty": bool(status), "branch": branch}


def last_commit(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> dict[str, Any]:
    """The commit that last changed ``path`` and whether it has uncommitted changes since."""
    cwd = Path(root)
    found = _git(["log", "-1", "--format=%H %cI", "--", os.fspath(path)], cwd)
    if found is None or not found:
        return {"commit": None, "committed": None, "modified": None}
    commit, _, committed = found.partition(" ")
    status = _git(["status", "--porcelain", "--", os.fspath(path)], cwd)
    # The commit's date proves the threshold was set before this run (unless modified since).
    return {"commit": commit, "committed": committed or None, "modified": bool(status)}


def metric_definitions() -> dict[str, Any]:
    """What the accuracy metric is, for the manifest: components, combination, presets, model."""
    from importlib.resources import files

    from ._metric import DEFAULT_MODEL, KNOWN_WEIGHTS, METRIC, PRESETS_FILE

    # The presets file itself, not the measurement package: a manifest must not load models'
    # code (tests check that the two agree).
    presets = json.loads(files("cert_core").joinpath(PRESETS_FILE).read_text("utf-8"))["presets"]

    return {
        "metric": METRIC,
        "components": {
            "semantic": "max over reference passages of the cosine similarity of sentence embeddings, "
            "minimum over answer passages",
            "grounding": "share of the answer's content terms (numbers with units, dates, names, words) "
            "that the reference supports; negation flips count against the answer",
            "claims": "0.5 ** (n / 2), n the answer's terms (and negation flips) that the reference does "
            "not support: each unsupported term takes the same fraction off",
            "entailment": "probability that a reference passage entails the answer "
            "(NLI model, when configured)",
        },
        "combination": "weighted mean of the components that ran; a component that did not run is "
        "'not measured' and left out, never given a neutral score",
        "model": {
            "name": DEFAULT_MODEL,
            "sha256": KNOWN_WEIGHTS.get(DEFAULT_MODEL),
            "backends": "onnx (the model's graph on ONNX Runtime) where onnx and onnxruntime are "
            "installed and load, else numpy; both compute the model's embeddings (cosine >= 0.999 "
            "with each other and with sentence-transformers, tested), so the scores do not depend on it",
        },
        "presets": {
            name: {
                "threshold": float(p["threshold"]),
                "weights": {k: float(v) for k, v in p["weights"].items()},
                "description": p.get("description", ""),
                "source": p.get("source", {}),
            }
            for name, p in sorted(presets.items())
        },
        "statistical_gate": "repeated runs pass when the lower bound of the two-sided Wilson score "
        "interval of the pass rate, at the stated confidence, reaches min_pass_rate",
    }


def format_usd(value: float | None, *, cents_from: float = math.inf, trim: bool = True) -> str:
    """``$0.000027`` (trailing zeros cut unless ``trim`` is false), ``$0`` for nothing, ``-`` for
    unknown; amounts of ``cents_from`` dollars or more in cents with thousands (``$1,234.57``)."""
    if value is None:
        return "-"
    if value >= cents_from:
        return f"${value:,.2f}"
    if not trim:
        return f"${value:.6f}"
    return f"${value:.6f}".rstrip("0").rstrip(".") if value else "$0"


def _threshold(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def robustness_line(totals: Mapping[str, Any]) -> str:
    """One line on the run's Art. 15(4) checks (``not tested`` when there were none)."""
    r = totals.get("robustness") or {}
    if not r.get("tests"):
        return "robustness (Art. 15(4)): not tested"
    parts = []
    if r["variants"]:
        parts.append(f"{r['variants']} perturbed variant(s), {r['variants_failed']} failed")
    if r["repeated_tests"]:
        parts.append(f"{r['repeated_tests']} repeated test(s)")
    if r["fault_injections"]:
        parts.append(f"{r['fault_injections']} fault injection(s)")
    if r.get("logprob_calls"):
        parts.append(f"{r['logprob_calls']} call(s) with token logprobs")
    return f"robustness (Art. 15(4)): {r['tests']} test(s): " + ", ".join(parts)


def security_line(totals: Mapping[str, Any]) -> str:
    """One line on the run's Art. 15(5) checks (``not tested`` when there were none)."""
    s = totals.get("security") or {}
    if not s.get("tests"):
        return "security (Art. 15(5)): not tested"
    parts = []
    if s["probes"]:
        parts.append(f"{s['probes']} injection probe(s), {s['attacks_succeeded']} succeeded")
    if s["pii_checked"]:
        parts.append(f"{s['pii_checked']} text(s) checked for personal data, {s['pii_findings']} finding(s)")
    return f"security (Art. 15(5)): {s['tests']} test(s): " + ", ".join(parts)


#: Per-test rows in summary.md (also the GitHub job summary); failed tests come first.
SUMMARY_ROWS = 50


def summary_markdown(results: Mapping[str, Any], sections: Iterable[tuple[str, str]] = ()) -> str:
    """The run in Markdown: totals, per-test rows, violations, and extra sections."""
    totals = results["totals"]
    status = results.get("session", {}).get("exitstatus", 0)
    if results["violations"]:
        heading = "FAILED"
    elif status != 0:
        heading = f"no gate violation, but the test run failed (exit status {status})"
    else:
        heading = "passed"
    lines = [
        f"## pytest-cert: {heading}",
        "",
        f"{totals['tests']} test(s) with cert checks or LLM calls, {totals['calls']} LLM call(s), "
        f"{totals['input_tokens'] + totals['output_tokens']:,} tokens, cost {format_usd(totals['cost_usd'])}"
        + (
            f" (plus {format_usd(totals['replayed_cost_usd'])} replayed from cassettes, not spent)"
            if totals["replayed_calls"]
            else ""
        )
        + (
            f"; {totals['unknown_price_calls']} call(s) with unknown price"
            if totals["unknown_price_calls"]
            else ""
        )
        + ".",
        "",
        f"{robustness_line(totals)}; {security_line(totals)}.",
        "",
    ]
    if results["tests"]:
        lines += [
            "| test | confidence | threshold | verdict | calls | tokens | cost | slowest call |",
            "|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        tests = results["tests"]
        if len(tests) > SUMMARY_ROWS:  # failures first; every test stays in results.json and the report
            failed = [t for t in tests if t["verdict"] == "failed" and t["outcome"] != "xfailed"]
            rest = [t for t in tests if not (t["verdict"] == "failed" and t["outcome"] != "xfailed")]
            tests = (failed + rest)[:SUMMARY_ROWS]
        for t in tests:
            measured = [m["confidence"] for m in t["measurements"] if m["confidence"] is not None]
            confidence = f"{min(measured):.3f}" if measured else "-"
            if t["statistical"]:
                s = t["statistical"]
                confidence = f"{s['passed']}/{s['n']} runs" if s["n"] else "not measured"
            latency = "-" if t["latency_ms"] is None else f"{t['latency_ms']:.0f} ms"
            lines.append(
                f"| `{_cell(t['nodeid'])}` | {confidence} | {_threshold(t['threshold'])} | {t['verdict']} | "
                f"{t['calls']} | {t['input_tokens'] + t['output_tokens']:,} | {format_usd(t['cost_usd'])} | "
                f"{latency} |"
            )
        if len(results["tests"]) > len(tests):
            more = len(results["tests"]) - len(tests)
            lines.append(
                f"\n{more:,} more test(s) not shown here: every test is in results.json and the report."
            )
        lines.append("")
    if results["violations"]:
        lines += ["### Violations", ""]
        lines += [f"- `{_cell(v['where'])}`: {_cell(v['message'])}" for v in results["violations"]]
        lines.append("")
    for title, body in sections:
        lines += [f"### {title}", "", body.rstrip(), ""]
    return "\n".join(lines)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_evidence(
    folder: str | os.PathLike[str],
    *,
    results: Mapping[str, Any],
    records: Iterable[TraceRecord],
    summary: str,
    thresholds: Sequence[Mapping[str, Any]] = (),
    root: str | os.PathLike[str] = ".",
    tool: Mapping[str, str] | None = None,
    report: bool = True,
) -> dict[str, Any]:
    """Write the evidence folder and return the manifest written into it.

    ``thresholds``: where each threshold in force came from (``file`` relative to ``root``, or
    none for a command-line value); the manifest adds the commit that last changed that file.
    Raises ``OSError`` when the folder cannot be written.
    """
    from . import __version__

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("traces.*.jsonl"):  # rotated parts of an earlier run's trace file
        if stale.name[len("traces.") : -len(".jsonl")].isdigit():
            stale.unlink()
    # The trace file is written beside and renamed into place, like the others.
    partial = out / f".traces.{os.getpid()}.jsonl.tmp"
    partial.unlink(missing_ok=True)
    writer = TraceWriter(partial, buffer_bytes=1 << 20, flush_interval=3600)
    tally = None
    if report:
        from .report import ComponentTally

        tally = ComponentTally()  # what the report lists as tested, counted while writing
    try:
        for record in records:
            writer.write(record)
            if tally is not None:
                tally.add(record)
    finally:
        writer.close()
    stats = writer.stats
    chain, seq, head = writer.head
    if stats.dropped or stats.written != seq + 1:
        lost = seq + 1 - stats.written + stats.dropped
        partial.unlink(missing_ok=True)
        raise OSError(f"{out / 'traces.jsonl'}: {lost} record(s) not written: {stats.last_error}")
    if seq < 0:
        partial.touch()  # an empty run still leaves an (empty) trace file
    partial.replace(out / "traces.jsonl")
    encoded = msgspec.json.encode(results, enc_hook=json_fallback)
    _atomic_write(out / "results.json", msgspec.json.format(encoded, indent=2) + b"\n")
    _atomic_write(out / "summary.md", summary.encode())
    root_path = Path(root)
    commits: dict[str, dict[str, Any]] = {}
    located = []
    for entry in thresholds:
        entry = dict(entry)
        file = entry.get("file")
        if file:
            if file not in commits:
                commits[file] = last_commit(file, root_path)
            entry.update(commits[file])
        located.append(entry)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "tool": {"name": "pytest-cert", "version": __version__, **(tool or {})},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
        },
        "git": git_state(root_path),
        "thresholds": located,
        "metrics": metric_definitions(),
        "chains": [
            {"file": "traces.jsonl", "chain": chain, "records": seq + 1, "last_seq": seq, "hash": head}
        ]
        if seq >= 0
        else [],
    }
    if report:
        # The Article 15 / Annex IV report, from the same results and this manifest's facts.
        try:
            from .report import build_report, write_report

            assert tally is not None
            models, functions = tally.result()
            evidence = {
                "results": results,
                "results_sha256": sha256_file(out / "results.json"),
                "manifest": manifest,
                "models": models,
                "functions": functions,
                "perplexities": tally.perplexities,
                "llm_calls": tally.llm_calls,
            }
            write_report(out, build_report(evidence))
        except Exception as exc:  # the evidence stays whole without its report
            manifest["report_error"] = f"the report could not be rendered: {type(exc).__name__}: {exc}"
            for name in REPORT_FILES:
                (out / name).unlink(missing_ok=True)
    manifest["files"] = {
        name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
        for name in sorted(OWN_FILES)
        if name != "manifest.json" and (out / name).exists()
    }
    _atomic_write(out / "manifest.json", json.dumps(manifest, indent=2).encode() + b"\n")
    return manifest
