from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cert_core
from cert_core import FsyncPolicy, TraceReadError, TraceSourceError, TraceWriter, read_traces, verify_traces
from tests.conftest import make_record


def test_writer_appends_chained_lines_and_reader_gets_records_back(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    records = [make_record(i) for i in range(5)]
    with TraceWriter(path) as writer:
        for record in records:
            writer.write(record)
        chain = writer.chain
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert len(lines) == 6
    back = list(read_traces(path))
    assert [r.replace(chain=None, seq=None, prev=None) for r in back] == records
    assert [r.seq for r in back] == [0, 1, 2, 3, 4]
    assert {r.chain for r in back} == {chain}
    assert back[0].prev == cert_core.GENESIS
    assert writer.stats.written == 5
    assert writer.stats.dropped == 0


def test_head_reports_the_last_line_hash(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path)
    assert writer.head == (writer.chain, -1, cert_core.GENESIS)
    writer.write(make_record(0))
    writer.write(make_record(1))
    _, seq, digest = writer.head
    writer.close()
    assert seq == 1
    assert digest == hashlib.sha256(path.read_bytes().split(b"\n")[1]).hexdigest()


def test_buffer_is_flushed_when_full_not_before(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path, buffer_bytes=10_000, flush_interval=3600)
    writer.write(make_record(0))
    assert not path.exists() or path.stat().st_size == 0
    while writer.stats.flushes == 0:
        writer.write(make_record(1))
    assert path.stat().st_size >= 10_000
    writer.close()


def test_idle_buffer_is_flushed_by_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path, buffer_bytes=1 << 30, flush_interval=0.2)
    writer.write(make_record(0))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (path.exists() and path.stat().st_size):
        time.sleep(0.05)
    assert path.stat().st_size > 0, "the background flusher never wrote the idle buffer"
    writer.close()


def test_buffered_records_are_written_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    code = f"""
        import cert_core
        from tests.conftest import make_record
        w = cert_core.TraceWriter({str(path)!r}, buffer_bytes=1 << 30, flush_interval=3600)
        for i in range(7):
            w.write(make_record(i))
        # no flush, no close: the atexit hook must write them
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, cwd=Path(__file__).parents[2])
    assert len(list(read_traces(path))) == 7
    assert verify_traces(path).exit_code == 0


@pytest.mark.parametrize("policy", ["never", "flush", "always", FsyncPolicy.ALWAYS])
def test_fsync_policies_write_everything(tmp_path: Path, policy: str) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, fsync=policy) as writer:
        for i in range(3):
            writer.write(make_record(i))
        if FsyncPolicy(policy) is FsyncPolicy.ALWAYS:
            assert writer.stats.flushes == 3  # every record is on disk at once
    assert len(list(read_traces(path))) == 3


def test_bad_writer_settings_are_refused_with_the_accepted_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync must be one of never, flush, always; got 'sometimes'"):
        TraceWriter(tmp_path / "t.jsonl", fsync="sometimes")
    with pytest.raises(ValueError, match="flush_interval"):
        TraceWriter(tmp_path / "t.jsonl", flush_interval=0)


def test_io_failure_never_raises_and_is_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    writer = TraceWriter(blocker / "t.jsonl", buffer_bytes=0)
    with caplog.at_level(logging.ERROR, logger="cert_core"):
        for i in range(3):
            writer.write(make_record(i))  # each tries to flush and fails
        writer.flush()
        writer.close()
    stats = writer.stats
    assert stats.errors >= 3
    assert stats.dropped == 3
    assert stats.written == 0
    assert "write failed" in (stats.last_error or "") or "could not be written" in (stats.last_error or "")
    assert len([r for r in caplog.records if r.name == "cert_core"]) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_keeps_records_for_retry_then_counts_them(tmp_path: Path) -> None:
    writer = TraceWriter("/dev/full", buffer_bytes=0)
    writer.write(make_record(0))
    assert writer.stats.errors == 1
    assert writer.stats.dropped == 0  # kept for the next try
    writer.close()
    assert writer.stats.dropped == 1


def cut_once(monkeypatch: pytest.MonkeyPatch, at: Callable[[bytes], int]) -> list[int]:
    """The next flush's write goes out up to ``at(data)`` bytes, then the disk is full."""
    real_write, calls = os.write, []

    def disk_fills(fd: int, data: Any) -> int:
        if not calls:
            calls.append(fd)
            offset = at(bytes(data))
            if offset:
                return real_write(fd, data[:offset])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_fills)
    return calls


