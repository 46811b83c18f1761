"""``CertSession``: the plugin's session state and the hooks that turn a test run into a gate.

One object per pytest session, registered in ``pytest_configure``. It stays inert (no import of
``cert_core``, no SDK patched, no file written) until a cert option or ini key is set or a
collected test uses the ``cert`` marker or the ``cert_trace`` fixture. Then it patches the SDKs,
registers itself as a process-wide recorder (so calls from threads a test starts are seen), and
attributes every record to the test running at that moment.

Per-test results are built in the process that ran the test and travel to the controller inside
the teardown report (``user_properties``, key ``cert.result``), the same way with or without
xdist; only the controller writes the evidence folder.
"""

from __future__ import annotations

import gc
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from .gate import (
    CertAccuracyError,
    CertFailure,
    CertGateError,
    CertMarkerError,
    CertStatisticalError,
    CertWarning,
    MarkerOptions,
    RunOutcome,
    StatisticalResult,
    Violation,
    consistency,
    evaluate_runs,
    marker_options,
    unreachable,
)
from .plugin import DEFAULT_REPORT_DIR, OPTIONS
from .totals import CallTotals

if TYPE_CHECKING:
    from cert_core import TraceRecord
    from cert_core.injection import ProbeReport
    from cert_core.measure import Component, Measurement
    from cert_core.perturb import RobustnessResult

__all__ = ["CertSession", "Settings", "TestState", "read_settings"]

RESULT_PROPERTY = "cert.result"
DEFAULT_CASSETTE_DIR = "cassettes"
#: Longest answer text kept in a result (the full text is in the trace record).
ANSWER_CHARS = 500


@dataclass(frozen=True)
class Settings:
    """The session's cert options after precedence (CLI over ini); ``sources`` says where each
    given value came from (``--cert-threshold`` or ``ini cert_threshold``)."""

    threshold: float | None = None
    preset: str | None = None
    budget: float | None = None
    test_budget: float | None = None
    max_latency_ms: float | None = None
    report: str | None = None
    traces: str | None = None
    strict: bool = False
    no_instrument: bool = False
    record_mode: str | None = None
    cassette_dir: str | None = None
    record_upstream: str | None = None
    replay_ignore: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)
    #: Why the record mode in force differs from the one configured (CI lowers the ini's).
    record_mode_note: str | None = None

    @property
    def configured(self) -> bool:
        """A cert option or ini key is in play (``--cert-no-instrument`` alone only switches off)."""
        passive = ("no_instrument", "strict", "cassette_dir", "record_upstream", "replay_ignore")
        return (
            self.strict
            or any(name not in passive and name != "record_mode" for name in self.sources)
            or self.record_mode not in (None, "off")
        )

    @property
    def report_dir(self) -> str:
        return self.report or DEFAULT_REPORT_DIR

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "preset": self.preset,
            "budget_usd": self.budget,
            "test_budget_usd": self.test_budget,
            "max_latency_ms": self.max_latency_ms,
            "report": self.report_dir,
            "traces": self.traces,
            "strict": self.strict,
            "instrument": not self.no_instrument,
            "record_mode": self.record_mode,
            "cassette_dir": self.cassette_dir or DEFAULT_CASSETTE_DIR,
            "record_upstream": self.record_upstream,
            "replay_ignore": list(self.replay_ignore),
            "sources": dict(self.sources),
        }


def read_settings(config: pytest.Config) -> Settings:
    """Read every ``--cert-*`` option and ``cert_*`` ini key; a bad ini value is a usage error."""
    import argparse

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        value = config.getoption(option.dest)
        if value is not None:
            values[option.name], sources[option.name] = value, option.flag
            continue
        raw = config.getini(option.ini)
        if raw is None or raw == "":
            continue
        if option.metavar is None:
            values[option.name] = bool(raw)
        else:
            assert option.convert is not None
            try:
                values[option.name] = option.convert(str(raw).strip())
            except argparse.ArgumentTypeError as exc:
                raise pytest.UsageError(f"ini key {option.ini} = {raw!r}: {exc}") from None
        sources[option.name] = f"ini {option.ini}"
    ignore = tuple(str(v).strip() for v in config.getini("cert_replay_ignore") if str(v).strip())
    if ignore:
        values["replay_ignore"], sources["replay_ignore"] = ignore, "ini cert_replay_ignore"
    mode = values.get("record_mode")
    if mode is not None and sources["record_mode"].startswith("ini") and lowered_in_ci(mode):
        values["record_mode"] = "none"
        values["record_mode_note"] = f"CI is set: the ini's {mode!r} is lowered to 'none'"
    return Settings(**values, sources=sources)


@dataclass
class TestState:
    """What the cert gate knows about one test while it runs (in ``item.stash``)."""

    nodeid: str
    location: tuple[str, int]
    options: MarkerOptions = field(default_factory=MarkerOptions)
    uses_marker: bool = False
    uses_fixture: bool = False
    records: list[TraceRecord] = field(default_factory=list)
    measurements: list[tuple[Measurement, dict[str, Any]]] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    run_index: int | None = None
    statistical: StatisticalResult | None = None
    phases: dict[str, tuple[str, bool]] = field(default_factory=dict)
    duration_s: float = 0.0
    warned: set[str] = field(default_factory=set)
    unmeasured_in_runs: list[str] = field(default_factory=list)
    cassette: Any = None  # the cert_core.replay.Cassette in use while the test runs
    cassette_info: dict[str, Any] | None = None
    perturbations: list[dict[str, Any]] = field(default_factory=list)  # cert_trace.perturb() results
    consistency: dict[str, Any] | None = None  # of the repeated runs
    faults: list[dict[str, Any]] = field(default_factory=list)  # cert_trace.inject_faults() logs
    probes: list[dict[str, Any]] = field(default_factory=list)  # cert_trace.probe_injections() reports
    pii_checks: list[int] = field(default_factory=lambda: [0, 0])  # texts checked, findings

    @property
    def relevant(self) -> bool:
        """Whether the test appears in the results: it used a cert feature or made a call."""
        return self.uses_marker or self.uses_fixture or bool(self.records)


STATE_KEY = pytest.StashKey[TestState]()


