from __future__ import annotations

import json
from pathlib import Path

import pytest

import cert_core
from cert_core import TraceWriter, verify_traces
from cert_core.cli import main
from tests.conftest import make_record


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "traces.jsonl"
    with TraceWriter(path) as writer:
        for i in range(6):
            writer.write(make_record(i))
    return path


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_intact_log_verifies(log: Path) -> None:
    report = verify_traces(log)
    assert report.exit_code == 0
    assert report.findings == []
    assert report.chained == 6
    (head,) = report.heads
    assert head.records == 6
    assert head.last_seq == 5
    assert head.location == f"{log}:6"


def test_edited_field_is_detected_and_named(log: Path) -> None:
    lines = lines_of(log)
    lines[2] = lines[2].replace(b'"answer 2"', b'"answer two"')
    rewrite(log, lines)
    report = verify_traces(log)
    assert report.exit_code == 1
    (finding,) = report.findings
    assert finding.kind == "edited"
    assert finding.location == f"{log}:3"


def test_deleted_line_is_detected_and_named(log: Path) -> None:
    lines = lines_of(log)
    del lines[3]
    rewrite(log, lines)
    report = verify_traces(log)
    assert report.exit_code == 1
    (finding,) = report.findings
    assert finding.kind == "deleted"
    assert "seq 3" in finding.message
    assert f"{log}:3" in finding.message  # the gap lies after line 3
    assert finding.location == f"{log}:4"


def test_swapped_lines_are_detected_as_reordering(log: Path) -> None:
    lines = lines_of(log)
    lines[1], lines[2] = lines[2], lines[1]
    rewrite(log, lines)
    report = verify_traces(log)
    assert report.exit_code == 1
    assert [f.kind for f in report.findings] == ["reordered"]
    assert report.findings[0].location == f"{log}:2"


def test_forged_copy_of_a_line_is_detected_as_insertion(log: Path) -> None:
    lines = lines_of(log)
    forged = lines[2].replace(b'"answer 2"', b'"approved"')
    lines.insert(3, forged)
    rewrite(log, lines)
    report = verify_traces(log)
    assert report.exit_code == 1
    kinds = {f.kind for f in report.findings}
    assert "inserted" in kinds
    assert any(f.location == f"{log}:4" for f in report.findings if f.kind == "inserted")


def test_inserted_line_without_chain_is_detected(log: Path) -> None:
    lines = lines_of(log)
    lines.insert(1, json.dumps(make_record(99).to_dict()).encode())
    rewrite(log, lines)
    report = verify_traces(log)
    assert report.exit_code == 1
    assert [(f.kind, f.location) for f in report.findings] == [("unchained", f"{log}:2")]


def test_forged_line_with_recomputed_link_still_breaks_the_next_one(log: Path) -> None:
    import hashlib

    lines = lines_of(log)
    data = json.loads(lines[2])
    data["output"] = "forged"
    # A careful forger recomputes nothing but this line: its successor still points at the original.
    lines[2] = json.dumps(data, separators=(",", ":")).encode()
    rewrite(log, lines)
    assert hashlib.sha256(lines[2]).hexdigest() != json.loads(lines[3])["prev"]
    report = verify_traces(log)
    assert [(f.kind, f.location) for f in report.findings] == [("edited", f"{log}:3")]


def test_edit_of_the_last_line_needs_the_recorded_head(log: Path, tmp_path: Path) -> None:
    heads = {h.chain: h.hash for h in verify_traces(log).heads}
    lines = lines_of(log)
    lines[-1] = lines[-1].replace(b'"answer 5"', b'"answer five"')
    rewrite(log, lines)
    assert verify_traces(log).exit_code == 0  # nothing after it vouches for it
    report = verify_traces(log, heads=heads)
    assert report.exit_code == 1
    assert [f.kind for f in report.findings] == ["head-mismatch"]


