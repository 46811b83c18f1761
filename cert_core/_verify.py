"""Integrity check of hash-chained trace files (``cert verify``).

Each writer's lines form a chain: ``seq`` counts 0, 1, 2, ... and ``prev`` is the SHA-256 of the
previous line of the same chain (64 zeros for the first). Reading the files in order (rotated
archives first), every chain must run without gaps, repeats or broken links. What breaks tells what
happened:

* **edited**: a line's bytes changed, so the next line of its chain no longer links to it;
* **deleted**: sequence numbers are missing (``seq`` jumps forward);
* **inserted**: a line repeats a sequence number already seen, or carries no chain at all;
* **reordered**: a line appears before one that precedes it in its chain;
* **damaged**: a line that is not a JSON object (binary garbage, a hand edit that broke it);
* **truncated**: a partial line, as a write cut short leaves it: at the end of the file, or
  followed by what follows such a cut (the same line written again whole, as the writer does
  after a full disk, or the first line of a writer that opened the file after a crash). This is
  reported apart: it is the expected trace of a killed process or a full disk, not of tampering.
  A partial line anywhere else is damage.

The last line of a chain has no successor to vouch for it: an edit there is only detectable
against a recorded chain head (``cert verify --heads``, or the evidence manifest), which is why the
report lists every chain's head. Likewise a forged chain of its own (a first line with ``seq`` 0
and the genesis link) looks like the lines of a writer that started later; against recorded
heads it is **unknown**: a chain the heads do not list.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from ._records import MAX_COUNT
from ._store import _SCHEMA_START, GENESIS, TraceSourceError, iter_lines, parse_line, trace_files

__all__ = ["ChainHead", "Finding", "VerifyReport", "verify_traces"]

# Legacy lines in a file of chained lines named one by one in the findings; the rest are counted.
_LEGACY_NAMED = 20
# How many out-of-order lines of one chain are held while waiting for the missing ones, before the
# gap is declared a deletion. Bounds memory on huge files with an early deletion.
_PENDING_LIMIT = 4096


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem: ``kind`` is edited, deleted, inserted, reordered, damaged, truncated,
    head-mismatch, unknown-chain or unchained; ``location`` is ``file:line``."""

    kind: str
    location: str
    message: str
    chain: str | None = None

    @property
    def is_tampering(self) -> bool:
        return self.kind != "truncated"

    def __str__(self) -> str:
        return f"{self.location}: {self.kind}: {self.message}"


@dataclasses.dataclass(frozen=True)
class ChainHead:
    chain: str
    records: int
    last_seq: int
    hash: str
    location: str


@dataclasses.dataclass
class VerifyReport:
    files: list[str]
    lines: int = 0
    chained: int = 0
    legacy: int = 0
    findings: list[Finding] = dataclasses.field(default_factory=list)
    heads: list[ChainHead] = dataclasses.field(default_factory=list)
    #: Facts worth knowing that are not problems: empty files, legacy records.
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def tampered(self) -> bool:
        return any(f.is_tampering for f in self.findings)

    @property
    def truncated(self) -> bool:
        return any(f.kind == "truncated" for f in self.findings)

    @property
    def exit_code(self) -> int:
        """0 intact, 1 tampering or damage found, 3 intact but a truncated tail, 4 nothing to verify."""
        if self.tampered:
            return 1
        if self.truncated:
            return 3
        if not self.chained:
            return 4
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "lines": self.lines,
            "chained_records": self.chained,
            "legacy_records": self.legacy,
            "exit_code": self.exit_code,
            "findings": [dataclasses.asdict(f) for f in self.findings],
            "heads": [dataclasses.asdict(h) for h in self.heads],
            "notes": self.notes,
        }


@dataclasses.dataclass
class _Link:
    seq: int
    prev: str
    hash: str
    location: str


@dataclasses.dataclass
class _ChainState:
    chain: str
    next_seq: int = 0
    last_hash: str = GENESIS
    last_location: str = ""
    records: int = 0
    pending: dict[int, _Link] = dataclasses.field(default_factory=dict)


