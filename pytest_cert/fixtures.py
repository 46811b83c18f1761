"""The ``cert_trace`` fixture: the LLM calls of one test, their cost, and ``expect()``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from .totals import CallTotals

if TYPE_CHECKING:
    from cert_core import TraceRecord
    from cert_core.faults import Fault, FaultLog
    from cert_core.injection import ProbeReport
    from cert_core.measure import Measurement
    from cert_core.perturb import RobustnessResult

    from .gate import StatisticalResult
    from .session import CertSession, TestState

__all__ = ["CertTrace", "cert_trace"]


class CertTrace:
    """What the current test's LLM calls did, and the accuracy check.

    Every call made while the test runs (in any thread or asyncio task it starts) through an
    instrumented SDK, ``@trace`` or :meth:`record` is collected here.
    """

    def __init__(self, session: CertSession, state: TestState) -> None:
        self._session = session
        self._state = state

    def __repr__(self) -> str:
        return f"<CertTrace {self._state.nodeid} calls={self.calls} cost_usd={self.cost_usd:.6f}>"

    @property
    def records(self) -> list[TraceRecord]:
        """Every trace record of the test so far (LLM calls and ``@trace`` functions)."""
        return list(self._state.records)

    @property
    def llm_records(self) -> list[TraceRecord]:
        return [r for r in self._state.records if r.kind == "llm"]

    def _totals(self) -> CallTotals:
        return CallTotals.of(self._state.records)

    @property
    def calls(self) -> int:
        """Number of LLM calls."""
        return self._totals().calls

    @property
    def cost_usd(self) -> float:
        """Known cost of the test's real (not replayed) LLM calls, in USD; see :attr:`unknown_price_calls`."""
        return self._totals().cost_usd

    @property
    def unknown_price_calls(self) -> int:
        """Calls whose price is unknown (their cost is not in :attr:`cost_usd`)."""
        return self._totals().unknown_price

    @property
    def tokens(self) -> int:
        """Input plus output tokens of all LLM calls."""
        totals = self._totals()
        return totals.input_tokens + totals.output_tokens

    @property
    def input_tokens(self) -> int:
        return self._totals().input_tokens

    @property
    def output_tokens(self) -> int:
        return self._totals().output_tokens

    @property
    def latency_ms(self) -> float | None:
        """Latency of the slowest LLM call (what ``max_latency_ms`` bounds); ``None`` without calls."""
        return self._totals().latency_ms

    @property
    def total_latency_ms(self) -> float:
        """Summed latency of all LLM calls."""
        return self._totals().total_latency_ms

    @property
    def measurements(self) -> list[Measurement]:
        """Every measurement ``expect()`` made in this test, in order."""
        return [m for m, _ in self._state.measurements]

    def expect_no_pii(self, text: str, *, kinds: Sequence[str] | None = None) -> None:
        """Fail the test with :class:`~pytest_cert.gate.CertPiiError` when ``text`` holds personal
        data (emails, phone numbers, IBANs, card numbers, national ids, IP addresses; checksums
        verified where they exist). The message shows each finding masked, never its value."""
        __tracebackhide__ = True
        from cert_core.pii import KINDS, find_pii

        from .gate import CertPiiError

        found = find_pii(text, tuple(kinds) if kinds is not None else KINDS)
        self._state.pii_checks[0] += 1
        self._state.pii_checks[1] += len(found)
        if found:
            listed = ", ".join(f"{f.kind} {f.masked} at {f.start}" for f in found)
            raise CertPiiError(f"personal data in the text: {len(found)} finding(s): {listed}", found)

    def expect(
        self,
        answer: str,
        reference: str | Sequence[str],
        *,
        threshold: float | None = None,
        preset: str | None = None,
    ) -> Measurement:
        """Measure ``answer`` against ``reference`` (a retrieved context, its passages, or a gold
        answer) and fail the test with :class:`~pytest_cert.CertAccuracyError` below the threshold.

        The threshold is the first given of: this ``threshold`` argument, the ``cert`` marker,
        ``--cert-threshold``, the ``cert_threshold`` ini key, the preset's default. Returns the
        :class:`~cert_core.measure.Measurement` when it passes (or could not be measured, which
        warns, or fails under ``--cert-strict``).
        """
        __tracebackhide__ = True
        return self._session.expect(self._state, answer, reference, threshold=threshold, preset=preset)

    def perturb(
        self,
        app: Callable[..., Any],
        question: str,
        *,
        context: Sequence[str] | None = None,
        reference: str | Sequence[str] | None = None,
        perturbations: Sequence[str] | None = None,
        max_drop: float = 0.1,
        seed: int = 0,
        per_perturbation: int = 1,
        threshold: float | None = None,
        preset: str | None = None,
    ) -> RobustnessResult:
        """Robustness to input variation (Art. 15(4)): ask ``app`` the ``question``, then each
        perturbed variant of it (:mod:`cert_core.perturb`: typos, casing, whitespace,
        punctuation, Unicode look-alikes; with ``context``, a distractor passage and passages
        reordered), measure every answer against ``reference`` (default: the ``context``) and
        fail the test with :class:`~pytest_cert.CertRobustnessError` when a variant's confidence
        falls more than ``max_drop`` below the original's, or the app fails on it. The message
        names the perturbation, the variant and the drop.

        ``app(question)`` answers, or ``app(question, passages)`` when ``context`` is given.
        Variants are the same for the same ``seed``."""
        __tracebackhide__ = True
        return self._session.perturb(
            self._state,
            app,
            question,
            context=context,
            reference=reference,
            perturbations=perturbations,
            max_drop=max_drop,
            seed=seed,
            per_perturbation=per_perturbation,
            threshold=threshold,
            preset=preset,
        )

    @contextlib.contextmanager
    def inject_faults(
        self,
        faults: Iterable[Fault],
        *,
        providers: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        repeat: bool = False,
    ) -> Iterator[FaultLog]:
        """Fault handling (Art. 15(4) fail-safe): inside the ``with`` block, the SDK requests the
        app sends meet ``faults`` in order (:class:`cert_core.faults.Fault`: timeouts, error
        statuses with retry-after, malformed or truncated JSON, interrupted streams), one per
        request, then pass through (to the mock transport, the cassette or the network). The
        :class:`~cert_core.faults.FaultLog` says what was injected and what each request got; it
        goes into the test's results, with whether the app recovered."""
        from cert_core.faults import inject_faults

        log: FaultLog | None = None
        try:
            with inject_faults(faults, providers=providers, models=models, repeat=repeat) as log:
                yield log
        finally:
            if log is not None:
                self._state.faults.append(log.to_dict())

    def probe_injections(
        self,
        app: Callable[[Any], Any],
        *,
        categories: Sequence[str] | None = None,
        max_success_rate: float = 0.0,
        probes: Sequence[Any] | None = None,
        canary: str | None = None,
        confidence: float = 0.95,
        tool_aliases: Mapping[str, str] | None = None,
    ) -> ProbeReport:
        """Prompt injection and leakage (Art. 15(5)): run the packaged probe corpus
        (:mod:`cert_core.injection`: instruction override, system-prompt extraction, data
        exfiltration, tool-use hijack) through ``app`` and fail the test with
        :class:`~pytest_cert.CertSecurityError` when a category's attack success rate exceeds
        ``max_success_rate`` (default 0: any successful attack fails), or the planted canary
        leaks. ``app`` receives a :class:`~cert_core.injection.ProbeInput` (the user message,
        the documents to add to its context, and the canary to plant in its system prompt) and
        returns the answer text, or ``{"text": ..., "tool_calls": [...]}``."""
        __tracebackhide__ = True
        return self._session.probe_injections(
            self._state,
            app,
            categories=categories,
            max_success_rate=max_success_rate,
            probes=probes,
            canary=canary,
            confidence=confidence,
            tool_aliases=tool_aliases,
        )

    def record(
        self,
        record: TraceRecord | None = None,
        *,
        provider: str | None = None,
        model: str | None = None,
        input: Any = None,
        output: Any = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost_usd: float | None = None,
        latency_ms: float | None = None,
        operation: str = "chat",
        error: BaseException | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> TraceRecord:
        """Record a call made by other means (another SDK, plain HTTP): pass a ready
        :class:`~cert_core.TraceRecord`, or the facts and let this build and price one
        (``cost_usd`` given wins over the price library). Returns the record as stored."""
        return self._session.record_manual(
            self._state,
            record,
            provider=provider,
            model=model,
            input=input,
            output=output,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd,
            latency_ms=latency_ms,
            operation=operation,
            error=error,
            metadata=metadata,
        )

    def repeat(
        self,
        fn: Callable[[], Any],
        n: int,
        *,
        min_pass_rate: float | None = None,
        confidence: float | None = None,
    ) -> StatisticalResult:
        """Call ``fn`` ``n`` times; a run fails when it raises ``AssertionError`` (a failed
        ``expect`` included). Fails the test with :class:`~pytest_cert.CertStatisticalError` when
        the Wilson lower bound of the pass rate at ``confidence`` is below ``min_pass_rate``
        (defaults: the ``cert`` marker's). Returns the statistics either way when it passes."""
        __tracebackhide__ = True
        return self._session.repeat(self._state, fn, n, min_pass_rate=min_pass_rate, confidence=confidence)


@pytest.fixture
def cert_trace(request: pytest.FixtureRequest) -> CertTrace:
    """The LLM calls of this test (cost, tokens, latency) and ``expect()`` for accuracy."""
    from .session import CertSession

    session = request.config.stash[CertSession.KEY]
    state = session.activate_for(request.node)
    state.uses_fixture = True
    return CertTrace(session, state)
