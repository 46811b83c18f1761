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
