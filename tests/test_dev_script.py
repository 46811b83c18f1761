"""dev.py, the README's two commands: what the demo installs stays in step with pyproject.toml."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _dev() -> object:
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("dev_script", module)
    spec.loader.exec_module(module)
    return module


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower()


def test_demo_installs_the_eval_extra_without_torch() -> None:
    dev = _dev()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    demo = [*dev.DEMO_REQUIREMENTS, *dev.DEMO_NO_DEPS]  # type: ignore[attr-defined]
    assert sorted(map(_name, extras["eval"])) == sorted(_name(r) for r in demo if _name(r) != "pytest")
    assert {_name(r) for r in demo}.isdisjoint({"torch", "sentence-transformers"})