def running_in_ci() -> bool:
    """``CI`` is set to something true (GitHub Actions, GitLab, CircleCI and others set it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


#: Record modes that may send requests to the network.
RECORDING_MODES = ("once", "new_episodes", "all")


def lowered_in_ci(mode: str) -> bool:
    """Whether a mode from the ini or a marker becomes ``none``: CI replays only, so a missing
    recording fails the build instead of calling a paid API with whatever key the runner has.
    Only ``--cert-record-mode`` on the command line records in CI."""
    return mode in RECORDING_MODES and running_in_ci()


_UNSAFE = re.compile(r"[^\w.\-\[\]=,+]+")


def cassette_name(item: pytest.Item) -> str:
    """``test_name.json`` (``Class.test_name[param].json``), safe as a file name on every OS."""
    name = item.nodeid.split("::", 1)[1] if "::" in item.nodeid else item.name
    safe = _UNSAFE.sub("_", name.replace("::", ".")).strip("._") or "test"
    # A digest also where parameter ids differ only in case (test[A], test[a]): one file on
    # macOS and Windows otherwise.
    if len(safe) > 120 or safe != name.replace("::", ".") or ("[" in name and name != name.lower()):
        import hashlib

        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        safe = f"{safe[:100]}-{digest}"
    return safe + ".json"


def _uncertainty(state: TestState) -> dict[str, Any] | None:
    """The perplexity of the test's calls that returned token logprobs (and the bound, if any)."""
    bound = state.options.max_perplexity if "max_perplexity" in state.options.given else None
    calls = measured = 0
    worst = total = 0.0
    for r in state.records:
        if r.kind == "llm":
            calls += 1
            if r.uncertainty is not None:
                measured += 1
                total += r.uncertainty.perplexity
                worst = max(worst, r.uncertainty.perplexity)
    if not measured and bound is None:
        return None
    return {
        "calls": calls,
        "measured": measured,
        "max_perplexity": worst if measured else None,
        "mean_perplexity": total / measured if measured else None,
        "bound": bound,
    }


def _robustness(state: TestState) -> dict[str, Any] | None:
    """What the test showed of Art. 15(4) robustness; ``None`` when it tested none of it."""
    uncertainty = _uncertainty(state)
    if not (state.perturbations or state.consistency or state.faults or uncertainty):
        return None
    return {
        "perturbations": state.perturbations,
        "consistency": state.consistency,
        "faults": state.faults,
        "uncertainty": uncertainty,
    }


def _security(state: TestState) -> dict[str, Any] | None:
    """What the test showed of Art. 15(5) cybersecurity; ``None`` when it tested none of it."""
    checked, found = state.pii_checks
    if not (state.probes or checked):
        return None
    return {"probes": state.probes, "pii": {"checked": checked, "findings": found} if checked else None}


def _outcome(phases: dict[str, tuple[str, bool]]) -> str:
    setup = phases.get("setup", ("passed", False))
    if setup[0] == "failed":
        return "error"
    if setup[0] == "skipped":
        return "skipped"
    outcome, xfail = phases.get("call", ("passed", False))
    if xfail:
        return "xfailed" if outcome == "skipped" else "xpassed" if outcome == "passed" else "failed"
    if outcome == "passed" and phases.get("teardown", ("passed", False))[0] == "failed":
        return "error"
    return outcome


def _answer_text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(
            f"cert_trace.expect() needs the answer as a string, got {type(value).__name__}; "
            "pass the text of the model's reply (e.g. response.choices[0].message.content)"
        )
    return value


def _reference_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return "\n\n".join(value)  # retrieved passages: measured as one context, passage by passage
    raise TypeError(
        "cert_trace.expect() needs the reference as a string or a non-empty list of strings "
        f"(retrieved passages), got {type(value).__name__}"
    )


def _mentions(value: Any, text: str) -> bool:
    if isinstance(value, str):
        return text in value
    if isinstance(value, dict):
        return any(_mentions(v, text) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_mentions(v, text) for v in value)
    return False


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def accuracy_message(m: Measurement, source: str, answer: str, *, strict: bool = False) -> str:
    """The failure text of ``expect()``: verdict, each component, unsupported terms, threshold."""
    from cert_core._metric import COMPONENTS

    if m.confidence is None:
        head = "answer could not be measured: no weighted component ran" + (
            " (--cert-strict)" if strict else ""
        )
    elif strict:
        verdict = ">=" if m.confidence >= m.threshold else "<"
        head = (
            f"answer not fully measured (--cert-strict): a weighted component did not run; "
            f"confidence of the rest {m.confidence:.3f} {verdict} threshold {m.threshold:.3f} "
            f"(threshold from {source})"
        )
    else:
        head = (
            f"answer below the accuracy threshold: confidence {m.confidence:.3f} < threshold "
            f"{m.threshold:.3f} (threshold from {source})"
        )
    lines = [head]
    names = [*COMPONENTS, *m.extra]
    for name in names:
        score = m.extra.get(name) if name in m.extra else getattr(m, name)
        if name in m.not_measured:
            lines.append(f"  {name:<12} not measured: {m.not_measured[name]}")
        elif score is not None:
            weight = m.weights.get(name)
            weighted = f"weight {weight:.2f}" if weight else "not weighted by the preset"
            lines.append(f"  {name:<12} {score:.3f}  {weighted}")
    if m.unsupported_terms:
        shown = ", ".join(repr(t) for t in m.unsupported_terms[:12])
        more = len(m.unsupported_terms) - 12
        lines.append(f"  unsupported terms: {shown}" + (f" and {more} more" if more > 0 else ""))
    if m.flags:
        lines.append(f"  flags: {', '.join(m.flags)}")
    lines.append(f"  preset: {m.preset}; threshold {m.threshold:.3f} from {source}")
    lines.append(f"  answer: {_short(answer)!r}")
    return "\n".join(lines)