def forged_chain_line(template: bytes) -> bytes:
    """A line of a chain of its own, made as a writer would: seq 0 and the genesis link."""
    data = json.loads(template)
    data.update(output="forged answer", chain="f" * 32, seq=0, prev="0" * 64)
    return json.dumps(data, separators=(",", ":")).encode()


def test_forged_chain_of_its_own_is_an_unknown_chain_against_the_recorded_heads(log: Path) -> None:
    heads = {h.chain: h.hash for h in verify_traces(log).heads}
    lines = lines_of(log)
    lines.insert(3, forged_chain_line(lines[2]))
    rewrite(log, lines)
    # On its own it is indistinguishable from the first line of a writer that started later.
    alone = verify_traces(log)
    assert alone.exit_code == 0
    assert [(h.chain, h.records) for h in alone.heads][-1] == ("f" * 32, 1)  # listed for review
    report = verify_traces(log, heads=heads)
    assert report.exit_code == 1
    assert [(f.kind, f.location, f.chain) for f in report.findings] == [
        ("unknown-chain", f"{log}:4", "f" * 32)
    ]
    assert "not in the heads file" in report.findings[0].message


@pytest.mark.parametrize("cut", [40, "inside a character"])
def test_a_line_cut_by_a_crash_and_ended_by_the_next_writer_is_truncated_not_tampering(
    tmp_path: Path, cut: int | str
) -> None:
    path = tmp_path / "traces.jsonl"
    with TraceWriter(path) as first:
        for i in range(5):
            first.write(make_record(i, output=f"réponse {i}"))
    data = path.read_bytes()
    # The first writer dies in the middle of its last line.
    end = len(data) - 40 if cut == 40 else data.rindex("é".encode()) + 1
    path.write_bytes(data[:end])
    with TraceWriter(path) as restarted:  # starts on a fresh line, with a chain of its own
        for i in range(3):
            restarted.write(make_record(10 + i))

    report = verify_traces(path)
    assert [(f.kind, f.location) for f in report.findings] == [("truncated", f"{path}:5")]
    assert "writing resumed" in report.findings[0].message
    assert report.exit_code == 3
    assert [(h.records, h.last_seq) for h in report.heads] == [(4, 3), (3, 2)]
    assert main(["verify", "-q", str(path)]) == 3


def test_a_line_cut_inside_a_chain_is_damage_and_leaves_the_chain_a_line_short(log: Path) -> None:
    """Only a write that resumed (the line again whole, or a new writer's first line) follows a
    partial line; a cut line followed by its chain's next one was cut by hand."""
    lines = lines_of(log)
    lines[2] = lines[2][:-50]
    rewrite(log, lines)
    report = verify_traces(log)
    assert [(f.kind, f.location) for f in report.findings] == [
        ("damaged", f"{log}:3"),
        ("deleted", f"{log}:4"),
    ]
    assert report.exit_code == 1


@pytest.mark.parametrize(
    "junk",
    [b'{"schema":"cert.trace/1","output":"abc', b'{"schema":{"schema":"cert.trace/1"'],
    ids=["unfinished-record", "wrapped-record"],
)
def test_an_unfinished_line_inserted_between_two_lines_of_a_chain_is_damage(log: Path, junk: bytes) -> None:
    """(A line that is the start of the line after it reads as a write resumed, and is reported as
    truncated: it holds nothing that line does not.)"""
    lines = lines_of(log)
    lines.insert(3, junk)
    rewrite(log, lines)
    report = verify_traces(log)
    assert [(f.kind, f.location) for f in report.findings] == [("damaged", f"{log}:4")]
    assert report.exit_code == 1


def test_an_empty_set_of_heads_expects_no_chain(log: Path) -> None:
    """A run that recorded nothing has no chain heads: any chain in its file is unknown."""
    report = verify_traces(log, heads={})
    assert [f.kind for f in report.findings] == ["unknown-chain"]
    assert report.exit_code == 1


