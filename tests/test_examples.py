"""The README's main job: the example LLM test suite runs offline through the plugin and leaves a
valid evidence folder."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema

from cert_core import verify_traces

ROOT = Path(__file__).resolve().parents[1]


def test_example_suite_passes_and_writes_evidence(tmp_path: Path) -> None:
    report = tmp_path / "evidence"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "examples/llm_suite",
            "-p",
            "no:cacheprovider",
            f"--cert-report={report}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 passed, 1 xfailed" in done.stdout
    results = json.loads((report / "results.json").read_text())
    schema = json.loads(files("cert_core").joinpath("schemas/results.schema.json").read_text())
    jsonschema.validate(results, schema)
    verdicts = {t["nodeid"].split("::")[1]: (t["outcome"], t["verdict"]) for t in results["tests"]}
    assert verdicts["test_gate_catches_a_hallucination"] == ("xfailed", "failed")
    assert results["violations"] == []
    assert results["totals"]["calls"] == 8
    manifest = json.loads((report / "manifest.json").read_text())
    heads = {c["chain"]: c["hash"] for c in manifest["chains"]}
    assert verify_traces(report / "traces.jsonl", heads=heads).exit_code == 0