class CertSession:
    """The plugin's state for one pytest session, and its hooks."""

    KEY = pytest.StashKey["CertSession"]()
    NAME = "cert-session"

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.active = False
        self.is_worker = hasattr(config, "workerinput")
        self.worker_id: str | None = getattr(config, "workerinput", {}).get("workerid")
        self.current: TestState | None = None
        self.session_records: list[TraceRecord] = []  # calls made outside any test
        self.results: list[dict[str, Any]] = []  # controller: per-test results, arrival order
        self.test_records: list[TraceRecord] = []  # controller: records of those tests
        self.instrumented: list[str] = []
        self.instrumentation_errors = 0
        self.session_violations: list[Violation] = []
        self.evidence_error: str | None = None
        self.evidence_dir: Any = None
        self.results_doc: dict[str, Any] | None = None
        self.summary_sections: list[tuple[str, str]] = []
        self._errors_baseline = 0
        self.started = time.time()
        self._we_instrumented: list[str] = []
        self._recorder_added = False
        self._components: list[Component] | None = None
        self._workers: set[str] = set()
        self._payloads: list[tuple[str, str | None]] = []
        self._checked = False
        self._ran = False  # a test report arrived (not --collect-only or a collection error)
        self._has_result_hooks = True
        self._junit = True
        self._cassettes_tracked = False
        self.decode_errors: list[str] = []
        self._test_hooks = _TestHooks(self)
        self._receiver = _ReportReceiver(self)

    # -- activation ---------------------------------------------------------------------------

    def activate(self) -> None:
        """Start recording: patch the SDKs (unless switched off) and listen to every thread."""
        if self.active:
            return
        self.active = True
        import cert_core

        if not self.settings.no_instrument:
            before = set(cert_core.instrumented_providers())
            self.instrumented = cert_core.instrument(on_import=True)
            self._we_instrumented = [p for p in self.instrumented if p not in before]
        cert_core.add_recorder(self)
        self._recorder_added = True
        self._errors_baseline = _instrumentation_errors()
        self.config.pluginmanager.register(self._test_hooks, self.NAME + "-tests")
        # Conftests are registered by the time collection ends (when this usually runs).
        self._has_result_hooks = bool(self.config.hook.pytest_cert_test_result.get_hookimpls())
        # JUnit properties only when a JUnit file is written (in a worker: when the run asks one).
        self._junit = bool(getattr(self.config.option, "xmlpath", None))
        if not self.is_worker:
            self._listen()

    def activate_for(self, item: pytest.Item) -> TestState:
        """Activate (the fixture may be requested dynamically) and return the item's state."""
        self.activate()
        state = self.state_for(item)
        if self.current is None:
            self.current = state
        return state

    def _listen(self) -> None:
        """Receive per-test results from the reports (controller, or a run without xdist)."""
        if not self.config.pluginmanager.is_registered(self._receiver):
            self.config.pluginmanager.register(self._receiver, self.NAME + "-receiver")

    def close(self) -> None:
        import sys

        if "cert_core.replay" in sys.modules:  # put the HTTP clients back as they were
            sys.modules["cert_core.replay"].uninstall()
        for hooks in (self._test_hooks, self._receiver):
            if self.config.pluginmanager.is_registered(hooks):
                self.config.pluginmanager.unregister(hooks)
        if self._recorder_added:
            import cert_core

            cert_core.remove_recorder(self)
            self._recorder_added = False
            if self._we_instrumented:
                cert_core.uninstrument(self._we_instrumented)
                self._we_instrumented = []

    def state_for(self, item: pytest.Item) -> TestState:
        state = item.stash.get(STATE_KEY, None)
        if state is None:
            path, line = item.location[0], item.location[1]
            state = TestState(item.nodeid, (path, (line or 0) + 1))
            item.stash[STATE_KEY] = state
        return state

    # -- the recorder (called from any thread) ------------------------------------------------

    def record(self, record: TraceRecord) -> None:
        state = self.current
        if state is None:
            self.session_records.append(record)
        else:
            state.records.append(record.replace(test_id=state.nodeid))

    # -- hooks: configuration and collection ----------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> str | None:
        if not self.settings.configured:
            return None
        s = self.settings
        parts = [
            f"threshold {s.threshold} ({s.sources['threshold']})"
            if s.threshold is not None
            else "threshold from preset",
            f"preset {s.preset or 'general'}",
        ]
        if s.budget is not None:
            parts.append(f"session budget {s.budget:g} USD")
        if s.test_budget is not None:
            parts.append(f"test budget {s.test_budget:g} USD")
        if s.max_latency_ms is not None:
            parts.append(f"max latency {s.max_latency_ms:g} ms")
        parts.append(f"report {s.report_dir}")
        if s.strict:
            parts.append("strict")
        parts.append("SDKs not instrumented" if s.no_instrument else "SDKs instrumented")
        if s.record_mode not in (None, "off"):
            where = s.cassette_dir or DEFAULT_CASSETTE_DIR
            note = f" ({s.record_mode_note})" if s.record_mode_note else ""
            parts.append(f"cassettes {s.record_mode} in {where}/{note}")
            if s.record_upstream:
                parts.append(f"recording from {s.record_upstream}")
        return "cert: " + ", ".join(parts)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if self.active:
            return
        if self.settings.configured or any(
            item.get_closest_marker("cert") is not None or "cert_trace" in getattr(item, "fixturenames", ())
            for item in items
        ):
            self.activate()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Under xdist the controller collects nothing; options alone make it active there.
        # Workers may activate through a fixture or marker, so it always listens for results.
        if self.config.pluginmanager.hasplugin("dsession"):
            self._listen()
            if self.settings.configured:
                self.active = True

    # -- hooks: running a test ----------------------------------------------------------------

    def runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        self.current = self.state_for(item)
        try:
            return (yield)
        finally:
            self.current = None
            # Normally closed at the end of teardown; this covers a protocol cut short.
            self.close_cassette(item)

    def runtest_setup(self, item: pytest.Item) -> None:
        state = self.state_for(item)
        markers = list(item.iter_markers("cert"))
        if markers:
            from cert_core.measure import PRESETS

            state.uses_marker = True
            try:
                state.options = marker_options([(m.args, m.kwargs) for m in markers], list(PRESETS))
            except CertMarkerError as exc:
                raise CertMarkerError(f"{item.nodeid}: {exc}") from None
        self._open_cassette(item, state)

    def _open_cassette(self, item: pytest.Item, state: TestState) -> None:
        """Put the test's cassette in front of the HTTP clients, from setup to teardown."""
        options, s = state.options, self.settings
        # The command line wins over a marker, a marker over the ini; in CI a marker may not
        # record either (the ini's mode was lowered already).
        mode, source = s.record_mode, s.sources.get("record_mode")
        if options.record_mode is not None and not (source or "").startswith("--"):
            mode, source = options.record_mode, "the cert marker"
            if lowered_in_ci(mode):
                mode, source = "none", f"the cert marker's {options.record_mode!r}, lowered in CI"
        if mode is None or mode == "off":
            return
        from cert_core import replay
        from cert_core.replay import Cassette, CassetteError

        if not self._cassettes_tracked:
            replay.track_run()
            self._cassettes_tracked = True

        folder = item.path.parent / (s.cassette_dir or DEFAULT_CASSETTE_DIR)
        path = (
            folder / options.cassette if options.cassette else folder / item.path.stem / cassette_name(item)
        )
        ignore = options.replay_ignore if options.replay_ignore is not None else s.replay_ignore
        try:
            cassette = Cassette(path, mode, ignore=ignore, upstream=s.record_upstream, source=source)
        except CassetteError as exc:
            raise CassetteError(f"{item.nodeid}: {exc}") from None
        state.cassette = cassette.__enter__()

    def close_cassette(self, item: pytest.Item) -> None:
        state = item.stash.get(STATE_KEY, None)
        cassette = state.cassette if state is not None else None
        if cassette is None:
            return
        assert state is not None
        state.cassette = None
        cassette.__exit__(None, None, None)  # saves what was recorded
        root = self.config.rootpath
        try:
            shown = str(cassette.path.relative_to(root))
        except ValueError:
            shown = str(cassette.path)
        state.cassette_info = {
            "path": shown.replace(os.sep, "/"),
            "mode": cassette.mode.value,
            "replayed": cassette.replayed,
            "recorded": cassette.recorded,
        }

    def pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        __tracebackhide__ = True
        state = pyfuncitem.stash.get(STATE_KEY, None)
        if state is None or state.options.repeat <= 1:
            return None
        options = state.options
        assert options.min_pass_rate is not None  # marker validation requires it with repeat
        manager = self.config.pluginmanager
        call = manager.subset_hook_caller("pytest_pyfunc_call", remove_plugins=[self._test_hooks])
        self._repeat(
            state,
            lambda: call(pyfuncitem=pyfuncitem),
            options.repeat,
            options.min_pass_rate,
            options.confidence,
        )
        return True

    def runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        state = item.stash.get(STATE_KEY, None)
        __tracebackhide__ = True
        if state is None:
            return (yield)
        try:
            result = yield
        except BaseException as exc:
            # A check's failure counts as a violation when it fails the test (one caught by
            # the test itself, e.g. in pytest.raises, does not).
            if isinstance(exc, CertFailure) and not isinstance(exc, CertGateError):
                state.violations.append(Violation(exc.kind, str(exc).splitlines()[0]))
            self._end_checks(state, raising=False)
            raise
        self._end_checks(state, raising=True)
        return result

    def runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        state = item.stash.get(STATE_KEY, None)
        if state is None:
            return report
        state.phases[report.when] = (report.outcome, hasattr(report, "wasxfail"))
        state.duration_s += report.duration
        if report.when == "teardown" and state.relevant:
            import msgspec

            from cert_core import json_fallback

            result = self._test_result(item, state)
            if self._has_result_hooks:  # item.ihook costs a conftest lookup: only when used
                try:
                    item.ihook.pytest_cert_test_result(item=item, result=result)
                except Exception as exc:  # a broken user hook must not crash the run
                    result["extra"]["hook_error"] = f"pytest_cert_test_result: {type(exc).__name__}: {exc}"
            if self._junit:
                report.user_properties.extend(_junit_properties(result))
            try:
                payload = msgspec.json.encode((result, state.records), enc_hook=json_fallback)
            except Exception as exc:  # json_fallback's repr() of a user value may raise anything
                # A record holding something JSON cannot carry: keep the result, say what was lost.
                lost = f"{len(state.records)} record(s) not kept: {type(exc).__name__}: {exc}"
                result["extra"]["records_error"] = lost
                payload = msgspec.json.encode((result, []), enc_hook=_repr_or_placeholder)
            report.user_properties.append((RESULT_PROPERTY, payload.decode()))
            # Items live until the session ends: drop what the payload now carries.
            state.records, state.measurements = [], []
            if self.current is state:  # activated by the fixture itself: no protocol wrapper ran
                self.current = None
        return report

    def runtest_logreport(self, report: pytest.TestReport) -> None:
        self._ran = True
        # Controller (or a run without xdist): take the result out of the report, so JUnit XML
        # shows only the flat cert.* properties.
        if self.is_worker or report.when != "teardown":
            return
        for i, (name, value) in enumerate(report.user_properties):
            if name == RESULT_PROPERTY:
                del report.user_properties[i]
                node = getattr(report, "node", None)
                worker = None
                if node is not None:
                    worker = getattr(getattr(node, "gateway", None), "id", None) or str(node)
                    self._workers.add(worker)
                # Kept as text until the session ends: thousands of decoded results would
                # slow every garbage collection of the run.
                self._payloads.append((str(value), worker))
                self.active = True
                return

    def decode_payloads(self) -> None:
        """Decode the per-test results received so far (controller)."""
        import msgspec

        from cert_core import TraceRecord

        decoder = msgspec.json.Decoder(tuple[dict[str, Any], list[TraceRecord]])
        # Pure allocation, no cycles: collections triggered meanwhile would only rescan the run.
        enabled = gc.isenabled()
        gc.disable()
        try:
            for text, worker in self._payloads:
                try:
                    result, records = decoder.decode(text)
                except msgspec.ValidationError as exc:
                    # Never an INTERNALERROR: report it, keep everything else.
                    self.decode_errors.append(f"a test result could not be read: {exc}")
                    continue
                if worker is not None:
                    result["worker"] = worker
                self.results.append(result)
                self.test_records.extend(records)
        finally:
            if enabled:
                gc.enable()
        self._payloads = []

    # -- the checks -----------------------------------------------------------------------------

    def _warn(self, state: TestState, key: str, message: str) -> None:
        if key not in state.warned:
            state.warned.add(key)
            # Attributed to the test function, wherever in the plugin the check ran.
            warnings.warn_explicit(
                CertWarning(f"{state.nodeid}: {message}"), CertWarning, state.location[0], state.location[1]
            )

    def _limits(self, state: TestState) -> dict[str, tuple[Any, str | None]]:
        s, o = self.settings, state.options
        budget: tuple[Any, str | None] = (None, None)
        if "budget_usd" in o.given:
            budget = (o.budget_usd, "cert marker")
        elif s.test_budget is not None:
            budget = (s.test_budget, s.sources["test_budget"])
        latency: tuple[Any, str | None] = (None, None)
        if "max_latency_ms" in o.given:
            latency = (o.max_latency_ms, "cert marker")
        elif s.max_latency_ms is not None:
            latency = (s.max_latency_ms, s.sources["max_latency_ms"])
        return {"budget": budget, "latency": latency}

    def _preset_and_threshold(
        self, state: TestState, threshold: float | None = None, preset: str | None = None
    ) -> tuple[str, float, str]:
        from cert_core.measure import resolve_preset

        s, o = self.settings, state.options
        name = preset or (o.preset if "preset" in o.given else None) or s.preset or "general"
        chosen = resolve_preset(name)
        if threshold is not None:
            return chosen.name, float(threshold), "the expect() argument"
        if "threshold" in o.given:
            assert o.threshold is not None
            return chosen.name, o.threshold, "the cert marker"
        if s.threshold is not None:
            return chosen.name, s.threshold, s.sources["threshold"]
        return chosen.name, chosen.threshold, f"preset {chosen.name}"

    def _end_checks(self, state: TestState, *, raising: bool) -> None:
        """Budget, latency and price checks when the test body ends; raise if it had passed."""
        __tracebackhide__ = True
        limits = self._limits(state)
        totals = CallTotals.of(state.records)
        found: list[Violation] = []
        budget, budget_source = limits["budget"]
        # A budget judges what the calls cost, live or as recorded: a replay is not free.
        cost = totals.cost_usd + totals.replayed_cost_usd
        if budget is not None and cost > budget:
            replayed = (
                f", {totals.replayed_calls} of them replayed at their recorded cost"
                if totals.replayed_calls
                else ""
            )
            found.append(
                Violation(
                    "budget",
                    f"cost {cost:.6f} USD > budget {budget:.6f} USD ({budget_source}) "
                    f"over {totals.calls} call(s){replayed}",
                )
            )
        first = totals.first_unknown
        if first is not None:
            text = (
                f"{totals.unknown_price} call(s) with unknown price, e.g. "
                f"{first.provider}/{first.request_model}: {first.price_error or 'no price'}"
            )
            if self.settings.strict:
                found.append(Violation("unknown_price", text + " (--cert-strict)"))
            else:
                self._warn(state, "price", text + "; their cost is not counted (fails under --cert-strict)")
        bound, bound_source = limits["latency"]
        slowest = totals.slowest
        if bound is not None and slowest is not None and slowest.duration_ms > bound:
            found.append(
                Violation(
                    "latency",
                    f"slowest call {slowest.duration_ms:.1f} ms > max_latency_ms {bound:g} ms "
                    f"({bound_source}): {slowest.provider}/{slowest.request_model}"
                    + (" (recorded latency of a replayed call)" if slowest.replayed else ""),
                )
            )
        if "max_perplexity" in state.options.given:
            found.extend(self._perplexity_checks(state))
        state.violations.extend(found)
        if found and raising:
            raise CertGateError("\n".join(v.message for v in found), found)

    def _perplexity_checks(self, state: TestState) -> list[Violation]:
        """The ``max_perplexity`` marker bound over the calls that returned token logprobs;
        calls without them are not measured (a warning, or a violation under --cert-strict)."""
        bound = state.options.max_perplexity
        assert bound is not None
        found = []
        llm = [r for r in state.records if r.kind == "llm"]
        measured = [r for r in llm if r.uncertainty is not None]
        for r in measured:
            assert r.uncertainty is not None
            if r.uncertainty.perplexity > bound:
                found.append(
                    Violation(
                        "uncertainty",
                        f"perplexity {r.uncertainty.perplexity:.3f} > max_perplexity {bound:g} (cert "
                        f"marker): {r.provider}/{r.request_model}, mean token logprob "
                        f"{r.uncertainty.mean_logprob:.3f} over {r.uncertainty.tokens} token(s)",
                    )
                )
        unmeasured = len(llm) - len(measured)
        if unmeasured or not llm:
            text = (
                f"max_perplexity: {unmeasured} of {len(llm)} call(s) returned no token logprobs, "
                "not measured (ask for logprobs=True)"
                if llm
                else "max_perplexity: the test made no LLM call, nothing measured"
            )
            if self.settings.strict:
                found.append(Violation("uncertainty", text + " (--cert-strict)"))
            else:
                self._warn(state, "perplexity", text)
        return found

    # -- fixture API ----------------------------------------------------------------------------

    def components(self) -> list[Component]:
        if self._components is None:
            found: list[Component] = []
            for returned in self.config.hook.pytest_cert_components(config=self.config):
                found.extend(returned or [])
            self._components = found
        return self._components

    def expect(
        self,
        state: TestState,
        answer: Any,
        reference: Any,
        *,
        threshold: float | None,
        preset: str | None,
    ) -> Measurement:
        __tracebackhide__ = True
        from cert_core.measure import default_measurer, resolve_preset

        answer_text, reference_text = _answer_text(answer), _reference_text(reference)
        name, limit, source = self._preset_and_threshold(state, threshold, preset)
        m = default_measurer().measure(
            answer_text, reference_text, threshold=limit, preset=name, components=self.components()
        )
        state.measurements.append(
            (m, {"threshold_source": source, "run": state.run_index, "answer": answer_text[:ANSWER_CHARS]})
        )
        self._attach(state, answer_text, reference_text, m)
        weighted = resolve_preset(name).weights
        unmeasured = {k: v for k, v in m.not_measured.items() if weighted.get(k, 0) > 0 or k in m.extra}
        if m.confidence is None or unmeasured:
            what = "; ".join(f"{k}: {v}" for k, v in unmeasured.items()) or m.explanation
            text = f"not measured ({what})"
            if not self.settings.strict:
                self._warn(state, "measure:" + text, text + "; the answer is not judged on it")
            elif state.run_index is not None:
                # A repeated run that could not be measured counts neither way; strict mode
                # fails the test once the runs are done.
                state.unmeasured_in_runs.append(text)
            else:
                raise CertAccuracyError(
                    accuracy_message(m, source, answer_text, strict=True), m, "not_measured"
                )
        if m.passed is False:
            raise CertAccuracyError(accuracy_message(m, source, answer_text), m)
        return m

    def perturb(
        self,
        state: TestState,
        app: Callable[..., Any],
        question: str,
        *,
        context: Sequence[str] | None,
        reference: Any,
        perturbations: Sequence[str] | None,
        max_drop: float,
        seed: int,
        per_perturbation: int,
        threshold: float | None,
        preset: str | None,
    ) -> RobustnessResult:
        __tracebackhide__ = True
        from cert_core.measure import default_measurer
        from cert_core.perturb import run_perturbations

        from .gate import CertRobustnessError

        if reference is None and context is None:
            raise ValueError(
                "cert_trace.perturb() needs reference= (a gold answer) or context= (the passages "
                "the app answers from), to measure each answer against"
            )
        reference_text = _reference_text(reference if reference is not None else context)
        name, limit, _ = self._preset_and_threshold(state, threshold, preset)
        measurer, components = default_measurer(), self.components()

        def measure(answer: str) -> float | None:
            m = measurer.measure(answer, reference_text, threshold=limit, preset=name, components=components)
            return m.confidence

        result = run_perturbations(
            app,
            question,
            measure=measure,
            context=context,
            perturbations=perturbations,
            max_drop=max_drop,
            seed=seed,
            per_perturbation=per_perturbation,
        )
        state.perturbations.append(result.to_dict())
        unmeasured = [c for c in result.checks if c.verdict == "not measured"]
        if unmeasured:
            text = f"robustness: {len(unmeasured)} of {len(result.checks)} variant(s) not measured"
            if self.settings.strict:
                raise CertRobustnessError(text + " (--cert-strict)", unmeasured)
            self._warn(state, "robustness:not_measured", text + "; their drop is unknown")
        if not result.passed:
            raise CertRobustnessError(result.describe(), result.failed)
        return result

    def probe_injections(
        self,
        state: TestState,
        app: Callable[[Any], Any],
        *,
        categories: Sequence[str] | None,
        max_success_rate: float,
        probes: Sequence[Any] | None,
        canary: str | None,
        confidence: float,
        tool_aliases: Mapping[str, str] | None,
    ) -> ProbeReport:
        __tracebackhide__ = True
        from cert_core.injection import run_probes

        from .gate import CertSecurityError

        if not 0 <= max_success_rate <= 1:
            raise ValueError(f"max_success_rate must be in [0, 1], got {max_success_rate!r}")
        report = run_probes(
            app,
            probes=probes,
            categories=categories,
            canary=canary,
            confidence=confidence,
            tool_aliases=tool_aliases,
        )
        data = report.to_dict()
        data["max_success_rate"] = max_success_rate
        state.probes.append(data)
        over = [c for c in report.categories.values() if c.rate is not None and c.rate > max_success_rate]
        leaked = [o for o in report.outcomes if o.canary_leaked]
        if report.errors:
            text = f"prompt-injection probes: {len(report.errors)} probe(s) not assessed (app errors)"
            if self.settings.strict:
                raise CertSecurityError(text + " (--cert-strict)\n" + report.describe(), report)
            self._warn(state, "security:errors", text + "; see the results for each")
        if over or leaked:
            why = [
                f"{c.category}: {c.successes}/{c.attempts} attacks succeeded ({c.rate:.1%}) > "
                f"allowed {max_success_rate:.1%}"
                for c in over
                if c.rate is not None
            ]
            if leaked:
                why.append(f"the canary leaked in {len(leaked)} answer(s)")
            raise CertSecurityError("prompt injection: " + "; ".join(why) + "\n" + report.describe(), report)
        return report

    def _attach(self, state: TestState, answer: str, reference: str, m: Measurement) -> None:
        """Put the measurement on the LLM record that produced the answer (else the latest)."""
        llm = [i for i, r in enumerate(state.records) if r.kind == "llm"]
        if not llm:
            return
        match = next(
            (i for i in reversed(llm) if _mentions(state.records[i].output, answer.strip())), llm[-1]
        )
        state.records[match] = state.records[match].replace(reference=reference, evaluation=m.to_dict())

    def record_manual(self, state: TestState, record: TraceRecord | None, **facts: Any) -> TraceRecord:
        import cert_core

        if record is None:
            record = _build_record(**facts)
        elif not isinstance(record, cert_core.TraceRecord):
            raise TypeError(f"cert_trace.record() takes a TraceRecord, got {type(record).__name__}")
        else:
            try:  # constraints are checked when a record is read, not when it is built: now
                cert_core.TraceRecord.from_dict(record.to_dict())
            except cert_core.RecordError as exc:
                raise ValueError(f"cert_trace.record(): the record is not valid: {exc}") from None
        before = len(state.records)
        previous, self.current = self.current, state
        try:
            cert_core.record_call(record)
        finally:
            self.current = previous
        return state.records[before] if len(state.records) > before else record

    def repeat(
        self,
        state: TestState,
        fn: Callable[[], Any],
        n: int,
        *,
        min_pass_rate: float | None,
        confidence: float | None,
    ) -> StatisticalResult:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"cert_trace.repeat(): n must be an integer >= 1, got {n!r}")
        rate = min_pass_rate if min_pass_rate is not None else state.options.min_pass_rate
        if rate is None:
            raise ValueError(
                "cert_trace.repeat() needs min_pass_rate= (or the cert marker's), the pass rate "
                "whose Wilson lower bound the runs must reach"
            )
        level = confidence if confidence is not None else state.options.confidence
        marker_options([((), {"min_pass_rate": rate, "confidence": level})], ["general"])  # validates
        problem = unreachable(n, rate, level)
        if problem:
            raise ValueError(f"cert_trace.repeat(): {problem}")
        return self._repeat(state, fn, n, rate, level)

    def _repeat(
        self, state: TestState, fn: Callable[[], Any], n: int, min_pass_rate: float, confidence: float
    ) -> StatisticalResult:
        __tracebackhide__ = True
        outcomes: list[RunOutcome] = []
        start = len(state.measurements)
        for run in range(n):
            state.run_index = run
            first = len(state.measurements)
            try:
                fn()
            except (pytest.skip.Exception, pytest.xfail.Exception):
                raise  # the test skips or xfails as a whole, not one run
            except (AssertionError, pytest.fail.Exception) as exc:
                outcomes.append(
                    RunOutcome(
                        run, "failed", _short(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    )
                )
                continue
            except Exception as exc:  # the app failed to answer: a failed run, with its error
                outcomes.append(RunOutcome(run, "failed", _short(f"{type(exc).__name__}: {exc}")))
                continue
            finally:
                state.run_index = None
            ran = state.measurements[first:]
            if ran and all(m.confidence is None for m, _ in ran):
                outcomes.append(RunOutcome(run, "not_measured", "no measurement of this run could be taken"))
            else:
                outcomes.append(RunOutcome(run, "passed"))
        result = evaluate_runs(outcomes, min_pass_rate, confidence)
        state.statistical = result
        state.consistency = consistency(state.measurements[start:], n)
        if result.verdict == "failed":
            failed = [o for o in outcomes if o.outcome == "failed"]
            details = "".join(f"\n  run {o.run}: {o.message}" for o in failed[:5])
            more = f"\n  and {len(failed) - 5} more failed run(s)" if len(failed) > 5 else ""
            raise CertStatisticalError(result.describe() + details + more, result)
        if result.verdict == "not measured" and not self.settings.strict:
            self._warn(state, "statistical", result.describe())
        if self.settings.strict and (result.verdict == "not measured" or state.unmeasured_in_runs):
            reason = state.unmeasured_in_runs[0] if state.unmeasured_in_runs else "no run measured"
            message = f"{result.describe()}; not every run could be measured, e.g. {reason} (--cert-strict)"
            raise CertStatisticalError(message, result, kind="not_measured")
        return result

    # -- results --------------------------------------------------------------------------------

    def _test_result(self, item: pytest.Item, state: TestState) -> dict[str, Any]:
        import msgspec

        totals = CallTotals.of(state.records)
        name: str | None
        limit: float | None
        source: str | None
        if state.measurements:  # the threshold the test was last judged by
            last, meta = state.measurements[-1]
            name, limit, source = last.preset, last.threshold, meta["threshold_source"]
        elif state.uses_fixture or state.options.given & {"threshold", "preset"}:
            name, limit, source = self._preset_and_threshold(state)
        else:  # no accuracy check in this test (e.g. it only made calls): no threshold in force
            name = limit = source = None
        limits = self._limits(state)
        measurements = [{**msgspec.structs.asdict(m), **meta} for m, meta in state.measurements]
        uses = [f for f, on in (("fixture", state.uses_fixture), ("marker", state.uses_marker)) if on]
        outcome = _outcome(state.phases)
        if state.violations:
            verdict = "failed"
        elif outcome in ("skipped", "error") and not measurements:
            verdict = "no check"  # the test never reached its checks
        elif (state.statistical is not None and state.statistical.verdict == "not measured") or (
            measurements and all(m["confidence"] is None for m in measurements)
        ):
            verdict = "not measured"
        elif measurements or state.statistical is not None or any(v[0] is not None for v in limits.values()):
            verdict = "passed"
        else:
            verdict = "no check"
        return {
            "nodeid": state.nodeid,
            "file": state.location[0],
            "line": state.location[1],
            "worker": self.worker_id,
            "outcome": outcome,
            "duration_s": round(state.duration_s, 6),
            "uses": uses,
            "verdict": verdict,
            "preset": name,
            "threshold": limit,
            "threshold_source": source,
            "budget_usd": limits["budget"][0],
            "budget_source": limits["budget"][1],
            "max_latency_ms": limits["latency"][0],
            "latency_source": limits["latency"][1],
            "measurements": measurements,
            "cassette": state.cassette_info,
            "calls": totals.calls,
            "errors": totals.errors,
            "input_tokens": totals.input_tokens,
            "output_tokens": totals.output_tokens,
            "cost_usd": round(totals.cost_usd, 10),
            "unknown_price_calls": totals.unknown_price,
            "replayed_calls": totals.replayed_calls,
            "replayed_cost_usd": round(totals.replayed_cost_usd, 10),
            "latency_ms": None if totals.latency_ms is None else round(totals.latency_ms, 3),
            "total_latency_ms": round(totals.total_latency_ms, 3),
            "spans": [r.span_id for r in state.records],
            "statistical": state.statistical.to_dict() if state.statistical is not None else None,
            "violations": [v.to_dict() for v in state.violations],
            "robustness": _robustness(state),
            "security": _security(state),
            "extra": {},
        }

    # -- hooks: end of session ------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        try:
            return (yield)
        finally:  # also when -x or Ctrl-C ends the loop early
            self._session_checks(session)

    def _session_checks(self, session: pytest.Session) -> None:
        if self.is_worker or not self.active or self._checked:
            return
        from .results import session_violations

        self._checked = True
        self.decode_payloads()
        if self.current is not None and self.current.records:
            # The run stopped inside a test (Ctrl-C): its calls happened and cost money.
            self.session_records.extend(self.current.records)
            self.current.records = []
        self.session_violations = session_violations(self)
        if self.session_violations:
            session.testsfailed += 1

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            if self.active:
                import msgspec

                from cert_core import json_fallback

                workeroutput: dict[str, Any] = self.config.workeroutput  # type: ignore[attr-defined]
                errors = _instrumentation_errors() - self._errors_baseline
                body = (self.session_records, self.instrumented, errors)
                workeroutput["cert"] = msgspec.json.encode(body, enc_hook=json_fallback).decode()
            return
        if not self.active or not self._ran_tests():
            return
        from .results import write_session_evidence

        self._session_checks(session)  # a run that never reached the test loop
        if self._recorder_added:
            self.instrumentation_errors += _instrumentation_errors() - self._errors_baseline
        write_session_evidence(self, session, int(exitstatus))

    def _ran_tests(self) -> bool:
        """Whether this session ran tests (not --collect-only, --fixtures or a collection error)."""
        option = self.config.option
        if (
            option.collectonly
            or getattr(option, "showfixtures", False)
            or getattr(option, "show_fixtures_per_test", False)
        ):
            return False
        return self._ran or bool(self.session_records)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get("cert")
        if not data:
            return
        import msgspec

        from cert_core import TraceRecord

        self.active = True
        try:
            records, instrumented, errors = msgspec.json.decode(
                data, type=tuple[list[TraceRecord], list[str], int]
            )
        except msgspec.ValidationError as exc:  # never an INTERNALERROR: report it
            self.decode_errors.append(f"calls outside tests on {getattr(node, 'gateway', node)}: {exc}")
            return
        self.session_records.extend(records)
        self.instrumented = sorted(set(self.instrumented) | set(instrumented))
        self.instrumentation_errors += errors

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.is_worker or not self.active:
            return
        from .terminal import write_summary

        write_summary(self, terminalreporter)


def _repr_or_placeholder(value: Any) -> Any:
    """json_fallback, with a placeholder where a value's repr() raises: a test result must be kept."""
    from cert_core import json_fallback

    try:
        return json_fallback(value)
    except Exception:
        return f"<{type(value).__name__}: repr failed>"


def _instrumentation_errors() -> int:
    import cert_core

    return cert_core.instrumentation_stats().errors + cert_core.recording_stats().recorder_errors


def _junit_properties(result: dict[str, Any]) -> list[tuple[str, object]]:
    measured = [m["confidence"] for m in result["measurements"] if m["confidence"] is not None]
    props: list[tuple[str, object]] = []
    if measured:
        props.append(("cert.confidence", f"{min(measured):.6f}"))
    if result["threshold"] is not None:
        props.append(("cert.threshold", f"{result['threshold']:.6f}"))
    if result["verdict"] in ("passed", "failed"):
        props.append(("cert.passed", "true" if result["verdict"] == "passed" else "false"))
    props.append(("cert.cost_usd", f"{result['cost_usd']:.10f}".rstrip("0").rstrip(".") or "0"))
    props.append(("cert.input_tokens", result["input_tokens"]))
    props.append(("cert.output_tokens", result["output_tokens"]))
    props.append(("cert.calls", result["calls"]))
    if result["latency_ms"] is not None:
        props.append(("cert.latency_ms", f"{result['latency_ms']:.3f}"))
    robustness, security = result["robustness"], result["security"]
    if robustness:
        checks = [c for run in robustness["perturbations"] for c in run["checks"]]
        if checks:
            props.append(("cert.robustness.variants", len(checks)))
            failed = sum(1 for c in checks if c["verdict"] in ("failed", "error"))
            props.append(("cert.robustness.variants_failed", failed))
            drops = [c["drop"] for c in checks if c["drop"] is not None]
            if drops:
                props.append(("cert.robustness.largest_drop", f"{max(drops):.6f}"))
        if robustness["consistency"]:
            props.append(("cert.consistency.agreement", f"{robustness['consistency']['agreement']:.6f}"))
        if robustness["faults"]:
            injected = sum(len(log.get("injected") or []) for log in robustness["faults"])
            props.append(("cert.faults.injected", injected))
        uncertainty = robustness["uncertainty"]
        if uncertainty and uncertainty["max_perplexity"] is not None:
            props.append(("cert.uncertainty.max_perplexity", f"{uncertainty['max_perplexity']:.6f}"))
    if security:
        if security["probes"]:
            props.append(("cert.security.probes", sum(r["overall"]["probes"] for r in security["probes"])))
            succeeded = sum(r["overall"]["successes"] for r in security["probes"])
            props.append(("cert.security.attacks_succeeded", succeeded))
        if security["pii"]:
            props.append(("cert.pii.checked", security["pii"]["checked"]))
            props.append(("cert.pii.findings", security["pii"]["findings"]))
    return props


_OPERATIONS = ("chat", "text_completion", "embeddings", "responses")


def _finite_non_negative(number: float) -> bool:
    try:
        return 0 <= float(number) < math.inf
    except OverflowError:  # an int too large for a float
        return False


def _build_record(
    *,
    provider: str | None,
    model: str | None,
    input: Any,
    output: Any,
    input_tokens: int | None,
    output_tokens: int | None,
    cost_usd: float | None,
    latency_ms: float | None,
    operation: str,
    error: BaseException | None,
    metadata: dict[str, Any] | None,
) -> TraceRecord:
    import cert_core

    if operation not in _OPERATIONS:
        raise ValueError(
            f"cert_trace.record(): operation={operation!r}; expected one of {', '.join(_OPERATIONS)}"
        )
    for key, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= cert_core.MAX_COUNT
        ):
            raise ValueError(
                f"cert_trace.record(): {key}={value!r}; expected an integer from 0 to {cert_core.MAX_COUNT}"
            )
    for key, number in (("cost_usd", cost_usd), ("latency_ms", latency_ms)):
        if number is not None and (
            isinstance(number, bool)
            or not isinstance(number, (int, float))
            or not _finite_non_negative(number)
        ):
            raise ValueError(f"cert_trace.record(): {key}={number!r}; expected a finite number >= 0")
    if cost_usd is not None:
        cost_usd = float(cost_usd)  # an int would be written as a JSON integer of any size
    usage = None
    if input_tokens is not None or output_tokens is not None:
        usage = cert_core.Usage(input_tokens=input_tokens or 0, output_tokens=output_tokens or 0)
    price_source = price_error = None
    if cost_usd is not None:
        price_source = "given to cert_trace.record()"
    elif usage is not None:
        price = cert_core.price_call(provider, model, usage)
        cost_usd, price_source, price_error = price.cost_usd, price.source, price.error
    else:
        price_error = "no token counts given to cert_trace.record()"
    span = cert_core.start_span()
    duration = float(latency_ms or 0.0)
    end = time.time_ns()
    return cert_core.TraceRecord(
        schema=cert_core.SCHEMA,
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        start_time=cert_core.format_timestamp(end - int(duration * 1e6)),
        end_time=cert_core.format_timestamp(end),
        duration_ms=duration,
        kind="llm",
        provider=provider,
        operation=operation,  # type: ignore[arg-type]
        request_model=model,
        response_model=model,
        input=input,
        output=output,
        usage=usage,
        cost_usd=cost_usd,
        price_source=price_source,
        price_error=price_error,
        error=None
        if error is None
        else cert_core.CallError(type=type(error).__qualname__, message=str(error)),
        metadata=metadata,
        request={"source": "cert_trace.record"},
    )


class _TestHooks:
    """Per-test hooks, registered only once the session is active: an inert plugin adds none."""

    def __init__(self, cs: CertSession) -> None:
        self.cs = cs

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        return (yield from self.cs.runtest_protocol(item))

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # Not tryfirst: a skip mark skips the test before its cert marker is judged.
        self.cs.runtest_setup(item)

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        __tracebackhide__ = True
        return self.cs.pyfunc_call(pyfuncitem)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        __tracebackhide__ = True
        return (yield from self.cs.runtest_call(item))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, object, object]:
        try:
            return (yield)
        finally:
            # After the fixtures' teardown (their calls are the test's too), before the report.
            self.cs.close_cassette(item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        return (yield from self.cs.runtest_makereport(item, call))


class _ReportReceiver:
    """Takes each test's result out of its teardown report (controller, or no xdist)."""

    def __init__(self, cs: CertSession) -> None:
        self.cs = cs

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.cs.runtest_logreport(report)