@pytest.mark.parametrize(
    "cut",
    [
        "nothing",
        "inside-a-line",
        "a-byte-into-a-line",
        "inside-a-number",
        "before-its-newline",
        "after-its-newline",
    ],
)
def test_a_write_cut_short_is_resumed_without_repeating_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: str
) -> None:
    """The disk fills in the middle of a flush: the lines that went out are not written again
    (cert verify would call a repeat an insertion), a part of a line is ended and the line
    written again whole, and nothing is lost."""
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path)
    for i in range(5):
        writer.write(make_record(i))

    def cut_at(raw: bytes) -> int:
        ends = [i + 1 for i, byte in enumerate(raw) if byte == ord("\n")]
        number = raw.index(b'"duration_ms":', ends[1]) + len(b'"duration_ms":')
        # after line 2 / within line 3 / line 3 without its newline / after line 3
        return {
            "nothing": 0,
            "inside-a-line": ends[1] + 10,
            "a-byte-into-a-line": ends[1] + 1,
            "inside-a-number": raw.index(b".", number) + 1,  # "duration_ms":250.
            "before-its-newline": ends[2] - 1,
            "after-its-newline": ends[2],
        }[cut]

    real_write = os.write
    cut_once(monkeypatch, cut_at)
    writer.flush()  # never raises
    monkeypatch.setattr(os, "write", real_write)
    assert writer.stats.errors == 1
    for i in range(5, 7):
        writer.write(make_record(i))
    writer.close()

    assert writer.stats.written == 7
    assert writer.stats.dropped == 0
    assert writer.stats.bytes_written == path.stat().st_size
    report = verify_traces(path)
    assert not report.tampered, report.findings
    assert [(h.records, h.last_seq) for h in report.heads] == [(7, 6)]
    torn = cut in ("inside-a-line", "a-byte-into-a-line", "inside-a-number")
    assert [f.kind for f in report.findings] == (["truncated"] if torn else [])
    errors: list[TraceReadError] = []
    records = list(read_traces(path, strict=False, on_error=errors.append))
    assert [r.seq for r in records] == list(range(7))
    assert len(errors) == torn


def test_records_given_up_after_a_cut_never_merge_into_the_part_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path, max_pending_bytes=10)  # gives up on the rest at once
    for i in range(5):
        writer.write(make_record(i))
    cut_once(monkeypatch, lambda data: data.index(b"\n", data.index(b"\n") + 1) + 11)  # into line 3
    writer.flush()
    monkeypatch.undo()
    assert writer.stats.dropped == 3
    for i in range(5, 7):
        writer.write(make_record(i))
    writer.close()
    errors: list[TraceReadError] = []
    records = list(read_traces(path, strict=False, on_error=errors.append))
    assert [r.output for r in records] == ["answer 0", "answer 1", "answer 5", "answer 6"]
    assert [e.line for e in errors] == [3]  # the part line, alone on its line
    assert writer.stats.bytes_written == path.stat().st_size


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_the_file_ends_in_a_part_line_ends_it_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path)
    for i in range(3):
        writer.write(make_record(i))
    cut_once(monkeypatch, lambda data: len(data) - 1)  # all but the last newline
    writer.flush()
    monkeypatch.undo()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            for i in range(10, 12):
                writer.write(make_record(i))
            writer.close()
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    writer.write(make_record(3))
    writer.close()
    outputs = sorted(r.output for r in read_traces(path))
    assert outputs == sorted(f"answer {i}" for i in (0, 1, 2, 3, 10, 11))
    report = verify_traces(path)
    assert report.exit_code == 0, report.findings
    assert sorted(h.records for h in report.heads) == [2, 4]


def test_fsync_always_waits_for_a_flush_under_way(tmp_path: Path) -> None:
    """With fsync="always" a record is on disk when write() returns, even while another thread
    holds the writer (it used to return at once, its record still queued)."""
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path, fsync="always", buffer_bytes=0)
    done = threading.Event()

    def write_one() -> None:
        writer.write(make_record(1))
        done.set()

    with writer._lock:  # another thread's flush, as it were
        worker = threading.Thread(target=write_one)
        worker.start()
        assert not done.wait(0.3)
    assert done.wait(10)
    worker.join()
    assert [r.output for r in read_traces(path)] == ["answer 1"]
    writer.close()


