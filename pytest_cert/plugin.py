"""pytest entry point (``pytest11: cert``): options, ini keys, the ``cert`` marker, our hook specs.

Everything else is wired from here: the ``cert_trace`` fixture (:mod:`pytest_cert.fixtures`) and
the session object (:mod:`pytest_cert.session`). The plugin is inert until a cert option, ini key,
marker or fixture is in play: until then it imports no SDK, loads no model and writes no file.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from .fixtures import cert_trace

__all__ = ["GROUP", "OPTIONS", "cert_trace"]

GROUP = "cert"
GROUP_DESCRIPTION = "pytest-cert: LLM accuracy, cost and evidence gate"
DEFAULT_REPORT_DIR = "cert-report"


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def unit_interval(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not in [0, 1]; give a threshold such as 0.7")
    return value


def usd(text: str) -> float:
    value = _number(str(text).removeprefix("$"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; give an amount in USD such as 0.50")
    return value


def milliseconds(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 milliseconds")
    return value


def preset_name(text: str) -> str:
    from cert_core.measure import PRESETS

    if text not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r}; known: {', '.join(sorted(PRESETS))}")
    return text


def record_mode(text: str) -> str:
    from .gate import RECORD_MODES

    if text not in RECORD_MODES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(RECORD_MODES)}")
    return text


def origin(text: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(str(text).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise argparse.ArgumentTypeError(f"{text!r} is not an origin such as http://127.0.0.1:8765")
    return f"{parts.scheme}://{parts.netloc}"


def path_text(text: str) -> str:
    if not str(text).strip():
        raise argparse.ArgumentTypeError("an empty path")
    return str(text)


@dataclass(frozen=True)
class Option:
    """One ``--cert-*`` option and its ``cert_*`` ini twin (CLI wins over ini)."""

    name: str  # dest and ini key suffix
    metavar: str | None  # None: a flag
    convert: Callable[[str], Any] | None
    help: str

    @property
    def flag(self) -> str:
        return "--cert-" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return "cert_" + self.name

    @property
    def ini(self) -> str:
        return "cert_" + self.name


OPTIONS: tuple[Option, ...] = (
    Option("threshold", "THRESHOLD", unit_interval, "Accuracy threshold in [0, 1] (default: the preset's)"),
    Option("preset", "NAME", preset_name, "Measurement preset: component weights and default threshold"),
    Option(
        "budget",
        "USD",
        usd,
        "Session cost budget in USD: calls costing more fail the run (replayed calls count at "
        "their recorded cost)",
    ),
    Option("test_budget", "USD", usd, "Default cost budget of each test in USD (replayed calls count too)"),
    Option("max_latency_ms", "MS", milliseconds, "Default bound on the slowest LLM call of a test, in ms"),
    Option(
        "report", "DIR", path_text, f"Evidence folder written at session end (default: {DEFAULT_REPORT_DIR})"
    ),
    Option("traces", "PATH", path_text, "Also append every trace record of the session to this JSONL file"),
    Option(
        "record_mode",
        "MODE",
        record_mode,
        "Replay LLM calls from cassettes: none (replay only; what CI uses), once, new_episodes, all, "
        "or off (live calls, cassettes ignored)",
    ),
    Option(
        "cassette_dir", "DIR", path_text, "Cassette folder, relative to each test file (default: cassettes)"
    ),
    Option(
        "record_upstream",
        "URL",
        origin,
        "While recording, send requests to this origin (a local stand-in or gateway); cassettes keep "
        "the URL the app addressed",
    ),
    Option("strict", None, None, "Fail instead of warn on unknown prices and unmeasured components"),
    Option("no_instrument", None, None, "Do not patch the OpenAI and Anthropic SDKs"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, GROUP_DESCRIPTION)
    for option in OPTIONS:
        if option.metavar is None:
            group.addoption(
                option.flag, action="store_true", dest=option.dest, default=None, help=option.help
            )
            parser.addini(option.ini, f"Default for {option.flag} (true/false)", type="bool", default=None)
        else:
            group.addoption(
                option.flag,
                dest=option.dest,
                metavar=option.metavar,
                type=option.convert,
                default=None,
                help=option.help,
            )
            parser.addini(option.ini, f"Default for {option.flag}", type="string", default=None)
    parser.addini(
        "cert_replay_ignore",
        "Request body fields (dotted paths) that cassette matching ignores, one per line",
        type="linelist",
        default=[],
    )


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cert(threshold=None, preset=None, budget_usd=None, max_latency_ms=None, repeat=1, "
        "min_pass_rate=None, confidence=0.95, record_mode=None, cassette=None, replay_ignore=None): "
        "pytest-cert gate settings for this test (accuracy threshold, cost budget, latency bound, "
        "statistical gate, cassette)",
    )
    from .session import CertSession, read_settings

    settings = read_settings(config)
    session = CertSession(config, settings)
    config.stash[CertSession.KEY] = session
    config.pluginmanager.register(session, CertSession.NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    from .session import CertSession

    session = config.stash.get(CertSession.KEY, None)
    if session is not None:
        session.close()
        config.pluginmanager.unregister(session)
