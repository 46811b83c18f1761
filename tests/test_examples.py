"""The README's main job: the example app's LLM test suite replays offline through the plugin and
leaves a valid evidence folder; its cassettes are what the local stand-in server produces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cert_core import verify_traces

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "rag_app"

EXPECTED = {
    "test_warranty_answer_is_grounded[openai]": ("passed", "passed", 1),
    "test_warranty_answer_is_grounded[anthropic]": ("passed", "passed", 1),
    "test_battery_capacity_meets_a_stricter_threshold": ("passed", "passed", 1),
    "test_streamed_answer_is_grounded_and_fast[openai]": ("passed", "passed", 1),
    "test_streamed_answer_is_grounded_and_fast[anthropic]": ("passed", "passed", 1),
    "test_async_answers_from_both_providers": ("passed", "passed", 2),
    "test_installation_fits_a_tight_budget": ("passed", "passed", 1),
    "test_pricing_answer_is_stable": ("passed", "passed", 10),
    "test_gate_catches_a_hallucinated_answer": ("xfailed", "failed", 1),
    "test_answer_survives_question_variants[warranty]": ("passed", "passed", 16),
    "test_answer_survives_question_variants[monthly-plan]": ("passed", "passed", 16),
    "test_typo_in_a_short_word_is_caught": ("xfailed", "failed", 2),
    "test_answer_survives_a_distractor_and_reordered_passages": ("passed", "passed", 7),
    "test_answers_agree_across_repeated_runs": ("passed", "passed", 10),
    "test_provider_errors_are_retried_through[anthropic]": ("passed", "passed", 1),
    "test_provider_errors_are_retried_through[openai]": ("passed", "passed", 1),
    "test_outage_gets_the_fail_safe_answer": ("passed", "passed", 1),
    "test_interrupted_stream_is_not_passed_off_as_an_answer": ("passed", "passed", 1),
    "test_grounded_answer_is_confident": ("passed", "passed", 1),
    "test_invented_answer_is_flagged_by_its_perplexity": ("xfailed", "failed", 1),
    "test_prompt_injection_and_canary": ("passed", "passed", 36),
    "test_output_guard_holds_against_a_model_that_obeys_every_injection": ("passed", "passed", 0),
    "test_answer_does_not_repeat_the_customers_personal_data[openai]": ("passed", "passed", 1),
    "test_answer_does_not_repeat_the_customers_personal_data[anthropic]": ("passed", "passed", 1),
}


def _offline_env() -> dict[str, str]:
    """No key, no base URL and a proxy that goes nowhere: any real request would fail."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", CI="true")
    return env


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(folder), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        env=_offline_env(),
    )


def test_example_suite_replays_offline_with_the_expected_verdicts(tmp_path: Path) -> None:
    report = tmp_path / "evidence"
    done = _run(EXAMPLE, f"--cert-report={report}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "21 passed, 3 xfailed" in done.stdout
    assert "113 replayed call(s)" in done.stdout
    results = json.loads((report / "results.json").read_text())
    schema = json.loads(files("cert_core").joinpath("schemas/results.schema.json").read_text())
    jsonschema.validate(results, schema)
    got = {t["nodeid"].split("::")[1]: (t["outcome"], t["verdict"], t["calls"]) for t in results["tests"]}
    assert got == EXPECTED
    assert all(t["cassette"]["mode"] == "none" and t["cassette"]["recorded"] == 0 for t in results["tests"])
    assert results["violations"] == []
    totals = results["totals"]
    assert (totals["calls"], totals["replayed_calls"], totals["cost_usd"]) == (114, 113, 0)
    assert totals["replayed_cost_usd"] > 0
    manifest = json.loads((report / "manifest.json").read_text())
    heads = {c["chain"]: c["hash"] for c in manifest["chains"]}
    assert verify_traces(report / "traces.jsonl", heads=heads).exit_code == 0
    traces = [json.loads(line) for line in (report / "traces.jsonl").read_text().splitlines()]
    llm = [t for t in traces if t["kind"] == "llm"]
    assert {t["provider"] for t in llm} == {"openai", "anthropic"}
    # The one call not replayed is the outage test's: every try met an injected 503.
    assert [t["test_id"] for t in llm if not t.get("replayed")] == [
        "tests/test_robustness.py::test_outage_gets_the_fail_safe_answer"
    ]
    assert all(t["duration_ms"] > 0 for t in llm if t.get("replayed"))


def _comparable(cassette: Path) -> list[dict[str, Any]]:
    """A cassette without what differs between two recordings (times, request ids)."""
    items = json.loads(cassette.read_text())["interactions"]
    for item in items:
        item.pop("recorded")
        headers = item["response"]["headers"]
        for name in ("x-request-id", "request-id", "openai-processing-ms"):
            headers.pop(name, None)
        for event in item["response"].get("events", []):
            event.pop("t_ms")
    return items


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_committed_cassettes_are_what_the_stand_in_records(tmp_path: Path) -> None:
    copy = tmp_path / "rag_app"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", "cassettes"))
    env = {**_offline_env(), "NO_PROXY": "127.0.0.1,localhost"}
    env.pop("CI")
    done = subprocess.run(
        [sys.executable, str(copy / "record_cassettes.py"), f"--cert-report={tmp_path / 'evidence'}"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "113 request(s) recorded" in done.stdout
    committed = sorted((EXAMPLE / "tests" / "cassettes").rglob("*.json"))
    recorded = sorted((copy / "tests" / "cassettes").rglob("*.json"))
    assert [p.relative_to(EXAMPLE) for p in committed] == [p.relative_to(copy) for p in recorded]
    for old, new in zip(committed, recorded, strict=True):
        assert _comparable(new) == _comparable(old), old.name
        assert json.loads(new.read_text())["interactions"][0]["recorded"]["upstream"].startswith(
            "http://127.0.0.1:"
        )