def test_a_failed_reopen_on_rotation_never_writes_to_a_stale_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path, buffer_bytes=0, max_bytes=3000)
    writer.write(make_record(0))
    real_open, failures = TraceWriter._open, []

    def open_fails_once(self: TraceWriter) -> int:
        if not failures:
            failures.append(1)
            raise OSError(24, "Too many open files")
        return real_open(self)

    monkeypatch.setattr(TraceWriter, "_open", open_fails_once)
    i = 1
    while not failures:  # until a rotation needs a new file
        writer.write(make_record(i))
        i += 1
    assert writer._fd is None  # the closed descriptor's number is forgotten
    assert writer.stats.errors == 1
    writer.write(make_record(i))
    writer.close()
    records = list(read_traces(tmp_path))
    assert [r.seq for r in records] == list(range(i + 1))
    assert verify_traces(tmp_path).exit_code == 0


class Unreprable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_values_json_cannot_express_are_written_as_repr_and_unencodable_records_dropped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.jsonl"

    class Thing:
        def __repr__(self) -> str:
            return "<Thing>"

    with TraceWriter(path) as writer:
        writer.write(make_record(0, metadata={"thing": Thing(), "tags": {"a"}, "raw": b"\xff"}))
        looped: list[object] = []
        looped.append(looped)
        writer.write(make_record(1, metadata={"loop": looped}))
        writer.write(make_record(2, metadata={"broken": Unreprable()}))  # its repr() raises
    (back,) = read_traces(path)
    assert back.metadata == {"thing": "<Thing>", "tags": ["a"], "raw": "/w=="}  # bytes as base64
    assert writer.stats.dropped == 2
    assert "could not be serialised: RuntimeError: no repr" in (writer.stats.last_error or "")


def test_write_after_close_is_counted_not_raised(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path / "t.jsonl")
    writer.close()
    writer.close()  # idempotent
    writer.write(make_record())
    assert writer.stats.dropped == 1


def test_records_from_another_file_join_this_writers_chain(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with TraceWriter(first) as writer:
        for i in range(3):
            writer.write(make_record(i))
    with TraceWriter(second) as writer:
        for record in read_traces(first):
            writer.write(record)
    assert verify_traces(second).exit_code == 0
    assert {r.chain for r in read_traces(second)} == {writer.chain}


def test_eight_threads_share_one_file_without_tearing_or_loss(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path, buffer_bytes=4096)

    def work(t: int) -> None:
        for i in range(5000):
            writer.write(make_record(i, metadata={"thread": t, "i": i}))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    records = list(read_traces(path))
    assert len(records) == 40_000
    assert {(r.metadata or {})["thread"] for r in records} == set(range(8))
    for t in range(8):
        mine = [(r.metadata or {})["i"] for r in records if (r.metadata or {})["thread"] == t]
        assert mine == list(range(5000))  # each thread's records in its own order
    report = verify_traces(path)
    assert report.exit_code == 0, report.findings[:3]
    assert report.chained == 40_000


WRITER_PROCESS = """
import sys
import cert_core
from tests.conftest import make_record
path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with cert_core.TraceWriter(path, buffer_bytes=2048) as writer:
    for i in range(count):
        writer.write(make_record(i, metadata={"worker": worker, "i": i}))
"""


def test_four_processes_share_one_file_without_tearing_or_loss(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_PROCESS, str(path), str(w), "5000"], cwd=Path(__file__).parents[2]
        )
        for w in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    records = list(read_traces(path))  # strict: every line parses
    assert len(records) == 20_000
    assert len({r.chain for r in records}) == 4
    for w in range(4):
        assert [(r.metadata or {})["i"] for r in records if (r.metadata or {})["worker"] == w] == list(
            range(5000)
        )
    report = verify_traces(path)
    assert report.exit_code == 0, report.findings[:3]
    assert len(report.heads) == 4


def test_forked_child_gets_its_own_chain(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path, buffer_bytes=1 << 20, flush_interval=3600)
    writer.write(make_record(0))  # buffered in the parent at fork time
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            writer.write(make_record(1))
            writer.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    writer.write(make_record(2))
    writer.close()
    records = list(read_traces(path))
    assert sorted(r.output for r in records) == ["answer 0", "answer 1", "answer 2"]  # nothing twice
    assert len({r.chain for r in records}) == 2
    assert verify_traces(path).exit_code == 0


