"""The gate's rules: marker options, the statistical verdict, and the failures a test can meet.

Pure functions and small types; no pytest hooks here (those live in :mod:`pytest_cert.session`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MARKER_KEYS",
    "RECORD_MODES",
    "CertAccuracyError",
    "CertFailure",
    "CertGateError",
    "CertMarkerError",
    "CertPiiError",
    "CertRobustnessError",
    "CertSecurityError",
    "CertStatisticalError",
    "CertWarning",
    "MarkerOptions",
    "RunOutcome",
    "StatisticalResult",
    "Violation",
    "consistency",
    "evaluate_runs",
    "marker_options",
    "unreachable",
    "wilson_interval",
]

#: Every keyword ``@pytest.mark.cert(...)`` accepts, with what it takes.
MARKER_KEYS: Mapping[str, str] = {
    "threshold": "accuracy threshold, a number in [0, 1]",
    "preset": "a measurement preset name",
    "budget_usd": "the test's cost budget in USD, a number >= 0",
    "max_latency_ms": "the slowest call allowed, milliseconds > 0",
    "max_perplexity": "the highest perplexity allowed of a call that returned token logprobs, a number >= 1",
    "repeat": "run the test this many times (an integer >= 1)",
    "min_pass_rate": "pass rate whose Wilson lower bound the runs must reach, in [0, 1]",
    "confidence": "confidence level of the Wilson interval, in (0, 1); default 0.95",
    "record_mode": "this test's cassette record mode: none, once, new_episodes, all or off",
    "cassette": "this test's cassette file, relative to the cassette folder (e.g. 'shared/faq.json')",
    "replay_ignore": "request body fields to ignore when matching recordings, e.g. ['metadata.user_id']",
}

RECORD_MODES = ("none", "once", "new_episodes", "all", "off")


class CertWarning(UserWarning):
    """A cert check that could not be made (unknown price, component not measured); an error
    under ``--cert-strict``."""


class CertFailure(AssertionError):
    """Base of the failures the cert gate raises in a test (an ``AssertionError``, so a failed
    check reads like a failed assertion and counts as a failed run of a repeated test).
    ``kind`` names the violation it reports."""

    kind = "accuracy"


class CertAccuracyError(CertFailure):
    """``cert_trace.expect()`` found the answer below its threshold (or, strict, not measured)."""

    def __init__(self, message: str, measurement: Any = None, kind: str = "accuracy") -> None:
        super().__init__(message)
        self.measurement = measurement
        self.kind = kind


class CertPiiError(CertFailure):
    """``cert_trace.expect_no_pii()`` found personal data in a text (shown masked only)."""

    kind = "pii"

    def __init__(self, message: str, findings: Sequence[Any]) -> None:
        super().__init__(message)
        self.findings = list(findings)


class CertRobustnessError(CertFailure):
    """``cert_trace.perturb()``: an answer to a perturbed input scored lower than the answer to
    the original by more than the allowed drop (or the app failed on the variant)."""

    kind = "robustness"

    def __init__(self, message: str, checks: Sequence[Any]) -> None:
        super().__init__(message)
        self.checks = list(checks)


class CertSecurityError(CertFailure):
    """``cert_trace.probe_injections()``: an attack category succeeded more often than allowed."""

    kind = "security"

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report


class CertStatisticalError(CertFailure):
    """A repeated test's pass rate did not reach ``min_pass_rate`` at the stated confidence."""

    def __init__(self, message: str, result: StatisticalResult, kind: str = "statistical") -> None:
        super().__init__(message)
        self.result = result
        self.kind = kind


class CertGateError(CertFailure):
    """The test's calls broke a budget, a latency bound or (strict) had an unknown price."""

    def __init__(self, message: str, violations: Sequence[Violation]) -> None:
        super().__init__(message)
        self.violations = list(violations)


class CertMarkerError(ValueError):
    """A ``@pytest.mark.cert(...)`` with a keyword or value the gate does not accept."""


@dataclass(frozen=True)
class Violation:
    """One broken rule: ``kind`` is accuracy, budget, latency, unknown_price, not_measured,
    statistical, pii, robustness, security or uncertainty."""

    kind: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class MarkerOptions:
    """The merged ``cert`` markers of one test (closest marker wins, key by key)."""

    threshold: float | None = None
    preset: str | None = None
    budget_usd: float | None = None
    max_latency_ms: float | None = None
    max_perplexity: float | None = None
    repeat: int = 1
    min_pass_rate: float | None = None
    confidence: float = 0.95
    record_mode: str | None = None
    cassette: str | None = None
    replay_ignore: tuple[str, ...] | None = None
    given: frozenset[str] = field(default_factory=frozenset)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise CertMarkerError(f"{key}={value!r}: expected {MARKER_KEYS[key]}")
    return float(value)


