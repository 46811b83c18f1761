#!/usr/bin/env python3
"""Set up and run pytest-cert from a fresh checkout with nothing but Python 3.10+.

    python3 dev.py demo    # the main job: the example LLM test suite through the gate (offline)
    python3 dev.py test    # the whole test suite, with ruff and mypy first

Without an active virtual environment, it creates ``.venv`` here and re-runs itself inside it.
It (re)installs the project with its ``dev`` extra when ``pyproject.toml`` changed since the
last install.
"""

from __future__ import annotations

import hashlib
import importlib.util
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


def ensure_installed() -> None:
    stamp = Path(sys.prefix) / ".pytest-cert-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    print("dev.py: installing pytest-cert[dev] into", sys.prefix, flush=True)
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    if importlib.util.find_spec("torch") is None:
        # The semantic metric's reference backend is tested against torch; a pinned release keeps
        # pip on the CPU build where one is provided (CI installs it from PyTorch's CPU index).
        subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    stamp.write_text(want)


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
    ensure_installed()
    command, rest = argv[0], argv[1:]
    if command == "demo":
        # Tracing on its own, then the example LLM test suite through the plugin, which writes
        # the evidence folder cert-report/ (traces, results, summary, manifest).
        if run(sys.executable, "examples/quickstart.py"):
            return 1
        suite = ("examples/llm_suite", "-p", "no:cacheprovider", "--cert-report=cert-report", *rest)
        if run(sys.executable, "-m", "pytest", *suite):
            return 1
        return run(sys.executable, "-m", "cert_core.cli", "verify", "cert-report/traces.jsonl")
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