KILLED_WRITER = """
import os, sys
import cert_core
from tests.conftest import make_record
path, buffer_bytes = sys.argv[1], int(sys.argv[2])
writer = cert_core.TraceWriter(path, buffer_bytes=buffer_bytes, flush_interval=3600)
i = 0
while True:
    writer.write(make_record(i))
    os.write(1, b"%d\\n" % i)  # progress: record i has been handed to the writer
    i += 1
"""


def test_sigkill_loses_only_the_unflushed_buffer(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    buffer_bytes = 16 * 1024
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path), str(buffer_bytes)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    assert proc.stdout is not None
    reported = -1
    while reported < 3000:
        reported = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    rest = proc.stdout.read().split()
    proc.wait()
    proc.stdout.close()
    handed = int(rest[-1]) + 1 if rest else reported + 1
    records = list(read_traces(path, strict=False))
    kept = [int(r.output.split()[1]) for r in records]
    assert kept == list(range(len(kept))), "records lost from the middle"
    line_bytes = path.stat().st_size // max(len(kept), 1)
    lost = handed - len(kept)
    assert 0 <= lost <= buffer_bytes // line_bytes + 2, (handed, len(kept))
    report = verify_traces(path)
    assert not report.tampered, report.findings
    assert report.exit_code in (0, 3)


def test_cut_short_write_is_a_truncated_tail_and_a_new_writer_starts_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as writer:
        for i in range(4):
            writer.write(make_record(i))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # as a crash in the middle of the last write leaves it
    report = verify_traces(path)
    assert report.exit_code == 3
    assert [f.kind for f in report.findings] == ["truncated"]
    assert f"{path}:4" in report.findings[0].location
    errors: list[TraceReadError] = []
    assert len(list(read_traces(path, strict=False, on_error=errors.append))) == 3
    assert errors[0].line == 4
    with TraceWriter(path) as writer:  # a restarted writer appends after a newline
        writer.write(make_record(9))
    back = list(read_traces(path, strict=False))
    assert back[-1].output == "answer 9"


def test_rotation_keeps_the_chain_across_files(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, buffer_bytes=0, max_bytes=3000) as writer:
        for i in range(20):
            writer.write(make_record(i))
    files = sorted(p.name for p in tmp_path.glob("t*.jsonl"))
    assert "t.000001.jsonl" in files
    assert len(files) >= 3
    assert writer.stats.rotations == len(files) - 1
    records = list(read_traces(tmp_path))
    assert [r.seq for r in records] == list(range(20))
    assert [r.output for r in records] == [f"answer {i}" for i in range(20)]
    assert verify_traces(tmp_path).exit_code == 0
    # The live file alone starts mid-chain: the earlier records are reported missing.
    alone = verify_traces(path)
    assert alone.exit_code == 1
    assert "verify the earlier files too" in alone.findings[0].message


def test_a_flush_inside_a_rotating_write_of_the_same_file_does_not_wait_for_itself(tmp_path: Path) -> None:
    """A garbage-collected writer or a signal handler can flush another writer of the same file
    on the thread that holds the rotation lock; a second flock there would wait forever."""
    path = tmp_path / "t.jsonl"
    first = TraceWriter(path, buffer_bytes=0, max_bytes=100_000)
    second = TraceWriter(path, buffer_bytes=1 << 20, max_bytes=100_000)
    second.write(make_record(0))
    rotate = first._maybe_rotate

    def flush_the_other_first(incoming: int) -> None:  # what a finaliser run here would do
        second.flush()
        rotate(incoming)

    first._maybe_rotate = flush_the_other_first  # type: ignore[method-assign]
    worker = threading.Thread(target=first.write, args=(make_record(1),), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the flush waited for a lock its own thread holds"
    first.close()
    second.close()
    assert sorted(r.output for r in read_traces(path)) == ["answer 0", "answer 1"]


def test_processes_rotating_one_file_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    code = WRITER_PROCESS.replace("buffer_bytes=2048", "buffer_bytes=2048, max_bytes=50_000")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path), str(w), "1500"], cwd=Path(__file__).parents[2]
        )
        for w in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    records = list(read_traces(tmp_path))
    assert len(records) == 4500
    archives = list(tmp_path.glob("t.*.jsonl"))
    assert len(archives) >= 2
    # The size check and the write are one step between processes: no archive outgrows max_bytes.
    assert max(p.stat().st_size for p in archives) <= 50_000
    report = verify_traces(tmp_path)
    assert report.exit_code == 0, report.findings[:3]


