"""Append-only JSONL trace files: :class:`TraceWriter` (hash-chained) and :func:`read_traces`.

Writing. Every line is a complete JSON object ending in ``\\n``; the buffer only ever holds complete
lines and each ``os.write`` hands the kernel whole lines on a descriptor opened with ``O_APPEND``,
so threads and processes sharing a file never interleave or tear lines. Each writer keeps its own
hash chain: every line carries ``chain`` (the writer's id), ``seq`` (0, 1, 2, ...) and ``prev``
(SHA-256 of the previous line of that chain, 64 zeros for the first), which lets
:func:`~cert_core.verify_traces` find edited, deleted, inserted and reordered lines.

Flush policy (documented loss bound): the buffer is written when it holds ``buffer_bytes``, when
``flush_interval`` seconds have passed since the last write to disk (checked on every record and by
one background thread for idle writers), on :meth:`TraceWriter.flush` / :meth:`~TraceWriter.close`
and at interpreter exit. A process killed with SIGKILL therefore loses at most the records of the
last ``flush_interval`` seconds, and never more than ``buffer_bytes`` of them. ``fsync`` adds
durability against power loss: ``never`` (default), ``flush`` (after each write to disk) or
``always`` (each record is written and synced at once).

An I/O failure never raises into the caller: the writer keeps the unwritten lines and retries on
the next flush (up to ``max_pending_bytes``), counts what it finally drops in :attr:`stats`, and
logs the first failure once through the ``cert_core`` logger.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import enum
import glob
import gzip
import io
import logging
import os
import re
import sys
import threading
import time
import weakref
import zlib
from binascii import hexlify
from collections.abc import Callable, Iterable, Iterator
from hashlib import sha256
from pathlib import Path
from time import monotonic
from typing import Any

import msgspec

from ._records import RecordError, TraceRecord, check_formats, formats_ok, json_fallback, new_trace_id

_SHA256 = sha256()  # never updated: the chain hashes each line in a copy of it
_HAS_FCNTL = sys.platform != "win32"  # Windows: rotation between processes is not coordinated
if _HAS_FCNTL:
    import fcntl

__all__ = [
    "GENESIS",
    "FsyncPolicy",
    "TraceReadError",
    "TraceSourceError",
    "TraceWriter",
    "WriterStats",
    "read_traces",
    "trace_files",
]

logger = logging.getLogger("cert_core")

#: ``prev`` of the first line of every chain.
GENESIS = "0" * 64
_ENCODER = msgspec.json.Encoder(enc_hook=json_fallback)
_NULL_COST = b',"cost_usd":null'
_PREV_TAG = b',"prev":"'
_END = b'"}'
_TAIL_BYTES = 160  # the chain fields and newline added to each line

_DECODER = msgspec.json.Decoder(TraceRecord)


class FsyncPolicy(str, enum.Enum):
    """When the writer asks the OS to put written data on disk."""

    NEVER = "never"
    FLUSH = "flush"
    ALWAYS = "always"


@dataclasses.dataclass
class WriterStats:
    """Counters of one writer. ``dropped`` records are lost; ``errors`` counts failed writes."""

    written: int = 0
    dropped: int = 0
    errors: int = 0
    flushes: int = 0
    bytes_written: int = 0
    rotations: int = 0
    last_error: str | None = None


class TraceWriter:
    """Append-only, hash-chained JSONL writer. Thread-safe; safe to share a file between processes.

    ``max_bytes`` turns on size-based rotation: when the file would grow past it, the file is
    renamed to ``<stem>.000001<suffix>`` (the next free number) and a new one started; the chain
    simply continues in the new file. Rotation between processes is coordinated with a lock file
    (``<path>.lock``, POSIX only), held from the size check to the end of the write, so a file
    outgrows ``max_bytes`` only by a single flush larger than ``max_bytes`` itself.
    """

    #: A writer takes records after the call that made them returned (cert_core's recording
    #: builds them in batches, see ``cert_core.flush_records``); :meth:`flush` delivers them first.
    cert_deferred = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        buffer_bytes: int = 64 * 1024,
        flush_interval: float = 1.0,
        fsync: FsyncPolicy | str = FsyncPolicy.NEVER,
        max_bytes: int | None = None,
        max_pending_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        if buffer_bytes < 0:
            raise ValueError(f"buffer_bytes must be >= 0, got {buffer_bytes}")
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be > 0 seconds, got {flush_interval}")
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        try:
            self.fsync = FsyncPolicy(fsync)
        except ValueError:
            choices = ", ".join(p.value for p in FsyncPolicy)
            raise ValueError(f"fsync must be one of {choices}; got {fsync!r}") from None
        self.path = Path(path)
        self.buffer_bytes = buffer_bytes
        self.flush_interval = flush_interval
        self.max_bytes = max_bytes
        self.max_pending_bytes = max_pending_bytes
        self._lock = threading.Lock()
        self._stats = WriterStats()
        self._reported = False
        self._closed = False
        self._fd: int | None = None
        self._fd_inode: int | None = None
        # Serialised records waiting for their chain fields, and chained lines (each followed by
        # b"\n") that a failed write left to retry.
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        self._unwritten: list[bytes] = []
        self._torn = False  # the file ends in part of one of our lines (a write cut short)
        self._last_flush = monotonic()
        self._new_chain()
        _live_writers.add(self)
        _ensure_flusher()

    def _new_chain(self) -> None:
        self.chain = new_trace_id()
        self._chain_tag = b',"chain":"%s","seq":' % self.chain.encode()
        self._seq = 0
        self._prev = GENESIS.encode()

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats)

    @property
    def head(self) -> tuple[str, int, str]:
        """``(chain, seq, hash)`` of the last line this writer produced (seq -1 before any)."""
        with self._lock:
            self._chain_queued()
            return self.chain, self._seq - 1, self._prev.decode()

    def write(self, record: TraceRecord) -> None:
        """Append one record. Never raises: a record that cannot be serialised is counted as dropped.

        The caller only serialises the record and queues it (no lock: a deque append is atomic);
        sequence numbers and links are assigned in queue order when the queue is drained, by the
        thread that triggers a flush. Threads therefore never wait on each other to record.
        """
        if record.chain is not None or record.seq is not None or record.prev is not None:
            record = record.replace(chain=None, seq=None, prev=None)  # it joins this writer's chain
        try:
            body = _ENCODER.encode(record)
        except Exception as exc:  # user values reach json_fallback's repr(), which may raise anything
            with self._lock:
                self._stats.dropped += 1
                self._fail(f"record {record.span_id} could not be serialised: {type(exc).__name__}: {exc}")
            return
        if self._closed:
            with self._lock:
                self._stats.dropped += 1
                self._fail(f"write after close of {self.path}")
            return
        # The rule of TraceRecord.to_dict: an LLM record states an unknown cost as null.
        head = body[:-1] + _NULL_COST if record.cost_usd is None and record.kind == "llm" else body[:-1]
        self._queue.append(head)
        # Unlocked counter: a lost update under threads only delays a flush by a few records.
        self._queued_bytes += len(head) + _TAIL_BYTES
        if self.fsync is FsyncPolicy.ALWAYS:  # on disk before returning: wait for a flushing thread
            with self._lock:
                self._flush_locked()
        elif (
            self._queued_bytes >= self.buffer_bytes or monotonic() - self._last_flush >= self.flush_interval
        ) and self._lock.acquire(blocking=False):  # busy means another thread is flushing now
            try:
                self._flush_locked()
            finally:
                self._lock.release()

    def record(self, record: TraceRecord) -> None:
        """:meth:`write`, under the name recorders use (``cert_core.add_recorder(writer)``)."""
        self.write(record)

    def flush(self) -> None:
        """Write everything queued to the file (and fsync it under the ``flush``/``always`` policy),
        records of finished calls still being built included."""
        _before_flush()
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        """Flush and close the file. Idempotent; later writes are counted as dropped."""
        _before_flush()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._flush_locked()
            lost = len(self._unwritten) // 2 + len(self._queue)
            if lost:
                self._stats.dropped += lost
                self._fail(f"{lost} records could not be written before close")
                self._unwritten.clear()
                self._queue.clear()
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
        _live_writers.discard(self)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A writer dropped without close() still writes what it holds. close() contains its own
        # I/O errors; anything else would be printed by Python as "Exception ignored in".
        if not getattr(self, "_closed", True) and (self._queue or self._unwritten or self._torn):
            self.close()

    def __repr__(self) -> str:
        return f"<TraceWriter {str(self.path)!r} chain={self.chain} seq={self._seq}>"

    def _flush_due(self, now: float) -> bool:
        return (
            bool(self._queue or self._unwritten or self._torn)
            and now - self._last_flush >= self.flush_interval
        )

    def _fail(self, message: str) -> None:
        self._stats.last_error = message
        if not self._reported:
            self._reported = True
            logger.error(
                "cert trace writer %s: %s (further problems are only counted; see writer.stats)",
                self.path,
                message,
            )

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        st = os.fstat(fd)
        if st.st_size:
            # A writer killed mid-write can leave a line without its newline; start ours on a fresh
            # line so the damage stays confined to that one line.
            with open(self.path, "rb") as existing:
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":
                    os.write(fd, b"\n")
        self._fd_inode = st.st_ino
        return fd

    def _chain_queued(self) -> None:
        """Give the queued records their chain fields, in queue order (lock held)."""
        queue, out = self._queue, self._unwritten
        seq, prev, tag = self._seq, self._prev, self._chain_tag
        fresh = _SHA256.copy  # a copy of a fresh hash skips OpenSSL's set-up: an eighth cheaper
        for _ in range(len(queue)):  # only what is queued now; later appends wait for the next flush
            line = b"%s%s%d%s%s%s" % (queue.popleft(), tag, seq, _PREV_TAG, prev, _END)
            digest = fresh()
            digest.update(line)
            prev = hexlify(digest.digest())
            seq += 1
            out.append(line)
            out.append(b"\n")
        self._seq, self._prev = seq, prev
        self._queued_bytes = 0

    def _flush_locked(self) -> None:
        self._last_flush = monotonic()
        self._chain_queued()
        if not self._unwritten and not self._torn:
            return
        # After a write cut short, the file ends in part of a line: end it first, so that the
        # line is written again whole after it (cert verify reports the part as truncated).
        data = b"".join([b"\n", *self._unwritten] if self._torn else self._unwritten)
        done = 0
        try:
            if self._fd is None:
                self._fd = self._open()
            # With rotation, the size check and the write are one step between processes (else
            # two could each find room for their flush and together outgrow max_bytes).
            with _NO_LOCK if self.max_bytes is None else _rotation_lock(self.path):
                if self.max_bytes is not None:
                    self._maybe_rotate(len(data))  # follows a file replaced by another process, too
                else:
                    self._follow_path()
                view = memoryview(data)
                while done < len(data):
                    done += os.write(self._fd, view[done:])
            if self.fsync is not FsyncPolicy.NEVER:
                os.fsync(self._fd)
        except OSError as exc:
            self._stats.errors += 1
            self._fail(f"write failed: {exc}")
            self._stats.bytes_written += done
            if done:  # the lines before the failure are on disk (the newline ending a torn line first)
                self._forget_written(done - self._torn)
            if len(data) - done > self.max_pending_bytes:
                # Given up; the file may still end in part of a line, which the next write ends.
                self._stats.dropped += len(self._unwritten) // 2
                self._unwritten.clear()
            return
        self._torn = False
        self._stats.written += len(self._unwritten) // 2  # each line is followed by its newline
        self._stats.bytes_written += len(data)
        self._stats.flushes += 1
        self._unwritten.clear()

    def _forget_written(self, done: int) -> None:
        """Drop the lines a failed flush wrote whole (``done`` bytes of ``_unwritten``), so that
        they are not written twice; a line it wrote in part stays, and the file is torn."""
        kept, index = self._unwritten, 0
        while index < len(kept) and done >= len(kept[index]):  # line, newline, line, ...
            done -= len(kept[index])
            index += 1
        if index % 2:  # a line went out whole, not its newline: the next flush's first byte ends it
            index += 1
            self._torn = True
        else:
            self._torn = done > 0
        self._stats.written += index // 2
        del kept[:index]

    def _maybe_rotate(self, incoming: int) -> None:
        """Archive the file if ``incoming`` bytes would take it past ``max_bytes`` (rotation lock held)."""
        assert self._fd is not None
        assert self.max_bytes is not None
        on_disk = self._on_disk()
        if on_disk is None:  # another process rotated the file: follow it to the new one
            self._reopen()
            assert self._fd is not None
            on_disk = os.fstat(self._fd)
        if on_disk.st_size and on_disk.st_size + incoming > self.max_bytes:
            self.path.rename(_next_archive(self.path))
            self._reopen()
            self._stats.rotations += 1

    def _on_disk(self) -> os.stat_result | None:
        """The file at the path, or ``None`` when it is gone or is not the one held open."""
        try:
            on_disk = self.path.stat()
        except FileNotFoundError:
            return None
        return on_disk if on_disk.st_ino == self._fd_inode else None

    def _follow_path(self) -> None:
        """Write to the file at the path: one deleted, moved or replaced since it was opened would
        otherwise take (or hide) every later record."""
        if self._on_disk() is None:
            logger.info(
                "cert trace writer %s: the file was deleted, moved or replaced since it was opened; "
                "writing to a new file there",
                self.path,
            )
            self._reopen()

    def _reopen(self) -> None:
        # Forget the old descriptor before opening: if opening fails, its number (which the
        # system may hand to another file) must not be written to.
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._fd = self._open()

    def _after_fork_in_child(self) -> None:
        # The parent flushes what it had buffered; the child gets a chain of its own so the two
        # processes never write conflicting sequence numbers.
        self._lock = threading.Lock()
        self._queue = collections.deque()
        self._queued_bytes = 0
        self._unwritten = []  # _torn stays: the file may end in part of a parent's line
        self._new_chain()


_NO_LOCK = contextlib.nullcontext()


@contextlib.contextmanager
def _rotation_lock(path: Path) -> Iterator[None]:
    if not _HAS_FCNTL:  # pragma: no cover
        yield
        return
    lock_path = f"{path}.lock"
    held = _rotation_locks_held.paths
    if lock_path in held:
        # Already this thread's: a finaliser or signal handler flushing another writer of the same
        # file inside our write. A second flock, on a new descriptor, would wait for us forever.
        yield
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.add(lock_path)
        try:
            yield
        finally:
            held.discard(lock_path)
    finally:
        os.close(fd)


class _HeldLocks(threading.local):
    def __init__(self) -> None:
        self.paths: set[str] = set()  # lock files whose flock this thread holds


_rotation_locks_held = _HeldLocks()


def _next_archive(path: Path) -> Path:
    stem, suffix = _split_suffix(path.name)
    pattern = re.compile(re.escape(stem) + r"\.(\d{6,})" + re.escape(suffix) + r"(\.gz)?")
    numbers = [int(m.group(1)) for p in path.parent.iterdir() if (m := pattern.fullmatch(p.name))]
    return path.with_name(f"{stem}.{max(numbers, default=0) + 1:06d}{suffix}")


def _split_suffix(name: str) -> tuple[str, str]:
    for suffix in (".jsonl", ".ndjson", ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


_live_writers: weakref.WeakSet[TraceWriter] = weakref.WeakSet()
_flusher_lock = threading.Lock()
_flusher: threading.Thread | None = None


def _ensure_flusher() -> None:
    global _flusher
    with _flusher_lock:
        if _flusher is None or not _flusher.is_alive():
            _flusher = threading.Thread(target=_flush_idle_writers, name="cert-trace-flusher", daemon=True)
            _flusher.start()


#: Set by cert_core's recording: builds the records of finished calls (never raises). Runs
#: before a flush, never under a writer's lock (building a record writes it).
before_flush_hook: Callable[[], None] | None = None


def _before_flush() -> None:
    hook = before_flush_hook
    if hook is not None:
        hook()


def _flush_idle_writers() -> None:
    while not _shutting_down:
        time.sleep(0.1)
        _before_flush()
        now = monotonic()
        for writer in list(_live_writers):
            if writer._flush_due(now):
                writer.flush()


_shutting_down = False


@atexit.register
def _flush_all_at_exit() -> None:
    global _shutting_down
    _shutting_down = True  # the idle flusher stops before the interpreter tears down
    for writer in list(_live_writers):
        writer.close()


def _before_fork() -> None:
    for writer in list(_live_writers):
        writer._lock.acquire()


def _after_fork_in_parent() -> None:
    for writer in list(_live_writers):
        writer._lock.release()


def _after_fork_in_child() -> None:
    global _flusher
    _flusher = None
    for writer in list(_live_writers):
        writer._after_fork_in_child()
    if _live_writers:
        _ensure_flusher()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )


class TraceSourceError(OSError):
    """A trace source that cannot be read at all: missing file, empty directory, unreadable file."""


class TraceReadError(ValueError):
    """A bad line: ``str()`` reads ``file:line: field: problem``."""

    def __init__(self, file: str, line: int, field: str, problem: str) -> None:
        super().__init__(f"{file}:{line}: {field}: {problem}")
        self.file = file
        self.line = line
        self.field = field
        self.problem = problem


_TRACE_PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.ndjson", "*.ndjson.gz")
_ARCHIVE = re.compile(r"(.*)\.(\d{6,})(\.[a-z]+)(\.gz)?")


def _natural_order(path: Path) -> tuple[str, int, str]:
    # Rotated archives (traces.000001.jsonl) sort before the live file (traces.jsonl), in number order.
    m = _ARCHIVE.fullmatch(path.name)
    if m:
        return (str(path.parent / (m.group(1) + m.group(3))), int(m.group(2)), path.name)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return (str(path.parent / name), 1 << 62, path.name)


def trace_files(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files a source names: a file, a directory (its ``*.jsonl``/``*.jsonl.gz``) or a glob.

    Each file comes once however often it is named, in natural order: a rotated log's archives
    (``traces.000001.jsonl``, ...) in number order before its live file. Raises
    :class:`TraceSourceError` when a source matches nothing.
    """
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    files: list[Path] = []
    for item in sources:
        path = Path(item)
        if path.is_dir():
            found = sorted({p for pattern in _TRACE_PATTERNS for p in path.glob(pattern)}, key=_natural_order)
            if not found:
                raise TraceSourceError(
                    f"{path}: no trace files ({', '.join(_TRACE_PATTERNS)}) in this directory"
                )
            files.extend(found)
        elif path.exists():
            files.append(path)
        elif any(c in str(item) for c in "*?["):
            # glob.glob, not Path.glob: users pass absolute patterns too
            found_paths = glob.glob(str(item), recursive=True)  # noqa: PTH207
            matched = sorted((p for p in map(Path, found_paths) if p.is_file()), key=_natural_order)
            if not matched:
                raise TraceSourceError(f"{item}: no file matches this pattern")
            files.extend(matched)
        else:
            raise TraceSourceError(f"{path}: no such file or directory")
    # Each file once, however often it was named, and a rotated log's archives before its live file.
    unique = {path.resolve(): path for path in reversed(files)}
    for resolved, path in list(unique.items()):
        if resolved.name.endswith(".gz") and resolved.with_name(resolved.name[:-3]) in unique:
            # "gzip -k" keeps both: read the file it was made from, not the same records twice.
            logger.warning("%s: skipped, %s is read instead (the same log, compressed)", path, path.name[:-3])
            del unique[resolved]
    return sorted(unique.values(), key=_natural_order)


