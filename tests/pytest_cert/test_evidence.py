"""The evidence folder, JUnit properties, the terminal summary, our hooks, and xdist."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from cert_core import read_traces, verify_traces
from cert_core.cli import main as cli_main

SUITE = """
import pytest
from conftest import BAD, CONTEXT, GOOD, ask

def test_good(cert_trace, client):
    cert_trace.expect(ask(client), CONTEXT)

@pytest.mark.cert(threshold=0.9)
def test_bad(cert_trace):
    cert_trace.expect(BAD, CONTEXT)

@pytest.mark.cert(budget_usd=1.0)
def test_calls_only(client, claude):
    ask(client)
    claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=50,
                           messages=[{"role": "user", "content": "When?"}])

@pytest.mark.xfail(reason="a hallucination the gate must catch", strict=True)
def test_xfail(cert_trace):
    cert_trace.expect(BAD, CONTEXT)

def test_plain():
    pass
"""


@pytest.fixture(scope="module")
def results_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        files("cert_core").joinpath("schemas/results.schema.json").read_text(encoding="utf-8")
    )
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


# The evidence folder's files that its manifest lists with their SHA-256.
HASHED_FILES = {"results.json", "summary.md", "traces.jsonl", "report.md", "report.html", "report.json"}


def test_evidence_folder_files_validate_and_hash(project: pytest.Pytester, evidence, results_schema) -> None:
    project.makepyfile(SUITE)
    project.runpytest().assert_outcomes(passed=3, failed=1, xfailed=1)
    folder = evidence.path("")
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "report.html",
        "report.json",
        "report.md",
        "results.json",
        "summary.md",
        "traces.jsonl",
    ]
    results = evidence.results()
    jsonschema.validate(results, results_schema, cls=jsonschema.Draft202012Validator)
    outcomes = {t["nodeid"].split("::")[1]: (t["outcome"], t["verdict"]) for t in results["tests"]}
    assert outcomes == {
        "test_good": ("passed", "passed"),
        "test_bad": ("failed", "failed"),
        "test_calls_only": ("passed", "passed"),
        "test_xfail": ("xfailed", "failed"),
    }
    assert results["totals"]["calls"] == 3
    assert results["totals"]["tests"] == 4
    assert results["session"]["exitstatus"] == 1
    manifest = json.loads(evidence.path("manifest.json").read_text())
    assert set(manifest["files"]) == HASHED_FILES
    for name, entry in manifest["files"].items():
        data = evidence.path(name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert manifest["metrics"]["metric"] == "cert.measure/2"
    assert manifest["metrics"]["presets"]["general"]["threshold"] == results["tests"][0]["threshold"]
    assert manifest["python"]["version"]
    assert manifest["tool"]["name"] == "pytest-cert"
    assert {t["scope"] for t in manifest["thresholds"]} == {"marker", "preset"}
    # The chain head in the manifest pins the trace file: verify it, then catch an edit.
    heads = {c["chain"]: c["hash"] for c in manifest["chains"]}
    assert verify_traces(evidence.path("traces.jsonl"), heads=heads).exit_code == 0
    records = list(read_traces(evidence.path("traces.jsonl")))
    assert len(records) == 3
    assert {r.test_id.split("::")[1] for r in records} == {
        "test_good",
        "test_calls_only",
    }
    assert sorted(results["tests"][0]["spans"]) == sorted(
        r.span_id for r in records if r.test_id.endswith("test_good")
    )
    for path in folder.iterdir():  # the API keys of the inner conftest never reach the evidence
        assert "secret" not in path.read_text()
    manifest_file, traces = str(evidence.path("manifest.json")), str(evidence.path("traces.jsonl"))
    assert cli_main(["verify", "-q", "--heads", manifest_file, traces]) == 0  # the manifest as heads
    lines = evidence.path("traces.jsonl").read_text().splitlines()
    lines[-1] = lines[-1].replace('"output_tokens":', '"output_tokens":1')
    evidence.path("traces.jsonl").write_text("\n".join(lines) + "\n")
    assert verify_traces(evidence.path("traces.jsonl"), heads=heads).tampered
    assert cli_main(["verify", "-q", "--heads", manifest_file, traces]) == 1


def test_summary_markdown_and_github_step_summary(
    project: pytest.Pytester, evidence, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_summary = project.path / "step_summary.md"
    step_summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    project.makepyfile(SUITE)
    project.runpytest()
    summary = evidence.path("summary.md").read_text()
    assert summary.startswith("## pytest-cert: FAILED\n")
    assert "| `test_evidence_folder_files_validate_and_hash.py" not in summary
    assert "::test_good` | 1.000 | 1.000 | passed | 1 |" in summary
    assert "::test_bad`: answer below the accuracy threshold: confidence 0.354 < threshold 0.900" in summary
    assert step_summary.read_text() == "# earlier step\n" + summary + "\n"


def test_junit_xml_carries_cert_properties(project: pytest.Pytester) -> None:
    project.makepyfile(SUITE)
    project.runpytest("--junitxml=junit.xml", "-o", "junit_family=xunit1")
    root = ET.parse(project.path / "junit.xml").getroot()
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in root.iter("testcase")
    }
    assert props["test_plain"] == {}
    good = props["test_good"]
    assert set(good) == {
        "cert.confidence",
        "cert.threshold",
        "cert.passed",
        "cert.cost_usd",
        "cert.input_tokens",
        "cert.output_tokens",
        "cert.calls",
        "cert.latency_ms",
    }
    assert (good["cert.passed"], good["cert.calls"], good["cert.input_tokens"]) == ("true", "1", "100")
    assert float(good["cert.confidence"]) >= float(good["cert.threshold"])
    assert props["test_bad"]["cert.passed"] == "false"
    assert props["test_bad"]["cert.threshold"] == "0.900000"
    assert "cert.result" not in (project.path / "junit.xml").read_text()


def test_terminal_summary_rows_and_quiet_mode(project: pytest.Pytester) -> None:
    project.makepyfile(SUITE)
    result = project.runpytest()
    result.stdout.fnmatch_lines(
        [
            "*- cert -*",
            "test * conf thresh  gate calls   tokens        cost  slowest",
            "*test_good  1.000  1.000  pass     1      120   $0.000027 *ms",
            "4 test(s), 3 call(s), * tokens, cost $*; measurements: 1 passed, 2 failed, 0 not measured",
            "*::test_bad - answer below the accuracy threshold: confidence 0.354 < threshold 0.900 *",
            "evidence: *cert-report",
        ]
    )
    quiet = project.runpytest("-q")
    assert "conf thresh" not in quiet.stdout.str()
    quiet.stdout.fnmatch_lines(
        ["4 test(s), 3 call(s), *", "*::test_bad - answer below the accuracy threshold*"]
    )


def test_cert_traces_appends_a_chained_copy(project: pytest.Pytester) -> None:
    project.makepyfile(SUITE)
    project.runpytest("--cert-traces=all/traces.jsonl")
    project.runpytest("--cert-traces=all/traces.jsonl")
    report = verify_traces(project.path / "all" / "traces.jsonl")
    assert report.exit_code == 0
    assert report.lines == 6
    assert len(report.heads) == 2


def test_manifest_records_git_commits_of_the_threshold_files(project: pytest.Pytester, evidence) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    project.makeini("[pytest]\ncert_threshold = 0.5\n")
    project.makepyfile(SUITE)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=project.path, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "empty")
    git("add", "tox.ini", "conftest.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "thresholds")
    ini_commit = git("rev-parse", "HEAD")
    project.runpytest()
    manifest = json.loads(evidence.path("manifest.json").read_text())
    assert manifest["git"] == {
        "commit": ini_commit,
        "dirty": False,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
    }
    by_scope = {t["scope"]: t for t in manifest["thresholds"]}
    assert by_scope["session"] == {
        "scope": "session",
        "threshold": 0.5,
        "source": "ini cert_threshold",
        "file": "tox.ini",
        "commit": ini_commit,
        "committed": git("log", "-1", "--format=%cI"),
        "modified": False,
    }
    # The test file holding the marker threshold is not committed yet: no commit to name.
    assert by_scope["marker"]["commit"] is None
    assert by_scope["marker"]["file"].endswith(".py")


def test_our_hooks_add_a_component_result_fields_and_summary_sections(
    project: pytest.Pytester, evidence
) -> None:
    project.makeconftest(
        (project.path / "conftest.py").read_text()
        + """