def test_reader_takes_gzip_directories_and_globs_in_rotation_order(tmp_path: Path) -> None:
    with TraceWriter(tmp_path / "a.jsonl") as writer:
        for i in range(3):
            writer.write(make_record(i))
    with gzip.open(tmp_path / "b.jsonl.gz", "wb") as gz:
        gz.write((tmp_path / "a.jsonl").read_bytes())
    assert len(list(read_traces(tmp_path / "b.jsonl.gz"))) == 3
    assert len(list(read_traces(tmp_path))) == 6
    assert len(list(read_traces(str(tmp_path / "*.jsonl*")))) == 6
    assert len(list(read_traces([tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"]))) == 6


def test_reader_orders_rotated_archives_before_the_live_file(tmp_path: Path) -> None:
    for name in ("x.jsonl", "x.000010.jsonl", "x.000002.jsonl", "w.jsonl"):
        (tmp_path / name).write_text("")
    assert [p.name for p in cert_core.trace_files(tmp_path)] == [
        "w.jsonl",
        "x.000002.jsonl",
        "x.000010.jsonl",
        "x.jsonl",
    ]


@pytest.mark.parametrize("compressed", [False, True], ids=["jsonl", "gz"])
def test_reader_streams_without_loading_the_file(tmp_path: Path, compressed: bool) -> None:
    """Reading a 16 MB file through holds a few of its blocks in memory, never the file."""
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as writer:
        for i in range(16_000):
            writer.write(make_record(i, output=f"answer {i} " + "x" * 1000))
    size = path.stat().st_size
    assert size > 16_000_000
    if compressed:
        gz = tmp_path / "t.jsonl.gz"
        gz.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
        path.unlink()
        path = gz
    tracemalloc.start()
    try:
        count = 0
        for record in read_traces(path):
            count += 1
            assert record.seq == count - 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 16_000
    assert peak < size / 4, f"peak {peak:,} bytes while reading a {size:,}-byte file"


# Bad input: each case gives a message naming the file and the line.
BAD_LINES = [
    (b"\x00\xff\xfe garbage \x80", "<line>", "not UTF-8 text"),
    (b'{"schema":"cert.trace/1","trace_id":"ab', "<line>", "not valid JSON"),
    (b"[1, 2, 3]", "<line>", "expected a JSON object"),
    (b'{"no_schema": true}', "schema", "required field is missing"),
]


@pytest.mark.parametrize(("line", "field", "problem"), BAD_LINES)
def test_bad_line_is_named_by_file_line_and_field(
    tmp_path: Path, line: bytes, field: str, problem: str
) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as writer:
        writer.write(make_record(0))
    with path.open("ab") as f:
        f.write(line + b"\n")
    with TraceWriter(path) as writer:
        writer.write(make_record(2))
    with pytest.raises(TraceReadError) as info:
        list(read_traces(path))
    assert str(info.value).startswith(f"{path}:2: {field}: ")
    assert problem in str(info.value)
    assert info.value.line == 2
    errors: list[TraceReadError] = []
    good = list(read_traces(path, strict=False, on_error=errors.append))
    assert [r.output for r in good] == ["answer 0", "answer 2"]  # nothing already recorded is lost
    assert [e.line for e in errors] == [2]


def test_wrong_field_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    data = make_record().to_dict()
    data["usage"] = {"input_tokens": "ten"}
    path.write_text(json.dumps({"schema": "cert.trace/1", **data}) + "\n")
    with pytest.raises(TraceReadError, match=r"t\.jsonl:1: usage\.input_tokens: Expected int, got str"):
        list(read_traces(path))


def test_tolerant_mode_logs_each_bad_line_without_a_callback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"oops\n\n" + json.dumps(make_record().to_dict()).encode() + b"\n{]\n")
    with caplog.at_level(logging.WARNING, logger="cert_core"):
        assert len(list(read_traces(path, strict=False))) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"{path}:1: <line>" in m for m in messages)
    assert any(f"{path}:4: <line>" in m for m in messages)


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert list(read_traces(path)) == []
    report = verify_traces(path)
    assert report.exit_code == 4
    assert report.notes == [f"{path}: empty file (no records)"]


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda p: p / "missing.jsonl", "missing.jsonl: no such file or directory"),
        (lambda p: p, "no trace files"),
        (lambda p: str(p / "*.nothing"), "no file matches this pattern"),
        (lambda p: (p / "sub.jsonl").mkdir() or str(p / "*.jsonl"), "no file matches this pattern"),
    ],
    ids=["missing-file", "empty-directory", "glob-matching-nothing", "glob-matching-only-a-directory"],
)
def test_unusable_source_raises_a_clear_error(tmp_path: Path, make_source: object, message: str) -> None:
    source = make_source(tmp_path)  # type: ignore[operator]
    for strict in (True, False):
        with pytest.raises(TraceSourceError, match=message):
            list(read_traces(source, strict=strict))