class _Verifier:
    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        self.chains: dict[str, _ChainState] = {}
        self.start_file()

    def start_file(self) -> None:
        """Forget what was seen of the previous file (chains carry on across files)."""
        self.file_chained = False  # the file holds chained lines
        self.crlf = False  # its lines end in CRLF
        self.legacy_lines: list[str] = []  # where its first legacy lines are

    def legacy_among_chained(self, path: Path, count: int) -> None:
        """Legacy lines carry nothing to verify: in a file of chained lines, where a writer of
        ours never puts one, each is a record someone could have inserted at will."""
        for location in self.legacy_lines:
            self._find(
                "unchained",
                location,
                "legacy CERT record in a file of chained records: nothing vouches for it, so it may "
                "have been inserted (keep legacy logs in files of their own)",
            )
        if count > len(self.legacy_lines):
            self._find(
                "unchained",
                str(path),
                f"{count - len(self.legacy_lines)} more legacy CERT record(s) like these",
            )

    def add(self, chain: str, link: _Link) -> None:
        state = self.chains.get(chain)
        if state is None:
            state = self.chains[chain] = _ChainState(chain)
        if link.seq < state.next_seq or link.seq in state.pending:
            first = state.pending[link.seq].location if link.seq in state.pending else "earlier in the chain"
            self._find(
                "inserted",
                link.location,
                f"sequence number {link.seq} of chain {chain[:12]} appears again (first: {first}); "
                "a line was inserted or copied",
                chain,
            )
            return
        if link.seq > state.next_seq:
            state.pending[link.seq] = link
            if len(state.pending) > _PENDING_LIMIT:
                self._resolve_gap(state)
            return
        self._accept(state, link)
        while state.next_seq in state.pending:
            early = state.pending.pop(state.next_seq)
            self._find(
                "reordered",
                early.location,
                f"line with seq {early.seq} of chain {chain[:12]} comes before {link.location} "
                f"(seq {link.seq}), which precedes it in the chain",
                chain,
            )
            self._accept(state, early)

    def _accept(self, state: _ChainState, link: _Link) -> None:
        if link.prev != state.last_hash:
            if link.seq == 0:
                message = "first line of its chain does not start from the genesis value; it was edited"
            else:
                message = (
                    f"chain {state.chain[:12]} link broken: {state.last_location} (seq {link.seq - 1}) "
                    f"was edited, or this line's link to it was"
                )
            self._find("edited", state.last_location if link.seq else link.location, message, state.chain)
        state.next_seq = link.seq + 1
        state.last_hash = link.hash
        state.last_location = link.location
        state.records += 1

    def _resolve_gap(self, state: _ChainState) -> None:
        first = min(state.pending)
        missing = first - state.next_seq
        after = state.last_location or "the start of the chain"
        early = state.pending[first]
        self._find(
            "deleted",
            early.location,
            f"{missing} line(s) of chain {state.chain[:12]} missing (seq {state.next_seq}"
            f"{'' if missing == 1 else f'..{first - 1}'}) between {after} and here"
            + ("; if the file was rotated, verify the earlier files too" if state.next_seq == 0 else ""),
            state.chain,
        )
        # Continue the chain from the line after the gap: its link cannot be checked.
        state.pending.pop(first)
        state.next_seq = first + 1
        state.last_hash = early.hash
        state.last_location = early.location
        state.records += 1
        while state.next_seq in state.pending:
            self._accept(state, state.pending.pop(state.next_seq))

    def finish(self) -> None:
        for state in self.chains.values():
            while state.pending:
                self._resolve_gap(state)
            if state.records:
                self.report.heads.append(
                    ChainHead(
                        state.chain, state.records, state.next_seq - 1, state.last_hash, state.last_location
                    )
                )

    def _find(self, kind: str, location: str, message: str, chain: str | None = None) -> None:
        self.report.findings.append(Finding(kind, location, message, chain))