def test_crlf_line_endings_are_noted_not_taken_for_edits(log: Path) -> None:
    log.write_bytes(log.read_bytes().replace(b"\n", b"\r\n"))
    report = verify_traces(log)
    assert report.findings == []
    assert report.exit_code == 0
    assert report.notes == [f"{log}: CRLF line endings (converted after writing); the chain ignores them"]
    lines = lines_of(log)
    lines[2] = lines[2].replace(b"answer 2", b"answer X")  # an edit is still an edit
    rewrite(log, lines)
    assert [f.kind for f in verify_traces(log).findings] == ["edited"]


def test_damaged_line_is_reported(log: Path) -> None:
    lines = lines_of(log)
    lines[1] = b"\x00\x01binary\xff"
    rewrite(log, lines)
    report = verify_traces(log)
    kinds = [f.kind for f in report.findings]
    assert "damaged" in kinds
    assert any(f.location == f"{log}:2" for f in report.findings)
    assert report.exit_code == 1


def test_a_seq_past_64_bits_is_damage_as_the_reader_refuses_it(log: Path) -> None:
    lines = lines_of(log)
    lines[2] = lines[2].replace(b'"seq":2,', b'"seq":%d,' % (cert_core.MAX_COUNT + 1))
    rewrite(log, lines)
    report = verify_traces(log)
    # The line is not a link: the chain misses its seq 2 (as for any damaged line).
    found = [(f.kind, f.location) for f in report.findings]
    assert found == [("damaged", f"{log}:3"), ("deleted", f"{log}:4")]
    assert "seq=9223372036854775808" in report.findings[0].message
    assert report.exit_code == 1


def test_two_writers_interleaved_in_one_file_verify(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    a, b = TraceWriter(path, buffer_bytes=0), TraceWriter(path, buffer_bytes=0)
    for i in range(10):
        (a if i % 3 else b).write(make_record(i))
    a.close()
    b.close()
    report = verify_traces(path)
    assert report.exit_code == 0
    assert len(report.heads) == 2


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"cert {cert_core.__version__}"


def test_cli_verify_ok_prints_heads(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(log)]) == 0
    out = capsys.readouterr().out
    assert "OK: every chain is intact" in out
    assert "6 chained record(s) in 1 chain(s)" in out
    assert "head seq 5" in out


def test_cli_verify_tampered_names_each_finding(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = lines_of(log)
    lines[1] = lines[1].replace(b"question 1", b"question one")
    del lines[4]
    rewrite(log, lines)
    assert main(["verify", str(log)]) == 1
    out = capsys.readouterr().out
    assert f"{log}:2: edited:" in out
    assert ": deleted:" in out
    assert "TAMPERED" in out


def test_cli_verify_truncated_tail_exit_code(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = log.read_bytes()
    log.write_bytes(data[:-40])
    assert main(["verify", "-q", str(log)]) == 3
    out = capsys.readouterr().out
    assert f"{log}:6: truncated:" in out
    assert "TRUNCATED" in out


def test_cli_verify_heads_from_json_output(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--json", str(log)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["exit_code"] == 0
    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps(report))
    lines = lines_of(log)
    lines[-1] = lines[-1].replace(b"answer 5", b"answer 6")
    rewrite(log, lines)
    assert main(["verify", "--heads", str(heads), str(log)]) == 1
    assert "head-mismatch" in capsys.readouterr().out


def test_cli_verify_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl: no such file or directory" in capsys.readouterr().err


def test_cli_verify_bad_heads_file(log: Path, tmp_path: Path) -> None:
    bad = tmp_path / "heads.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="expected"):
        main(["verify", "--heads", str(bad), str(log)])


def test_cli_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "verify" in capsys.readouterr().out


def test_cli_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    out = capsys.readouterr().out
    for code in (
        "0  every chain is intact",
        "1  tampering",
        "2  usage error",
        "3  intact, but",
        "4  nothing to verify",
    ):
        assert code in out