@pytest.mark.parametrize(
    ("lines", "damage"),
    [(3, "trailing-garbage"), (2000, "trailing-garbage"), (2000, "cut-in-half")],
)
def test_a_damaged_gzip_gives_back_every_line_before_the_damage(
    tmp_path: Path, lines: int, damage: str
) -> None:
    text = b"".join(json.dumps(make_record(i).to_dict()).encode() + b"\n" for i in range(lines))
    data = gzip.compress(text)
    data = data + b"GARBAGE" if damage == "trailing-garbage" else data[: len(data) // 2]
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(data)
    recoverable = zlib.decompressobj(wbits=31).decompress(data).count(b"\n")
    errors: list[TraceReadError] = []
    records = list(read_traces(path, strict=False, on_error=errors.append))
    assert len(records) == recoverable == (lines if damage == "trailing-garbage" else recoverable)
    assert [e.field for e in errors] == ["<file>"]
    assert "compressed data is damaged" in errors[0].problem


def test_damaged_gzip_is_reported_with_the_line_reached(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wb") as gz:
        gz.write(b"".join(json.dumps(make_record(i).to_dict()).encode() + b"\n" for i in range(200)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceReadError, match="compressed data is damaged"):
        list(read_traces(path))
    errors: list[TraceReadError] = []
    assert len(list(read_traces(path, strict=False, on_error=errors.append))) > 0
    assert errors[0].field == "<file>"


def test_a_legacy_line_tolerant_mode_cannot_convert_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "production.jsonl"
    lines = [
        {"timestamp": "2024-03-05T10:20:30", "platform": "openai", "metadata": {"latency_ms": 1e300}},
        {"timestamp": "2024-03-05T10:20:31", "platform": "openai", "metadata": {"latency_ms": 5}},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    errors: list[TraceReadError] = []
    records = list(read_traces(path, strict=False, on_error=errors.append))
    assert [r.start_time for r in records] == ["2024-03-05T10:20:31.000000Z"]
    assert [str(e).split(": ")[:2] for e in errors] == [[f"{path}:1", "metadata.latency_ms"]]


def test_a_legacy_line_among_chained_lines_is_reported_as_unchained(tmp_path: Path) -> None:
    """A legacy line carries nothing to verify: in a file of chained records it is a record
    anyone could have inserted (read_traces would read it like the others)."""
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as writer:
        for i in range(3):
            writer.write(make_record(i))
    lines = path.read_bytes().splitlines()
    forged = json.dumps({"timestamp": "2024-03-05T10:20:30", "platform": "openai", "cost": 999.0}).encode()
    path.write_bytes(b"\n".join([forged, *lines[:2], forged, lines[2]]) + b"\n")
    report = verify_traces(path)
    assert [(f.kind, f.location) for f in report.findings] == [
        ("unchained", f"{path}:1"),
        ("unchained", f"{path}:4"),
    ]
    assert "legacy CERT record in a file of chained records" in report.findings[0].message
    assert report.exit_code == 1


def test_a_file_named_twice_or_archives_out_of_order_are_read_once_in_order(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, buffer_bytes=0, max_bytes=3000) as writer:
        for i in range(12):
            writer.write(make_record(i))
    archives = sorted(tmp_path.glob("t.0*.jsonl"))
    assert len(archives) >= 2
    named = [path, *reversed(archives), str(tmp_path / "t*.jsonl"), tmp_path / "." / "t.jsonl"]
    assert [r.seq for r in read_traces(named)] == list(range(12))
    assert verify_traces(named).exit_code == 0


def test_an_archive_beside_its_gzip_copy_is_read_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, buffer_bytes=0, max_bytes=3000) as writer:
        for i in range(12):
            writer.write(make_record(i))
    archive = tmp_path / "t.000001.jsonl"
    (tmp_path / "t.000001.jsonl.gz").write_bytes(gzip.compress(archive.read_bytes()))  # gzip -k
    with caplog.at_level(logging.WARNING, logger="cert_core"):
        assert [r.seq for r in read_traces(tmp_path)] == list(range(12))
    assert "t.000001.jsonl.gz: skipped" in caplog.text
    assert verify_traces(tmp_path).exit_code == 0


@pytest.mark.parametrize("how", ["deleted", "moved"])
def test_a_writer_whose_file_was_deleted_or_moved_writes_a_new_one_at_its_path(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path)
    writer.write(make_record(0))
    writer.flush()
    if how == "deleted":
        path.unlink()
    else:
        path.rename(tmp_path / "old.jsonl")
    for i in range(1, 3):
        writer.write(make_record(i))
    writer.close()
    assert [r.output for r in read_traces(path)] == ["answer 1", "answer 2"]
    assert writer.stats.written == 3
    if how == "moved":
        assert [r.output for r in read_traces(tmp_path / "old.jsonl")] == ["answer 0"]


@pytest.mark.parametrize("compressed", [False, True], ids=["jsonl", "gz"])
def test_a_byte_order_mark_an_editor_added_is_skipped(tmp_path: Path, compressed: bool) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as writer:
        for i in range(3):
            writer.write(make_record(i))
    data = b"\xef\xbb\xbf" + path.read_bytes()
    if compressed:
        path.unlink()
        path = tmp_path / "t.jsonl.gz"
        data = gzip.compress(data)
    path.write_bytes(data)
    assert [r.seq for r in read_traces(path)] == [0, 1, 2]
    assert verify_traces(path).exit_code == 0


def test_legacy_cert_log_is_read(tmp_path: Path) -> None:
    path = tmp_path / "production.jsonl"
    line = {
        "timestamp": "2025-01-15T10:30:00Z",
        "platform": "anthropic",
        "model": "claude-3-haiku",
        "input_data": "hi",
        "output_data": "hello",
        "cost": 0.0001,
        "metadata": {"tokens": {"prompt": 3, "completion": 2}, "latency_ms": 100},
    }
    path.write_text(json.dumps(line) + "\n" + json.dumps({**line, "output_data": "hey"}) + "\n")
    records = list(read_traces(path))
    assert [r.output for r in records] == ["hello", "hey"]
    assert records[0].schema == "cert.legacy"
    assert records[0].usage == cert_core.Usage(input_tokens=3, output_tokens=2)
    report = verify_traces(path)
    assert report.exit_code == 4  # legacy logs carry no chain: nothing to verify
    assert report.notes == [f"{path}: 2 legacy CERT record(s), which carry no chain to verify"]


def test_writer_dropped_without_close_still_writes_its_records(tmp_path: Path) -> None:
    import gc

    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path, buffer_bytes=1 << 20, flush_interval=3600)
    writer.write(make_record(0))
    del writer
    gc.collect()
    assert [r.output for r in read_traces(path)] == ["answer 0"]


@pytest.mark.parametrize("compressed", [False, True])
def test_line_numbers_stay_exact_across_blocks_blank_lines_and_reads(
    tmp_path: Path, compressed: bool
) -> None:
    # ~3,000 records span several 64 KiB decode blocks and 1 MiB reads; blank lines sit in blocks
    # that decode cleanly (and are never scanned for newlines), bad lines come after them.
    source = tmp_path / "clean.jsonl"
    with TraceWriter(source) as writer:
        for i in range(3000):
            writer.write(make_record(i, metadata={"pad": "x" * 600}))
    lines = source.read_bytes().split(b"\n")[:-1]
    for index in (10, 700, 1500):
        lines.insert(index, b"")
    bad_at = [2200, 2950, len(lines)]
    for index in bad_at:
        lines.insert(index, b'{"schema":"cert.trace/1","trace_id":1}')
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / ("t.jsonl.gz" if compressed else "t.jsonl")
    if compressed:
        with gzip.open(path, "wb") as gz:
            gz.write(data)
    else:
        path.write_bytes(data)
    expected = [n for n, line in enumerate(data.split(b"\n"), start=1) if b'"trace_id":1}' in line]
    errors: list[TraceReadError] = []
    records = list(read_traces(path, strict=False, on_error=errors.append))
    assert len(records) == 3000
    assert [e.line for e in errors] == expected
    assert all(e.field == "trace_id" for e in errors)
    with pytest.raises(TraceReadError) as info:
        list(read_traces(path))
    assert info.value.line == expected[0]