def marker_options(
    markers: Sequence[tuple[tuple[Any, ...], Mapping[str, Any]]], presets: Sequence[str]
) -> MarkerOptions:
    """Validate and merge ``cert`` markers given closest first, as ``(args, kwargs)`` pairs."""
    merged: dict[str, Any] = {}
    for args, kwargs in markers:
        if args:
            raise CertMarkerError(
                f"@pytest.mark.cert takes keyword arguments only, got positional {args!r}; "
                f"allowed keys: {', '.join(MARKER_KEYS)}"
            )
        unknown = sorted(set(kwargs) - set(MARKER_KEYS))
        if unknown:
            raise CertMarkerError(
                f"@pytest.mark.cert got unknown keyword(s) {', '.join(unknown)}; "
                f"allowed keys: {', '.join(MARKER_KEYS)}"
            )
        for key, value in kwargs.items():
            merged.setdefault(key, value)
    out: dict[str, Any] = {}
    for key, value in merged.items():
        if key == "preset":
            if value not in presets:
                raise CertMarkerError(
                    f"preset={value!r}: unknown preset; known: {', '.join(sorted(presets))}"
                )
            out[key] = value
        elif key == "record_mode":
            if value not in RECORD_MODES:
                raise CertMarkerError(f"record_mode={value!r}: expected {MARKER_KEYS[key]}")
            out[key] = value
        elif key == "cassette":
            if (
                not isinstance(value, str)
                or not value.strip()
                or value.startswith(("/", "\\"))
                or ".." in value
            ):
                raise CertMarkerError(f"cassette={value!r}: expected {MARKER_KEYS[key]}")
            out[key] = value
        elif key == "replay_ignore":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
                raise CertMarkerError(f"replay_ignore={value!r}: expected {MARKER_KEYS[key]}")
            out[key] = tuple(value)
        elif key == "repeat":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CertMarkerError(f"repeat={value!r}: expected {MARKER_KEYS[key]}")
            out[key] = value
        else:
            number = _number(key, value)
            ok = {
                "threshold": 0.0 <= number <= 1.0,
                "min_pass_rate": 0.0 <= number <= 1.0,
                "budget_usd": number >= 0.0,
                "max_latency_ms": number > 0.0,
                "max_perplexity": number >= 1.0,
                "confidence": 0.0 < number < 1.0,
            }[key]
            if not ok:
                raise CertMarkerError(f"{key}={value!r}: expected {MARKER_KEYS[key]}")
            out[key] = number
    if out.get("repeat", 1) > 1 and "min_pass_rate" not in out:
        raise CertMarkerError(
            f"repeat={out['repeat']} needs min_pass_rate= (the pass rate whose Wilson lower bound "
            "the runs must reach, e.g. min_pass_rate=0.8)"
        )
    options = MarkerOptions(**out, given=frozenset(out))
    if options.repeat > 1 and options.min_pass_rate is not None:
        problem = unreachable(options.repeat, options.min_pass_rate, options.confidence)
        if problem:
            raise CertMarkerError(problem)
    return options


def unreachable(n: int, min_pass_rate: float, confidence: float) -> str | None:
    """Why ``n`` runs can never reach ``min_pass_rate`` (``None`` when they can): even n passes
    out of n have a Wilson lower bound of n / (n + z^2)."""
    best = wilson_interval(n, n, confidence)[0]
    if best >= min_pass_rate:
        return None
    if min_pass_rate >= 1.0:
        need = "a min_pass_rate below 1 (no finite number of runs proves a rate of 1)"
    else:
        z = _z(confidence)
        runs = math.ceil(min_pass_rate * z * z / (1.0 - min_pass_rate))
        while wilson_interval(runs, runs, confidence)[0] < min_pass_rate:
            runs += 1
        need = f"repeat >= {runs} or a lower min_pass_rate"
    return (
        f"repeat={n} can never reach min_pass_rate={min_pass_rate:g} at {confidence:.0%} confidence: even "
        f"{n}/{n} passed runs give a Wilson lower bound of {best:.3f}; use {need}"
    )


def _z(confidence: float) -> float:
    """The normal quantile of a two-sided interval at ``confidence``."""
    from cert_core._stats import z_quantile  # imported on use: the inert plugin stays light

    return z_quantile(confidence)