def _open_binary(path: Path) -> io.BufferedIOBase:
    try:
        if path.name.endswith(".gz"):
            return gzip.GzipFile(path, "rb")
        return path.open("rb")  # a BufferedReader
    except OSError as exc:
        raise TraceSourceError(f"{path}: cannot open: {exc.strerror or exc}") from exc


_CHUNK = 1 << 20
# Compressed files are read one decompression step at a time: the records before damage all come back.
_GZ_CHUNK = 1 << 14


def iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """``(line_number, line_without_newline, had_newline)`` for each line, streaming.

    Raises :class:`TraceReadError` for a compressed file that ends early or is not gzip.
    """
    counter = _LineCounter(path)
    counter.eager = True  # every line is numbered here anyway
    for offset, buffer, start, end in _blocks(path, str(path), counter):
        lines = buffer[start:end].split(b"\n")
        last = lines.pop()  # b"" when the block ends with a newline, as all but a file's last do
        before = counter.lines
        for index, line in enumerate(lines, start=before + 1):
            yield index, line, True
        number = before + len(lines)
        if last:
            number += 1
            yield number, last, False
        counter.advance(offset + end - start, number)


def parse_line(raw: bytes) -> tuple[Any, str | None]:
    """Decode one line: ``(object, None)`` or ``(None, problem)``."""
    try:
        return msgspec.json.decode(raw), None
    except msgspec.DecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return None, f"not UTF-8 text (byte 0x{raw[uexc.start]:02x} at column {uexc.start + 1})"
        return None, f"not valid JSON ({exc})"