class CitesYear:
    name, weight = "cites_year", 1.0
    def score(self, answer, reference):
        return 1.0 if "1889" in answer else 0.0

def pytest_cert_components(config):
    return [CitesYear()]

def pytest_cert_test_result(item, result):
    result["extra"]["owner"] = "search-team"

def pytest_cert_results(config, results):
    results["extra"]["release"] = "2.4.0"

def pytest_cert_summary(config, results):
    return "Owners", "- search-team: %d test(s)" % len(results["tests"])
"""
    )
    project.makepyfile(SUITE)
    result = project.runpytest()
    result.stdout.fnmatch_lines(["Owners:", "  - search-team: 4 test(s)"])
    results = evidence.results()
    assert results["extra"] == {"release": "2.4.0"}
    good = evidence.test("test_good")
    assert good["extra"] == {"owner": "search-team"}
    m = good["measurements"][0]
    assert m["extra"] == {"cites_year": 1.0}
    assert m["weights"] == {"claims": 0.5, "cites_year": 0.5}
    bad = evidence.test("test_bad")["measurements"][0]
    assert bad["extra"] == {"cites_year": 0.0}
    assert bad["confidence"] == pytest.approx(0.5**1.5 / 2, abs=1e-6)  # claims 0.354, cites_year 0
    assert "### Owners\n\n- search-team: 4 test(s)" in evidence.path("summary.md").read_text()


def _summary_without_timing(results: dict[str, Any]) -> dict[str, Any]:
    tests = sorted(
        (
            {
                k: v
                for k, v in t.items()
                if k not in ("worker", "duration_s", "latency_ms", "total_latency_ms", "spans")
            }
            | {"measurements": [dict(m.items()) for m in t["measurements"]]}
            for t in results["tests"]
        ),
        key=lambda t: t["nodeid"],
    )
    return {"totals": results["totals"], "tests": tests, "violations": sorted(results["violations"], key=str)}


def test_xdist_totals_equal_a_single_process_run(project: pytest.Pytester, evidence) -> None:
    pytest.importorskip("xdist")
    project.makepyfile(
        SUITE
        + """
