"""The ``cert`` command: a thin front over :mod:`cert_core`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._store import TraceSourceError
from ._verify import verify_traces

__all__ = ["main"]

VERIFY_EPILOG = """\
exit codes:
  0  every chain is intact
  1  tampering or damage found (edited, deleted, inserted, reordered, damaged or unchained lines,
     a chain head that differs from --heads, or a chain --heads does not list)
  2  usage error, or a file that cannot be read
  3  intact, but with a partial line (a write cut short, e.g. by a crash) at the end of a file or
     ended by a writer that opened the file afterwards
  4  nothing to verify: no chained records (empty files, or only legacy CERT records)
"""


def _load_heads(path: Path) -> dict[str, str]:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cert verify: error: --heads {path}: cannot read JSON: {exc}") from exc
    # {chain: hash}; this command's --json output ("heads"); an evidence manifest ("chains").
    entries = data.get("heads", data.get("chains", data)) if isinstance(data, dict) else data
    if isinstance(entries, dict):
        return {str(k): str(v) for k, v in entries.items()}
    if isinstance(entries, list) and all(
        isinstance(e, dict) and "chain" in e and "hash" in e for e in entries
    ):
        return {str(e["chain"]): str(e["hash"]) for e in entries}
    raise SystemExit(
        f"cert verify: error: --heads {path}: expected {{chain: hash}}, or a 'heads' or 'chains' list "
        "of {chain, hash}"
    )


def _cmd_verify(args: argparse.Namespace) -> int:
    heads = _load_heads(args.heads) if args.heads else None
    try:
        report = verify_traces(args.files, heads=heads)
    except TraceSourceError as exc:
        print(f"cert verify: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return report.exit_code
    for finding in report.findings:
        print(finding)
    for note in report.notes:
        print(f"note: {note}")
    status = {
        0: "OK: every chain is intact",
        1: "TAMPERED or DAMAGED: see the findings above",
        3: "TRUNCATED: intact up to a partial last line (a write cut short)",
        4: "NOTHING TO VERIFY: no chained records",
    }[report.exit_code]
    tampering = sum(f.is_tampering for f in report.findings)
    print(
        f"{status}. {len(report.files)} file(s), {report.lines} line(s), {report.chained} chained "
        f"record(s) in {len(report.heads)} chain(s), {report.legacy} legacy record(s), "
        f"{tampering} tampering finding(s)."
    )
    if not args.quiet:
        for head in report.heads:
            print(f"  chain {head.chain}: {head.records} records, head seq {head.last_seq} {head.hash}")
            print(f"    last line: {head.location}")
        if report.heads and not heads:
            print("  An edit of a chain's last line is only caught against a recorded head:")
            print("  keep the heads above (cert verify --json), then check with --heads.")
    return report.exit_code


def _cmd_calibrate(args: argparse.Namespace) -> int:
    # Imported here: the other commands must not pay for the measurement stack.
    from .measure import Measurer, ModelError, calibrate
    from .measure._labelled import LabelledError, read_labelled
    from .measure._measure import resolve_preset

    try:
        pairs = read_labelled(args.file, answer=args.answer, reference=args.reference, label=args.label)
        preset = resolve_preset(args.preset)
    except (LabelledError, ValueError) as exc:
        print(f"cert calibrate: error: {exc}", file=sys.stderr)
        return 2
    measurer = Measurer(semantic_backend=args.backend)
    if measurer.semantic_scorer() is None and preset.weights.get("semantic", 0) > 0:
        print(f"cert calibrate: error: semantic model: {measurer.semantic_error}", file=sys.stderr)
        return 2
    try:
        measurements = measurer.measure_many([(p.answer, p.reference) for p in pairs], preset=preset)
    except (ValueError, ModelError) as exc:
        print(f"cert calibrate: error: {exc}", file=sys.stderr)
        return 2
    kept = [
        (m.confidence, p.label) for m, p in zip(measurements, pairs, strict=True) if m.confidence is not None
    ]
    unmeasured = len(pairs) - len(kept)
    try:
        result = calibrate([c for c, _ in kept], [y for _, y in kept], bootstrap=args.bootstrap)
    except ValueError as exc:
        print(f"cert calibrate: error: {exc}", file=sys.stderr)
        return 2
    print(f"cert calibrate: {args.file}, preset {preset.name!r} (threshold now {preset.threshold})")
    print(result.table())
    if unmeasured:
        print(f"{unmeasured} pair(s) not measured (no component could run) are left out")
    if args.out:
        data = {"file": str(args.file), "preset": preset.name, "not_measured": unmeasured, **result.to_dict()}
        args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print(
                "cert calibrate: --plot needs matplotlib (pip install matplotlib); no plot written",
                file=sys.stderr,
            )
            return 2
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot(
            [0, *[f for _, f, _ in result.roc]],
            [0, *[t for _, _, t in result.roc]],
            label=f"AUC {result.auc:.3f}",
        )
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
        op = result.youden
        ax.scatter(
            [op.false_positive_rate], [op.true_positive_rate], label=f"Youden threshold {op.threshold:.3f}"
        )
        ax.set_xlabel("wrong answers passing (FPR)")
        ax.set_ylabel("right answers passing (TPR)")
        ax.legend(loc="lower right")
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    return 0


def _trace_arguments(parser: argparse.ArgumentParser, *, period: bool = True) -> None:
    """The arguments every command over production traces takes."""
    parser.add_argument("traces", nargs="+", metavar="TRACES", help="Trace file, directory or glob")
    if period:
        parser.add_argument(
            "--period", default="30d", help="Days (30d) or weeks (4w) back from the newest day, or all"
        )
    parser.add_argument(
        "--tolerant",
        action="store_true",
        help="Skip bad lines (each is reported) instead of stopping at the first",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cert",
        description="pytest-cert: trace, measure and gate LLM calls; verify and analyse trace files",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    verify = commands.add_parser(
        "verify",
        help="Check the hash chains of trace files for edits, deletions, insertions and reordering",
        description="Check the hash chains of trace files. Files are read in order; rotated archives "
        "(traces.000001.jsonl) of a directory come before its live file.",
        epilog=VERIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument(
        "files", nargs="+", metavar="FILE", help="Trace file, directory or glob (.jsonl, .jsonl.gz)"
    )
    verify.add_argument(
        "--heads",
        type=Path,
        metavar="JSON",
        help="Expected chain heads ({chain: hash}, this command's --json output, or an evidence "
        "manifest.json) to catch last-line edits and chains not listed",
    )
    verify.add_argument("--json", action="store_true", help="Print the report as JSON")
    verify.add_argument("-q", "--quiet", action="store_true", help="Print findings and the verdict only")
    verify.set_defaults(handler=_cmd_verify)
    cal = commands.add_parser(
        "calibrate",
        help="Measure labelled answers and report ROC, AUC and the best thresholds",
        description="Score labelled (answer, reference, label) rows with the accuracy metric and report "
        "how well it separates right (label 1) from wrong (label 0) answers: ROC, AUC, and the "
        "thresholds that maximise Youden's J and accuracy, with bootstrap 95%% intervals.",
    )
    cal.add_argument("file", type=Path, help="JSONL, CSV/TSV, Parquet, or a Hugging Face dataset folder")
    cal.add_argument("--preset", default=None, help="preset whose weights score the pairs (default: general)")
    cal.add_argument("--answer", default="answer", help="answer column (default: answer)")
    cal.add_argument("--reference", default="reference", help="reference column (default: reference)")
    cal.add_argument("--label", default="label", help="label column: 1/0, true/false, right/wrong")
    cal.add_argument(
        "--backend",
        default="auto",
        help="semantic backend: auto (onnx if installed, else numpy), onnx, numpy or sentence-transformers",
    )
    cal.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    cal.add_argument("--out", type=Path, help="write the full result (ROC points included) as JSON")
    cal.add_argument("--plot", type=Path, help="write a ROC plot (PNG; needs matplotlib)")
    cal.set_defaults(handler=_cmd_calibrate)
    costs = commands.add_parser(
        "costs",
        help="What the LLM calls in trace files cost: totals, a breakdown, the daily trend, anomalies",
        description="Read trace files (this tool's JSONL, .gz, or the original CERT log) and report "
        "the cost of their LLM calls over a period ending on the newest day in the traces: totals, "
        "a breakdown, cost per successful task (calls whose evaluation passed), the daily trend, and "
        "days whose cost is far above the period's robust baseline. Needs the analysis extra "
        '(pip install "pytest-cert[analysis]").',
    )
    _trace_arguments(costs)
    costs.add_argument("--by", choices=("model", "function", "day", "provider"), default="model")
    costs.add_argument("--top", type=int, default=20, help="Rows shown in the table (default 20)")
    costs.add_argument("--json", action="store_true", help="Print the whole report as JSON")
    costs.set_defaults(handler=_cmd_costs)
    opt = commands.add_parser(
        "optimize",
        help="Suggest where the LLM bill could shrink (model downgrades, caching, long prompts)",
        description="Read trace files and suggest savings: functions whose calls on an expensive model "
        "pass their accuracy checks nearly always (try the cheaper model), identical inputs sent "
        "repeatedly (cache the answer), and prompts far longer than usual (trim them). Each "
        "suggestion shows its evidence and estimated saving over the period; nothing is changed. "
        'Needs the analysis extra (pip install "pytest-cert[analysis]").',
    )
    _trace_arguments(opt)
    opt.add_argument(
        "--min-pass-rate",
        type=float,
        default=0.9,
        help="A downgrade needs the Wilson 95%% lower bound of the pass rate to reach this (default 0.9)",
    )
    opt.add_argument(
        "--min-evaluated", type=int, default=30, help="... over at least this many evaluated calls"
    )
    opt.add_argument(
        "--value-per-success",
        type=float,
        metavar="USD",
        help="What one successful task is worth: prints the ROI",
    )
    opt.add_argument("--top", type=int, default=10, help="Suggestions shown (default 10)")
    opt.add_argument("--json", action="store_true", help="Print everything as JSON")
    opt.set_defaults(handler=_cmd_optimize)
    ev = commands.add_parser(
        "evaluate",
        help="Score production traces that carry a reference (retrieved context or gold answer)",
        description="Measure every LLM trace whose output is text and which recorded a reference, with "
        "the same metric the test gate uses, in batches, streaming the files. Traces without a "
        "reference are counted with the reason, never scored.",
    )
    _trace_arguments(ev, period=False)
    ev.add_argument("--preset", default=None, help="Measurement preset (default: general)")
    ev.add_argument("--threshold", type=float, default=None, help="Threshold (default: the preset's)")
    ev.add_argument(
        "--optimize-threshold",
        metavar="LABELLED",
        help="Calibrate the threshold first on labelled answers (JSONL, CSV, Parquet; see cert calibrate)",
    )
    ev.add_argument("--out", help="Write one JSON line per trace: its evaluation, or why it has none")
    ev.add_argument("--annotate", help="Write the traces again with their evaluation (a new hash chain)")
    ev.add_argument("--batch", type=int, default=64, help="Answers measured together (default 64)")
    ev.add_argument("--json", action="store_true", help="Print the summary as JSON")
    ev.add_argument("-q", "--quiet", action="store_true", help="No progress line")
    ev.set_defaults(handler=_cmd_evaluate)
    init = commands.add_parser(
        "init",
        help="Write a commented cert-system.yaml: what only a person can say about the system",
        description="Write a commented template of the system metadata the report needs from a person "
        "(name, version, provider, purpose, responsible people, declared accuracy, log retention, ...).",
    )
    init.add_argument("path", nargs="?", default="cert-system.yaml")
    init.add_argument("--force", action="store_true", help="Overwrite an existing file")
    init.set_defaults(handler=_cmd_init)
    rep = commands.add_parser(
        "report",
        help="Render the Article 15 / Annex IV evidence report (Markdown, HTML) from test results",
        description="Render the evidence report from a pytest-cert results.json (or its evidence folder), "
        "optionally with production traces (post-market monitoring), a cert-system.yaml (what a person "
        "supplies) and the previous release's evidence (change lineage). The report documents "
        "measurements; it never states compliance and signs nothing.",
    )
    rep.add_argument("--results", required=True, help="Evidence folder or results.json of a pytest run")
    rep.add_argument(
        "--production", nargs="+", metavar="TRACES", help="Production trace files, folders, globs"
    )
    rep.add_argument("--system", help="cert-system.yaml (see cert init)")
    rep.add_argument("--previous", help="The previous release's evidence folder or results.json")
    rep.add_argument(
        "--format",
        choices=("html", "md", "pdf", "both", "all"),
        default="both",
        help="both: Markdown and HTML (default); all: also PDF (needs the pdf extra)",
    )
    rep.add_argument("--output", default="cert-report", help="Folder to write into (default cert-report)")
    rep.add_argument(
        "--period", default="30d", help="Production period back from the newest day (30d, 4w, all)"
    )
    rep.add_argument(
        "--tolerant", action="store_true", help="Skip bad production trace lines (each reported)"
    )
    rep.set_defaults(handler=_cmd_report)
    return parser


def _usd(value: float | None) -> str:
    from ._evidence import format_usd

    return format_usd(value, cents_from=100)


def _tokens(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _cmd_costs(args: argparse.Namespace) -> int:
    from .analysis import AnalysisError, cost_report, parse_period, scan_traces

    try:
        period = parse_period(args.period)
        scan = scan_traces(args.traces, strict=not args.tolerant)
    except (AnalysisError, ValueError) as exc:
        print(f"cert costs: error: {exc}", file=sys.stderr)
        return 2
    report = cost_report(scan, by=args.by, period_days=period)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    for line in report.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    t = report.total
    print(
        f"cert costs: {report.records:,} records in {len(report.files)} file(s); "
        + (
            f"{report.first_day} to {report.last_day} ({report.days} day(s) with calls, period {args.period})"
            if report.days
            else "no LLM calls in the period"
        )
    )
    if not report.days:
        return 0
    success = (
        f"; cost per successful task {_usd(t.cost_per_success_usd)} "
        f"({t.passed:,} of {t.evaluated:,} evaluated calls passed)"
        if t.evaluated
        else "; no call carries an evaluation (cost per successful task not measured)"
    )
    unpriced = f"; {t.unpriced:,} call(s) with unknown price (not counted)" if t.unpriced else ""
    print(
        f"total: {t.calls:,} calls, {t.errors:,} errors, {_tokens(t.input_tokens)} input and "
        f"{_tokens(t.output_tokens)} output tokens, {_usd(t.cost_usd)}{success}{unpriced}"
    )
    print()
    width = max([len(args.by), *(len(r.key) for r in report.rows)])
    width = min(width, 48)
    print(
        f"{args.by:<{width}} {'calls':>10} {'errors':>7} {'share':>6} {'cost':>14} {'mean ms':>8} "
        f"{'conf':>5} {'cost/success':>12}"
    )
    for r in report.rows[: args.top]:
        key = r.key if len(r.key) <= width else r.key[: width - 3] + "..."
        conf = f"{r.mean_confidence:.2f}" if r.mean_confidence is not None else "-"
        latency = f"{r.mean_latency_ms:.0f}" if r.mean_latency_ms is not None else "-"
        print(
            f"{key:<{width}} {r.calls:>10,} {r.errors:>7,} {r.share:>6.1%} {_usd(r.cost_usd):>14} "
            f"{latency:>8} {conf:>5} {_usd(r.cost_per_success_usd):>12}"
        )
    if len(report.rows) > args.top:
        print(f"... {len(report.rows) - args.top} more (--top, or --json for all)")
    if args.by != "day":
        print()
        print("daily cost (last 14 days with calls):")
        recent = report.daily[-14:]
        peak = max(d.cost_usd for d in recent) or 1.0
        for d in recent:
            print(f"  {d.key}  {_usd(d.cost_usd):>14}  {'#' * max(1, round(30 * d.cost_usd / peak))}")
    print()
    if report.anomalies:
        for a in report.anomalies:
            print(
                f"anomaly: {a.day} cost {_usd(a.cost_usd)}, expected about {_usd(a.expected_usd)} "
                f"(robust z {a.robust_z:.1f})"
            )
    else:
        print(f"anomalies: none (a day counts when its cost is {ANOMALY_RULE})")
    return 0


ANOMALY_RULE = "above median + 3.5 x 1.4826 x MAD of the period's daily costs"


def _cmd_optimize(args: argparse.Namespace) -> int:
    from .analysis import AnalysisError, cost_report, optimize, parse_period, scan_traces

    try:
        period = parse_period(args.period)
        scan = scan_traces(args.traces, strict=not args.tolerant, prompts=True, period_days=period)
    except (AnalysisError, ValueError) as exc:
        print(f"cert optimize: error: {exc}", file=sys.stderr)
        return 2
    found = optimize(
        scan, period_days=period, min_pass_rate=args.min_pass_rate, min_evaluated=args.min_evaluated
    )
    total = cost_report(scan, period_days=period).total
    roi: dict[str, Any] | None = None
    if args.value_per_success is not None:
        # Over the calls that carry an evaluation: only they can be counted as successes.
        value = total.passed * args.value_per_success
        cost = total.evaluated_cost_usd
        roi = {
            "value_per_success_usd": args.value_per_success,
            "successful_tasks": total.passed,
            "evaluated_calls": total.evaluated,
            "value_usd": round(value, 6),
            "cost_usd": round(cost, 6),
            "roi": round((value - cost) / cost, 4) if cost > 0 else None,
        }
    if args.json:
        print(
            json.dumps(
                {
                    "period_cost_usd": total.cost_usd,
                    "recommendations": [r.to_dict() for r in found],
                    "roi": roi,
                    "skipped_lines": scan.skipped,
                },
                indent=2,
            )
        )
        return 0
    for line in scan.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    print(
        f"cert optimize: {total.calls:,} calls costing {_usd(total.cost_usd)} in the period ({args.period}); "
        f"{len(found)} suggestion(s), largest saving first. Suggestions only: nothing is changed."
    )
    for i, r in enumerate(found[: args.top], 1):
        saving = "saving unknown (no price)" if r.saving_usd is None else f"saves about {_usd(r.saving_usd)}"
        print(f"\n{i}. [{r.kind}] {r.target}: {saving}")
        print(f"   {r.suggestion}")
        print("   evidence: " + ", ".join(f"{k}={v}" for k, v in r.evidence.items()))
    if len(found) > args.top:
        print(f"\n... {len(found) - args.top} more (--top, or --json for all)")
    if roi is not None:
        ratio = "n/a" if roi["roi"] is None else f"{roi['roi']:.1%}"
        print(
            f"\nROI: {roi['successful_tasks']:,} successful tasks x {_usd(args.value_per_success)} = "
            f"{_usd(roi['value_usd'])} of value for {_usd(roi['cost_usd'])} spent on them: ROI {ratio} "
            f"(over the {roi['evaluated_calls']:,} of {total.calls:,} calls that carry an evaluation)"
        )
    return 0


def _calibrated_threshold(args: argparse.Namespace) -> float:
    """The Youden threshold of ``--optimize-threshold LABELLED`` for the chosen preset."""
    from .measure import calibrate, default_measurer, resolve_preset
    from .measure._labelled import read_labelled

    pairs = read_labelled(args.optimize_threshold)
    preset = resolve_preset(args.preset)
    measurements = default_measurer().measure_many([(p.answer, p.reference) for p in pairs], preset=preset)
    kept = [
        (m.confidence, p.label) for m, p in zip(measurements, pairs, strict=True) if m.confidence is not None
    ]
    result = calibrate([c for c, _ in kept], [y for _, y in kept])
    print(
        f"cert evaluate: threshold {result.youden.threshold:.4f} from {args.optimize_threshold} "
        f"(Youden's J over {result.n} labelled pairs, AUC {result.auc:.3f})",
        file=sys.stderr,
    )
    return float(result.youden.threshold)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from collections import Counter, defaultdict

    from ._store import TraceReadError, TraceSourceError, TraceWriter
    from .analysis import wilson_lower
    from .analysis._evaluate import evaluate_traces
    from .measure import ModelError
    from .pii import count_pii

    skipped_lines: list[str] = []

    def bad_line(error: TraceReadError) -> None:
        skipped_lines.append(str(error))
        print(f"skipped: {error}", file=sys.stderr)

    show = not args.quiet and not args.json and sys.stderr.isatty()

    def progress(read: int, evaluated: int) -> None:
        if show:
            print(f"\rcert evaluate: {read:,} records read, {evaluated:,} evaluated", end="", file=sys.stderr)

    out = open(args.out, "w", encoding="utf-8") if args.out else None  # noqa: SIM115
    annotated = TraceWriter(args.annotate) if args.annotate else None
    reasons: Counter[str] = Counter()
    per_model: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # evaluated, passed, not measured
    confidences: list[float] = []
    pii: Counter[str] = Counter()  # kinds of personal data found in outputs (never the values)
    outputs_with_pii = 0
    read = 0
    try:
        threshold = _calibrated_threshold(args) if args.optimize_threshold else args.threshold
        for item in evaluate_traces(
            args.traces,
            threshold=threshold,
            preset=args.preset,
            batch=args.batch,
            strict=not args.tolerant,
            on_error=bad_line,
            progress=progress,
        ):
            read += 1
            found = count_pii(item.record.output) if isinstance(item.record.output, str) else Counter()
            pii.update(found)
            outputs_with_pii += bool(found)
            if out is not None:
                row = item.to_dict()
                if found:
                    row["pii"] = dict(found)
                out.write(json.dumps(row) + "\n")
            m = item.measurement
            if m is None:
                reasons[item.skipped or "?"] += 1
                if annotated is not None:
                    annotated.write(item.record)
                continue
            model = item.record.request_model or item.record.response_model or "(unknown)"
            stats = per_model[model]
            if m.confidence is None:
                stats[2] += 1
            else:
                stats[0] += 1
                stats[1] += bool(m.passed)
                confidences.append(m.confidence)
            if annotated is not None:
                annotated.write(item.record.replace(evaluation=m.to_dict()))
    except (TraceReadError, TraceSourceError, ModelError, ValueError, OSError) as exc:
        if show:
            print(file=sys.stderr)
        print(f"cert evaluate: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if out is not None:
            out.close()
        if annotated is not None:
            annotated.close()
    if show:
        print(file=sys.stderr)
    n = sum(s[0] for s in per_model.values())
    passed = sum(s[1] for s in per_model.values())
    summary = {
        "records": read,
        "evaluated": n,
        "passed": passed,
        "pass_rate": passed / n if n else None,
        "pass_rate_wilson_lower_95": round(wilson_lower(passed, n), 6) if n else None,
        "mean_confidence": sum(confidences) / n if n else None,
        "not_measured": sum(s[2] for s in per_model.values()),
        "skipped": dict(reasons),
        "pii_in_outputs": dict(pii),
        "outputs_with_pii": outputs_with_pii,
        "skipped_lines": skipped_lines,
        "threshold": threshold,
        "preset": args.preset or "general",
        "by_model": {
            k: {"evaluated": v[0], "passed": v[1], "not_measured": v[2]} for k, v in sorted(per_model.items())
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"cert evaluate: {read:,} records; {n:,} evaluated against their reference", end="")
    if n:
        print(
            f": {passed:,} passed ({passed / n:.1%}, Wilson 95% lower bound "
            f"{summary['pass_rate_wilson_lower_95']:.3f}), mean confidence {summary['mean_confidence']:.3f}"
        )
    else:
        print()
    for model, v in sorted(per_model.items()):
        rate = f"{v[1] / v[0]:.1%}" if v[0] else "-"
        print(f"  {model:<40} {v[0]:>8,} evaluated  {rate:>7} passed  {v[2]:>6,} not measured")
    for reason, count in reasons.most_common():
        print(f"  not evaluated: {count:,} ({reason})")
    if pii:
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in pii.most_common())
        print(f"  personal data in {outputs_with_pii:,} output(s): {kinds} (counts only; see cert_core.pii)")
    else:
        print("  personal data in outputs: none found")
    for path in (args.out, args.annotate):
        if path:
            print(f"wrote {path}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from .report import SYSTEM_TEMPLATE

    path = Path(args.path)
    if path.exists() and not args.force:
        print(f"cert init: error: {path} exists (--force overwrites it)", file=sys.stderr)
        return 2
    path.write_text(SYSTEM_TEMPLATE, encoding="utf-8")
    print(f"cert init: wrote {path}; fill in what only you can say, then: cert report --system {path} ...")
    return 0


def _cover(folder: Path, paths: Sequence[Path], args: argparse.Namespace) -> Path:
    """Put the report files in the folder's manifest: the evidence folder's own when the report
    goes there, else a new one that also names the inputs."""
    from datetime import datetime, timezone

    from ._evidence import sha256_file

    manifest_path = folder / "manifest.json"
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    else:
        manifest = {
            "schema": "cert.manifest/1",
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "tool": {"name": "pytest-cert", "version": __version__},
            "inputs": {
                "results": str(args.results),
                "system": str(args.system) if args.system else None,
                "previous": str(args.previous) if args.previous else None,
                "production": list(args.production or []),
            },
        }
    files = manifest.setdefault("files", {})
    for path in paths:
        files[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    tmp = manifest_path.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(manifest_path)
    return manifest_path


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import ReportError, SystemFileError, build_report, load_evidence, load_system, write_report

    try:
        evidence = load_evidence(args.results)
        system = load_system(args.system) if args.system else {}
        previous = load_evidence(args.previous) if args.previous else None
        production = None
        if args.production:
            from .analysis import AnalysisError, parse_period, scan_traces

            try:
                period = parse_period(args.period)
                production = scan_traces(args.production, strict=not args.tolerant)
            except AnalysisError as exc:
                raise ValueError(str(exc)) from None
        else:
            period = None
        data = build_report(
            evidence, system=system, production=production, previous=previous, period_days=period
        )
        formats = {"both": ("md", "html"), "all": ("md", "html", "pdf")}.get(args.format, (args.format,))
        paths = write_report(args.output, data, formats)
    except (SystemFileError, ReportError, ValueError, OSError) as exc:
        print(f"cert report: error: {exc}", file=sys.stderr)
        return 2
    manifest = _cover(Path(args.output), paths, args)
    for path in paths:
        print(f"cert report: wrote {path}")
    print(f"cert report: {manifest} lists the SHA-256 of each file")
    missing = [row for row in data["annex_iv"] if row["status"].startswith("missing")]
    if missing:
        print(f"cert report: {len(missing)} Annex IV item(s) still missing (see section 7 of the report)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.handler(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