def read_traces(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    strict: bool = True,
    on_error: Callable[[TraceReadError], None] | None = None,
) -> Iterator[TraceRecord]:
    """Stream the records of one or more trace files (``.gz`` too), one line at a time.

    ``source`` is a file, a directory, a glob, or a list of those; rotated archives come before
    the live file. Lines in the original CERT framework's format are converted (see
    :func:`~cert_core.from_legacy`); blank lines are skipped. In strict mode (default) the first
    bad line raises :class:`TraceReadError` (``file:line: field: problem``). In tolerant mode
    (``strict=False``) bad lines are skipped and each is passed to ``on_error``, or logged as a
    warning on the ``cert_core`` logger when no callback is given. A source that matches nothing
    raises :class:`TraceSourceError` in both modes.
    """
    for path in trace_files(source):
        name = str(path)
        lines = _LineCounter(path)
        try:
            for offset, buffer, start, end in _blocks(path, name, lines):
                records = _decode_block(buffer, start, end)
                if records is not None:
                    if lines.eager:
                        lines.advance(offset + end - start, lines.lines + buffer.count(b"\n", start, end))
                    yield from records
                else:
                    before = lines.at(offset)
                    yield from _decode_each_line(buffer[start:end], name, before, strict, on_error)
                    lines.advance(offset + end - start, before + buffer.count(b"\n", start, end))
        except TraceReadError as exc:
            if strict or exc.field != "<file>":
                raise
            _report(exc, on_error)


