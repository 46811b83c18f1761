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
    assert workflow.get("permissions") == {"contents": "read"}  # least privilege
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


def _run_gate(repo: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the example gate's ``run:`` steps in order as a runner would (bash -eo pipefail, the
    job's env, GITHUB_* variables); the install step is the environment this test runs in."""
    workflow = _load(GATE)
    job = workflow["jobs"]["llm-gate"]
    summary = tmp_path / "step_summary.md"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "OPENAI_", "ANTHROPIC_"))},
        **{k: str(v) for k, v in job["env"].items()},
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(repo),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_EVENT_NAME": "pull_request",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = None
    for step in job["steps"]:
        if "run" not in step or step.get("name") == "Install":
            continue
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    assert done is not None
    return done, summary


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
