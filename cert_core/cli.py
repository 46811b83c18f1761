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
     or a chain head that differs from --heads)
  2  usage error, or a file that cannot be read
  3  intact, but a file ends in a partial line (a write cut short, e.g. by a crash)
  4  nothing to verify: no chained records (empty files, or only legacy CERT records)
"""


def _load_heads(path: Path) -> dict[str, str]:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cert verify: error: --heads {path}: cannot read JSON: {exc}") from exc
    entries = data.get("heads", data) if isinstance(data, dict) else data
    if isinstance(entries, dict):
        return {str(k): str(v) for k, v in entries.items()}
    if isinstance(entries, list) and all(
        isinstance(e, dict) and "chain" in e and "hash" in e for e in entries
    ):
        return {str(e["chain"]): str(e["hash"]) for e in entries}
    raise SystemExit(
        f"cert verify: error: --heads {path}: expected {{chain: hash}} or a 'heads' list of {{chain, hash}}"
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
        help="Expected chain heads ({chain: hash}, or this command's --json output) to catch last-line edits",
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
    cal.add_argument("--backend", default="auto", help="semantic backend: numpy or sentence-transformers")
    cal.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    cal.add_argument("--out", type=Path, help="write the full result (ROC points included) as JSON")
    cal.add_argument("--plot", type=Path, help="write a ROC plot (PNG; needs matplotlib)")
    cal.set_defaults(handler=_cmd_calibrate)
    return parser


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