import threading

@pytest.mark.parametrize("i", range(6))
def test_many(cert_trace, client, i):
    t = threading.Thread(target=ask, args=(client,))
    t.start(); t.join()
    cert_trace.expect(ask(client), CONTEXT)
"""
    )
    single = project.runpytest_subprocess(
        "-p", "no:randomly", "--cert-budget=0.00001", "--cert-report=single"
    )
    distributed = project.runpytest_subprocess("-n", "2", "--cert-budget=0.00001", "--cert-report=multi")
    assert single.ret == distributed.ret == pytest.ExitCode.TESTS_FAILED
    one, two = evidence.results("single"), evidence.results("multi")
    assert one["totals"]["calls"] == 3 + 12
    assert _summary_without_timing(one) == _summary_without_timing(two)
    assert two["session"]["workers"] == 2
    assert {t["worker"] for t in two["tests"]} == {"gw0", "gw1"}
    assert len(list(read_traces(evidence.path("traces.jsonl", "multi")))) == 15
    distributed.stdout.fnmatch_lines(["session - cost * USD > session budget 0.000010 USD (--cert-budget)"])


def test_inert_run_writes_nothing_and_patches_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_plain(request):
            session = request.config.pluginmanager.get_plugin("cert-session")
            assert session is not None and not session.active
        """
    )
    before = sorted(p.name for p in pytester.path.iterdir())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "- cert -" not in result.stdout.str()
    # (runpytest_subprocess leaves its basetemp folders and captured stdout/stderr beside the test)
    ours = [p.name for p in pytester.path.iterdir() if not p.name.startswith("runpytest-")]
    assert sorted(set(ours) - {"stdout", "stderr", "__pycache__"}) == before


def test_inert_run_imports_no_sdk_no_model_and_no_core(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_modules():
            loaded = [m for m in ("cert_core", "openai", "anthropic", "numpy", "torch") if m in sys.modules]
            assert loaded == []
        """
    )
    pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:anyio", "-p", "no:hypothesispytest"
    ).assert_outcomes(passed=1)


def test_evidence_writer_touches_only_its_own_files(project: pytest.Pytester) -> None:
    (project.path / "out").mkdir()
    (project.path / "out" / "notes.md").write_text("mine")
    (project.path / "out" / "dashboard.html").write_text("<p>mine</p>")
    project.makepyfile(SUITE)
    project.runpytest("--cert-report=out")
    names = sorted(p.name for p in (project.path / "out").iterdir())
    assert names == [
        "dashboard.html",
        "manifest.json",
        "notes.md",
        "report.html",
        "report.json",
        "report.md",
        "results.json",
        "summary.md",
        "traces.jsonl",
    ]
    manifest = json.loads((project.path / "out" / "manifest.json").read_text())
    assert set(manifest["files"]) == HASHED_FILES
    assert (project.path / "out" / "dashboard.html").read_text() == "<p>mine</p>"


def test_manifest_metric_definitions_match_the_loaded_presets() -> None:
    from cert_core._evidence import metric_definitions
    from cert_core.measure import METRIC, PRESETS

    definitions = metric_definitions()
    assert definitions["metric"] == METRIC
    assert {name: (p["threshold"], p["weights"]) for name, p in definitions["presets"].items()} == {
        name: (p.threshold, p.weights) for name, p in PRESETS.items()
    }


def test_a_large_suites_summary_lists_failures_first_and_says_how_many_are_left_out(
    project: pytest.Pytester, evidence: Any
) -> None:
    body = "".join(f"\ndef test_{i:03d}(cert_trace):\n    assert cert_trace.calls == 0\n" for i in range(60))
    body += "\nimport pytest\n@pytest.mark.cert(budget_usd=0)\ndef test_over(cert_trace, client):\n"
    body += "    from conftest import ask\n    ask(client)\n"
    project.makepyfile(test_many=body)
    project.runpytest().assert_outcomes(passed=60, failed=1)
    summary = evidence.path("summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| `")]
    assert len(rows) == 50
    assert rows[0].startswith("| `test_many.py::test_over` |")
    assert "11 more test(s) not shown here: every test is in results.json and the report." in summary
    assert len(evidence.results()["tests"]) == 61
