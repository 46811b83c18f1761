"""Options, ini keys, precedence, usage errors, the header and the --help snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_cert.plugin import OPTIONS

SNAPSHOT = Path(__file__).parent / "snapshots" / "help_cert_section.txt"

PASSING_TEST = """
from conftest import CONTEXT, GOOD, ask

def test_one(cert_trace, client):
    cert_trace.expect(ask(client), CONTEXT)
"""


def _cert_help_section(text: str) -> str:
    lines = text.splitlines()
    start = lines.index("pytest-cert: LLM accuracy, cost and evidence gate:")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].strip())
    return "\n".join(lines[start:end]) + "\n"


def test_help_cert_section_matches_snapshot(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    section = _cert_help_section(pytester.runpytest("--help").stdout.str())
    if not SNAPSHOT.exists():  # first run writes it; review and commit the file
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(section, encoding="utf-8")
    assert section == SNAPSHOT.read_text(encoding="utf-8")


def test_every_option_has_an_ini_key_in_help(pytester: pytest.Pytester) -> None:
    text = pytester.runpytest("--help").stdout.str()
    for option in OPTIONS:
        assert option.flag in text
        assert f"{option.ini} " in text or f"{option.ini} (" in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--cert-threshold=1.5"], "argument --cert-threshold: '1.5' is not in [0, 1]"),
        (["--cert-threshold=high"], "argument --cert-threshold: 'high' is not a number"),
        (["--cert-budget=-1"], "argument --cert-budget: '-1' is negative"),
        (["--cert-test-budget=nan"], "argument --cert-test-budget: 'nan' is not a finite number"),
        (["--cert-max-latency-ms=0"], "argument --cert-max-latency-ms: '0' must be more than 0 milliseconds"),
        (
            ["--cert-preset=medical"],
            "argument --cert-preset: unknown preset 'medical'; known: financial, general, healthcare, legal",
        ),
    ],
)
def test_bad_option_values_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], expected: str
) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any(expected in line for line in result.stderr.lines), result.stderr.str()


@pytest.mark.parametrize(
    ("ini", "expected"),
    [
        ("cert_threshold = 7", "ini key cert_threshold = '7': '7' is not in [0, 1]"),
        ("cert_budget = lots", "ini key cert_budget = 'lots': 'lots' is not a number"),
        ("cert_preset = nope", "ini key cert_preset = 'nope': unknown preset 'nope'"),
    ],
)
def test_bad_ini_values_are_usage_errors(pytester: pytest.Pytester, ini: str, expected: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any(expected in line for line in result.stderr.lines), result.stderr.str()


def test_every_ini_key_is_read(project: pytest.Pytester, evidence) -> None:
    project.makeini(
        "[pytest]\n"
        "cert_threshold = 0.5\n"
        "cert_preset = financial\n"
        "cert_budget = 2.5\n"
        "cert_test_budget = 0.25\n"
        "cert_max_latency_ms = 60000\n"
        "cert_report = evidence\n"
        "cert_traces = all.jsonl\n"
        "cert_strict = true\n"
        "cert_no_instrument = false\n"
    )
    project.makepyfile(PASSING_TEST)
    project.runpytest().assert_outcomes(passed=1)
    config = evidence.results("evidence")["config"]
    assert config["threshold"] == 0.5
    assert config["preset"] == "financial"
    assert config["budget_usd"] == 2.5
    assert config["test_budget_usd"] == 0.25
    assert config["max_latency_ms"] == 60000
    assert config["report"] == "evidence"
    assert config["traces"] == "all.jsonl"
    assert config["strict"] is True
    assert config["instrument"] is True
    assert config["sources"]["threshold"] == "ini cert_threshold"
    assert (project.path / "all.jsonl").is_file()
    test = evidence.test("test_one", "evidence")
    assert (test["threshold"], test["threshold_source"], test["preset"]) == (
        0.5,
        "ini cert_threshold",
        "financial",
    )
    assert (test["budget_usd"], test["budget_source"]) == (0.25, "ini cert_test_budget")
    assert (test["max_latency_ms"], test["latency_source"]) == (60000, "ini cert_max_latency_ms")


def test_every_option_is_read_and_wins_over_ini(project: pytest.Pytester, evidence) -> None:
    project.makeini(
        "[pytest]\ncert_threshold = 0.9\ncert_test_budget = 0.0\n"
        "cert_report = from-ini\ncert_preset = legal\n"
    )
    project.makepyfile(PASSING_TEST)
    result = project.runpytest(
        "--cert-threshold=0.4",
        "--cert-preset=general",
        "--cert-budget=3",
        "--cert-test-budget=$1",
        "--cert-max-latency-ms=50000",
        "--cert-report=from-cli",
        "--cert-traces=t.jsonl",
        "--cert-strict",
        "--cert-no-instrument",
    )
    result.assert_outcomes(passed=1)
    assert not (project.path / "from-ini").exists()
    config = evidence.results("from-cli")["config"]
    assert config["sources"] == {
        "threshold": "--cert-threshold",
        "preset": "--cert-preset",
        "budget": "--cert-budget",
        "test_budget": "--cert-test-budget",
        "max_latency_ms": "--cert-max-latency-ms",
        "report": "--cert-report",
        "traces": "--cert-traces",
        "strict": "--cert-strict",
        "no_instrument": "--cert-no-instrument",
    }
    assert config["instrument"] is False
    assert config["instrumented"] == []
    test = evidence.test("test_one", "from-cli")
    assert (test["threshold"], test["threshold_source"], test["preset"]) == (
        0.4,
        "--cert-threshold",
        "general",
    )
    assert (test["budget_usd"], test["budget_source"]) == (1.0, "--cert-test-budget")
    # --cert-no-instrument: the SDK call went unrecorded.
    assert test["calls"] == 0


def test_report_header_shows_the_configuration(project: pytest.Pytester) -> None:
    project.makepyfile("def test_x():\n    pass\n")
    result = project.runpytest("--cert-threshold=0.7", "--cert-budget=1", "--cert-strict")
    result.stdout.fnmatch_lines(
        [
            "cert: threshold 0.7 (--cert-threshold), preset general, session budget 1 USD, "
            "report cert-report, strict, SDKs instrumented"
        ]
    )


def test_no_header_when_unused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    assert "cert:" not in pytester.runpytest().stdout.str()