def wilson_interval(passed: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval of a pass rate ``passed / n`` at ``confidence``."""
    from cert_core._stats import wilson_interval as interval

    return interval(passed, n, confidence)


@dataclass(frozen=True)
class RunOutcome:
    """One run of a repeated test: ``passed``, ``failed`` or ``not_measured``."""

    run: int
    outcome: str
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "outcome": self.outcome, "message": self.message}


@dataclass(frozen=True)
class StatisticalResult:
    """The statistical gate's verdict over the runs of one test."""

    runs: int
    passed: int
    failed: int
    not_measured: int
    confidence: float
    min_pass_rate: float
    rate: float | None
    lower: float | None
    upper: float | None
    verdict: str  # "passed", "failed" or "not measured"
    outcomes: tuple[RunOutcome, ...] = ()

    @property
    def n(self) -> int:
        """Runs that count: those with a verdict (not-measured runs are left out)."""
        return self.passed + self.failed

    def describe(self) -> str:
        if self.rate is None or self.lower is None or self.upper is None:
            return (
                f"no run could be measured ({self.not_measured} of {self.runs} not measured); "
                f"pass rate unknown against required {self.min_pass_rate:.2f}"
            )
        text = (
            f"pass rate {self.passed}/{self.n} = {self.rate:.2f}, Wilson {self.confidence:.0%} interval "
            f"[{self.lower:.3f}, {self.upper:.3f}]; lower bound {self.lower:.3f} "
            f"{'>=' if self.lower >= self.min_pass_rate else '<'} required {self.min_pass_rate:.2f}"
        )
        if self.not_measured:
            text += f" ({self.not_measured} run(s) not measured, left out)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "n": self.n,
            "passed": self.passed,
            "failed": self.failed,
            "not_measured": self.not_measured,
            "rate": self.rate,
            "lower": self.lower,
            "upper": self.upper,
            "confidence": self.confidence,
            "min_pass_rate": self.min_pass_rate,
            "verdict": self.verdict,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def evaluate_runs(
    outcomes: Sequence[RunOutcome], min_pass_rate: float, confidence: float
) -> StatisticalResult:
    """The verdict over repeated runs: the Wilson lower bound of the pass rate against
    ``min_pass_rate``; runs that could not be measured count neither way."""
    passed = sum(o.outcome == "passed" for o in outcomes)
    failed = sum(o.outcome == "failed" for o in outcomes)
    not_measured = sum(o.outcome == "not_measured" for o in outcomes)
    n = passed + failed
    if n == 0:
        return StatisticalResult(
            len(outcomes), 0, 0, not_measured, confidence, min_pass_rate, None, None, None,
            "not measured", tuple(outcomes),
        )  # fmt: skip
    lower, upper = wilson_interval(passed, n, confidence)
    return StatisticalResult(
        len(outcomes),
        passed,
        failed,
        not_measured,
        confidence,
        min_pass_rate,
        round(passed / n, 6),
        round(lower, 6),
        round(upper, 6),
        "passed" if lower >= min_pass_rate else "failed",
        tuple(outcomes),
    )


def _normalised(answer: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", answer.casefold()).split())


def consistency(measurements: Sequence[tuple[Any, Mapping[str, Any]]], runs: int) -> dict[str, Any] | None:
    """How much repeated runs agree: the share of runs giving the most common answer (compared
    after case folding and with punctuation and spacing ignored), how many different answers
    there were, and the spread of the runs' scores (each run's lowest confidence). Answers are
    compared on the text kept in the results (their first 500 characters). ``None`` when no run
    was measured. ``measurements``: ``(Measurement, meta)`` pairs whose meta has
    the ``run`` index and the ``answer`` text."""
    answers: dict[int, str] = {}
    scores: dict[int, float] = {}
    for m, meta in measurements:
        run = meta.get("run")
        if run is None:
            continue
        answers[run] = _normalised(meta.get("answer") or "")
        if m.confidence is not None:
            scores[run] = min(scores.get(run, 1.0), m.confidence)
    if not answers:
        return None
    counts: dict[str, int] = {}
    for text in answers.values():
        counts[text] = counts.get(text, 0) + 1
    modal = max(counts.values())
    values = list(scores.values())
    mean = sum(values) / len(values) if values else None
    stdev = (
        math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        if mean is not None and len(values) > 1
        else None
    )
    return {
        "runs": runs,
        "answered": len(answers),
        "distinct_answers": len(counts),
        "agreement": round(modal / len(answers), 6),
        "measured": len(values),
        "score_mean": None if mean is None else round(mean, 6),
        "score_stdev": None if stdev is None else round(stdev, 6),
        "score_min": min(values) if values else None,
        "score_max": max(values) if values else None,
    }