_BLOCK = 1 << 16
_BOM = b"\xef\xbb\xbf"
_DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError)
_SCHEMA_START = b'{"schema":'


class _LineCounter:
    """Line numbers for error messages, counted only when one is needed.

    Clean blocks are never scanned for newlines (that scan would cost as much as a fifth of the
    reader's time); a bad block asks for the line number at its byte offset, and the count
    resumes from the last known position by reading the file again, so each byte is counted at
    most once. Compressed files cannot seek: their blocks are counted as they stream by.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.eager = path.name.endswith(".gz")
        self.offset = 0
        self.lines = 0

    def advance(self, offset: int, lines: int) -> None:
        self.offset, self.lines = offset, lines

    def at(self, offset: int) -> int:
        if offset > self.offset:
            with self.path.open("rb") as stream:
                stream.seek(self.offset)
                remaining = offset - self.offset
                while remaining > 0:
                    data = stream.read(min(remaining, _CHUNK))
                    if not data:
                        break
                    self.lines += data.count(b"\n")
                    remaining -= len(data)
            self.offset = offset
        return self.lines


def _blocks(path: Path, name: str, lines: _LineCounter) -> Iterator[tuple[int, bytes, int, int]]:
    """``(file offset, buffer, start, end)``: blocks of whole lines of about 64 KiB.

    Streams the file in large reads and hands out slices by offset, so the bytes are not copied;
    only a line split across two reads is joined. Only the last block can lack a final newline.
    """
    size = _GZ_CHUNK if path.name.endswith(".gz") else _CHUNK
    position = 0  # file offset of the start of ``chunk``
    with _open_binary(path) as stream:
        rest = b""
        while True:
            try:
                chunk = stream.read1(size)  # one decompression step: a damaged one loses no earlier data
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                damaged = f"compressed data is damaged: {exc}"
                raise TraceReadError(name, lines.lines + 1, "<file>", damaged) from exc
            if not chunk:
                if rest:
                    yield position - len(rest), rest, 0, len(rest)
                return
            if position == 0 and chunk.startswith(_BOM):  # an editor's byte order mark, not a record's
                chunk, position = chunk[len(_BOM) :], len(_BOM)
            start = 0
            if rest:
                newline = chunk.find(b"\n")
                if newline < 0:
                    rest += chunk
                    position += len(chunk)
                    continue
                joined = rest + chunk[: newline + 1]
                yield position - len(rest), joined, 0, len(joined)
                start = newline + 1
            cut = chunk.rfind(b"\n") + 1
            rest = chunk[cut:] if cut < len(chunk) else b""
            while start < cut:
                end = chunk.find(b"\n", start + _BLOCK, cut)
                end = cut if end < 0 else end + 1
                yield position + start, chunk, start, end
                start = end
            position += len(chunk)


def _decode_block(buffer: bytes, start: int, end: int) -> list[TraceRecord] | None:
    """All records of a block in one C call, or ``None`` when any line needs a closer look
    (a bad line or a legacy one). Blank lines are skipped, as on the careful path."""
    try:
        records: list[TraceRecord] = _DECODER.decode_lines(memoryview(buffer)[start:end])
    except _DECODE_ERRORS:
        return None
    if formats_ok(records):
        return records
    for record in records:
        if check_formats(record) is not None:
            return None
    return records


def _decode_each_line(
    block: bytes,
    name: str,
    before: int,
    strict: bool,
    on_error: Callable[[TraceReadError], None] | None,
) -> Iterator[TraceRecord]:
    """The careful path: line by line, converting legacy lines and explaining bad ones."""
    decode = _DECODER.decode
    for number, raw in enumerate(block.split(b"\n"), start=before + 1):
        try:
            record = decode(raw) if raw.startswith(_SCHEMA_START) else None
        except _DECODE_ERRORS:
            record = None
        if record is not None:
            problem = check_formats(record)
            if problem is None:
                yield record
                continue
            error = TraceReadError(name, number, problem.field, problem.problem)
        elif not raw.strip():
            continue
        else:
            data, why = parse_line(raw)
            if why is not None:
                error = TraceReadError(name, number, "<line>", why)
            else:
                try:
                    yield TraceRecord.from_dict(data)
                    continue
                except RecordError as exc:
                    error = TraceReadError(name, number, exc.field, exc.problem)
        if strict:
            raise error
        _report(error, on_error)


def _report(error: TraceReadError, on_error: Callable[[TraceReadError], None] | None) -> None:
    if on_error is not None:
        on_error(error)
    else:
        logger.warning("skipped bad trace line: %s", error)