def verify_traces(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    heads: dict[str, str] | None = None,
) -> VerifyReport:
    """Check the hash chains of trace files (streaming; memory grows with the number of chains).

    ``heads`` maps chain id -> expected hash of its last line (from an evidence manifest), which
    also catches an edit of a chain's final line. Raises :class:`~cert_core.TraceSourceError` for
    a source that names no file.
    """
    files = trace_files(sources)
    report = VerifyReport(files=[str(f) for f in files])
    verifier = _Verifier(report)
    for path in files:
        lines_before, legacy_before = report.lines, report.legacy
        verifier.start_file()
        last: tuple[int, bytes, bool] | None = None  # the last non-blank line, checked when the next comes
        try:
            for number, raw, had_newline in iter_lines(path):
                if not raw.strip():
                    continue
                if last is not None:
                    _check_line(verifier, path, *last, following=raw)
                last = (number, raw, had_newline)
        except TraceSourceError:
            raise
        except ValueError as exc:  # damaged compressed stream
            verifier._find("damaged", f"{path}", str(exc))
        if last is not None:
            number, raw, had_newline = last
            if not had_newline:
                _, problem = parse_line(raw)
                if problem is not None:
                    report.lines += 1
                    verifier._find(
                        "truncated",
                        f"{path}:{number}",
                        f"file ends in a partial line of {len(raw)} bytes (a write cut short, e.g. by a "
                        "crash); the records before it are intact",
                    )
                    continue
            _check_line(verifier, path, *last)
        if verifier.crlf:
            report.notes.append(
                f"{path}: CRLF line endings (converted after writing); the chain ignores them"
            )
        if report.lines == lines_before:
            report.notes.append(f"{path}: empty file (no records)")
        elif report.legacy > legacy_before and verifier.file_chained:
            verifier.legacy_among_chained(path, report.legacy - legacy_before)
        elif report.legacy > legacy_before:
            count = report.legacy - legacy_before
            report.notes.append(f"{path}: {count} legacy CERT record(s), which carry no chain to verify")
    verifier.finish()
    if heads is not None:  # an empty set of heads (a run that recorded nothing) expects no chain
        found = {h.chain: h for h in report.heads}
        for chain, expected in heads.items():
            head = found.get(chain)
            if head is None:
                verifier._find(
                    "head-mismatch", "<heads>", f"chain {chain[:12]} from the heads file is absent", chain
                )
            elif head.hash != expected:
                verifier._find(
                    "head-mismatch",
                    head.location,
                    f"last line of chain {chain[:12]} does not hash to the recorded head: it was edited, "
                    "or lines after it were deleted",
                    chain,
                )
        for head in report.heads:
            if head.chain not in heads:
                verifier._find(
                    "unknown-chain",
                    head.location,
                    f"chain {head.chain[:12]} ({head.records} line(s), the last here) is not in the heads "
                    "file: its lines were inserted, or written after the heads were recorded",
                    head.chain,
                )
    return report


def _check_line(
    verifier: _Verifier,
    path: Path,
    number: int,
    raw: bytes,
    had_newline: bool,
    following: bytes | None = None,
) -> None:
    """Check one non-blank line; ``following`` is the next non-blank line of the file, if any."""
    if raw.endswith(b"\r"):  # CRLF line endings, converted after writing: whitespace, not content
        raw = raw[:-1]
        verifier.crlf = True
    report = verifier.report
    report.lines += 1
    location = f"{path}:{number}"
    data, problem = parse_line(raw)
    if problem is not None and _cut_short(raw) and _resumes(raw, following):
        verifier._find(
            "truncated",
            location,
            f"partial line of {len(raw)} bytes, then the lines written after it (a write cut short, e.g. "
            "by a crash or a full disk, and writing resumed); the records around it are intact",
        )
        return
    if problem is not None or not isinstance(data, dict):
        verifier._find("damaged", location, problem or "line is not a JSON object")
        return
    chain, seq, prev = data.get("chain"), data.get("seq"), data.get("prev")
    if chain is None and seq is None and prev is None:
        if "schema" not in data and "timestamp" in data:
            report.legacy += 1  # original CERT format: never chained, nothing to check
            if len(verifier.legacy_lines) < _LEGACY_NAMED:
                verifier.legacy_lines.append(location)
            return
        verifier._find(
            "unchained", location, "record carries no chain fields (chain, seq, prev); it was inserted"
        )
        return
    if (
        not isinstance(chain, str)
        or not isinstance(prev, str)
        or type(seq) is not int
        or not 0 <= seq <= MAX_COUNT
    ):
        verifier._find(
            "damaged", location, f"chain fields malformed: chain={chain!r} seq={seq!r} prev={prev!r}"
        )
        return
    report.chained += 1
    verifier.file_chained = True
    verifier.add(chain, _Link(seq, prev, hashlib.sha256(raw).hexdigest(), location))


def _cut_short(raw: bytes) -> bool:
    """Whether a bad line is the start of a record whose write stopped: JSON that ends early,
    perhaps inside a number (``250.``, ``1e-``) or a character's UTF-8 bytes."""
    if not (raw.startswith(_SCHEMA_START) or _SCHEMA_START.startswith(raw)):
        return False
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(raw)  # keeps back a cut character
    except UnicodeDecodeError:
        return False
    for attempt in (text, text + "0"):  # the 0 completes a number cut after its sign, point or e
        try:
            msgspec.json.decode(attempt)
        except msgspec.DecodeError as exc:
            if str(exc) == "Input data was truncated":
                return True
        else:
            return False
    return False


def _resumes(raw: bytes, following: bytes | None) -> bool:
    """Whether what follows a partial line is what follows a write cut short: nothing, the same
    writer writing the line again whole, or the first line of a writer that opened the file
    afterwards (a chain starting at seq 0 from the genesis link). Junk inserted mid-file is not."""
    if following is None or following.startswith(raw):
        return True
    data, problem = parse_line(following)
    return problem is None and isinstance(data, dict) and data.get("seq") == 0 and data.get("prev") == GENESIS
