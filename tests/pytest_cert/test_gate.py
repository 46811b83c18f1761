"""The gate: marker validation, budgets, latency, unknown prices, the statistical gate."""

from __future__ import annotations

import pytest

from pytest_cert import wilson_interval
from pytest_cert.gate import CertMarkerError, RunOutcome, evaluate_runs, marker_options

PRESETS = ["general", "financial"]


# -- the statistical gate's arithmetic (reference values: statsmodels proportion_confint, wilson) --


@pytest.mark.parametrize(
    ("passed", "n", "confidence", "lower", "upper"),
    [
        (9, 10, 0.95, 0.595850, 0.982124),
        (10, 10, 0.95, 0.722467, 1.0),
        (0, 10, 0.95, 0.0, 0.277533),
        (1, 1, 0.95, 0.206549, 1.0),  # n/n: lower = n / (n + z^2)
    ],
)
def test_wilson_interval_matches_reference_values(
    passed: int, n: int, confidence: float, lower: float, upper: float
) -> None:
    lo, hi = wilson_interval(passed, n, confidence)
    assert lo == pytest.approx(lower, abs=1e-6)
    assert hi == pytest.approx(upper, abs=1e-6)


@pytest.mark.parametrize(("passed", "n", "confidence"), [(45, 50, 0.95), (8, 10, 0.90), (3, 7, 0.99)])
def test_wilson_bounds_solve_the_score_equation(passed: int, n: int, confidence: float) -> None:
    # The Wilson interval is the set of p with (p_hat - p)^2 <= z^2 p (1 - p) / n: both bounds
    # are the roots of that quadratic.
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p_hat = passed / n
    for p in wilson_interval(passed, n, confidence):
        assert (p_hat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, rel=1e-9)


def test_wilson_interval_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="between 0 and n=3"):
        wilson_interval(4, 3)


def test_evaluate_runs_leaves_not_measured_runs_out() -> None:
    runs = [RunOutcome(i, "passed") for i in range(9)] + [
        RunOutcome(9, "failed"),
        RunOutcome(10, "not_measured"),
    ]
    result = evaluate_runs(runs, min_pass_rate=0.5, confidence=0.95)
    assert (result.runs, result.n, result.passed, result.failed, result.not_measured) == (11, 10, 9, 1, 1)
    assert result.lower == pytest.approx(0.59585, abs=1e-5)
    assert result.verdict == "passed"
    assert evaluate_runs(runs, min_pass_rate=0.6, confidence=0.95).verdict == "failed"
    none = evaluate_runs([RunOutcome(0, "not_measured")], min_pass_rate=0.5, confidence=0.95)
    assert none.verdict == "not measured"
    assert none.rate is None


# -- marker validation (unit) --


def test_marker_options_merge_closest_first() -> None:
    options = marker_options([((), {"threshold": 0.9}), ((), {"threshold": 0.5, "budget_usd": 1})], PRESETS)
    assert (options.threshold, options.budget_usd) == (0.9, 1.0)
    assert options.given == {"threshold", "budget_usd"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"treshold": 0.5}, "unknown keyword(s) treshold; allowed keys: threshold, preset, budget_usd, "),
        ({"threshold": 2}, "threshold=2: expected accuracy threshold, a number in [0, 1]"),
        ({"threshold": "0.5"}, "threshold='0.5': expected accuracy threshold"),
        ({"budget_usd": -1}, "budget_usd=-1: expected the test's cost budget in USD"),
        ({"repeat": 0}, "repeat=0: expected run the test this many times"),
        ({"repeat": 5}, "repeat=5 needs min_pass_rate="),
        ({"confidence": 1.0, "repeat": 2, "min_pass_rate": 0.5}, "confidence=1.0: expected"),
        ({"preset": "medical"}, "preset='medical': unknown preset; known: financial, general"),
    ],
)
def test_marker_options_errors_name_the_value_and_allowed(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CertMarkerError) as info:
        marker_options([((), kwargs)], PRESETS)
    assert message in str(info.value)


def test_marker_errors_fail_the_test_at_setup(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.cert(treshold=0.5)
        def test_typo():
            pass

        @pytest.mark.cert(0.5)
        def test_positional():
            pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*CertMarkerError: test_marker_errors_fail_the_test_at_setup.py::test_typo: "
            "@pytest.mark.cert got unknown keyword(s) treshold; allowed keys: threshold, preset, "
            "budget_usd, max_latency_ms, max_perplexity, repeat, min_pass_rate, confidence, record_mode, "
            "cassette, replay_ignore",
            "*CertMarkerError: *::test_positional: @pytest.mark.cert takes keyword arguments only, "
            "got positional (0.5,)*",
        ]
    )


def test_marker_is_registered_with_a_description(pytester: pytest.Pytester) -> None:
    pytester.runpytest("--markers").stdout.fnmatch_lines(["@pytest.mark.cert(threshold=None, preset=None, *"])


def test_module_and_class_markers_apply_closest_wins(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        import pytest
        from conftest import CONTEXT, GOOD

        pytestmark = pytest.mark.cert(threshold=0.3, budget_usd=5)

        def test_module(cert_trace):
            cert_trace.expect(GOOD, CONTEXT)

        @pytest.mark.cert(threshold=0.4)
        class TestClass:
            def test_class(self, cert_trace):
                cert_trace.expect(GOOD, CONTEXT)

            @pytest.mark.cert(threshold=0.5)
            def test_own(self, cert_trace):
                cert_trace.expect(GOOD, CONTEXT)
        """
    )
    project.runpytest().assert_outcomes(passed=3)
    assert [evidence.test(n)["threshold"] for n in ("test_module", "test_class", "test_own")] == [
        0.3,
        0.4,
        0.5,
    ]
    assert {evidence.test(n)["budget_usd"] for n in ("test_module", "test_class", "test_own")} == {5.0}
    assert evidence.test("test_module")["uses"] == ["fixture", "marker"]


# -- budgets, latency, prices --


def test_per_test_budget_fails_the_test_with_cost_and_budget(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        import pytest
        from conftest import ask

        @pytest.mark.cert(budget_usd=0.00005)
        def test_marker_budget(client):
            ask(client); ask(client)

        def test_option_budget(client):
            ask(client)

        def test_cheap(client):
            pass
        """
    )
    result = project.runpytest("--cert-test-budget=0.00002")
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(
        ["*CertGateError: cost 0.000027 USD > budget 0.000020 USD (--cert-test-budget) over 1 call(s)"]
    )
    marker = evidence.test("test_marker_budget")
    assert marker["cost_usd"] == pytest.approx(0.000027 * 2)
    assert marker["violations"] == [
        {"kind": "budget", "message": "cost 0.000054 USD > budget 0.000050 USD (cert marker) over 2 call(s)"}
    ]


def test_session_budget_fails_the_run_with_one_line_per_violation(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        from conftest import ask

        def test_a(client):
            ask(client)

        def test_b(client):
            ask(client)
        """
    )
    result = project.runpytest("--cert-budget=0.00005")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["session - cost 0.000054 USD > session budget 0.000050 USD (--cert-budget)"])
    results = evidence.results()
    assert results["violations"] == [
        {
            "where": "session",
            "kind": "budget",
            "message": "cost 0.000054 USD > session budget 0.000050 USD (--cert-budget)",
        }
    ]
    assert results["session"]["exitstatus"] == 1
    assert project.runpytest("--cert-budget=0.01").ret == pytest.ExitCode.OK


def test_latency_bound_over_the_slowest_call(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        import pytest
        from conftest import ask

        @pytest.mark.cert(max_latency_ms=0.001)
        def test_slow(client):
            ask(client)

        @pytest.mark.cert(max_latency_ms=60000)
        def test_fast(client):
            ask(client)
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        ["*CertGateError: slowest call * ms > max_latency_ms 0.001 ms (cert marker): openai/gpt-4o-mini"]
    )
    assert evidence.test("test_slow")["violations"][0]["kind"] == "latency"


@pytest.mark.filterwarnings("default::UserWarning")  # inner in-process runs inherit our filters
def test_unknown_prices_warn_and_fail_under_strict(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        from conftest import ask

        def test_private_model(client, fake):
            fake.replies.pop("/chat/completions")
            fake.openai_chat("An answer.", model="our-private-finetune")
            ask(client, model="our-private-finetune")
        """
    )
    result = project.runpytest("--cert-test-budget=1")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*CertWarning: *::test_private_model: 1 call(s) with unknown price*"])
    result.stdout.fnmatch_lines(["*1 call(s) with unknown price (not counted)*"])
    assert evidence.test("test_private_model")["unknown_price_calls"] == 1
    result = project.runpytest("--cert-strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*CertGateError: 1 call(s) with unknown price, e.g. openai/our-private-finetune*(--cert-strict)"]
    )


# -- the statistical gate in pytest --

FLAKY = """
import itertools, pytest
from conftest import BAD, CONTEXT, GOOD

# A deterministic "model": which runs answer badly is fixed, so the Wilson bounds are known.
def answers(pattern):
    it = itertools.cycle(pattern)
    return lambda: next(it)

nine_of_ten = answers([GOOD] * 9 + [BAD])

@pytest.mark.cert(repeat=10, min_pass_rate=0.5)
def test_nine_of_ten_passes(cert_trace):
    cert_trace.expect(nine_of_ten(), CONTEXT)

seven_of_ten = answers([GOOD] * 7 + [BAD] * 3)

@pytest.mark.cert(repeat=10, min_pass_rate=0.5, confidence=0.95)
def test_seven_of_ten_fails(cert_trace):
    cert_trace.expect(seven_of_ten(), CONTEXT)

def test_repeat_method(cert_trace):
    gen = answers([GOOD] * 9 + [BAD])
    result = cert_trace.repeat(lambda: cert_trace.expect(gen(), CONTEXT), 10, min_pass_rate=0.5)
    assert (result.passed, result.failed) == (9, 1)
"""


def test_statistical_gate_uses_the_wilson_lower_bound(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(FLAKY)
    result = project.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   pytest_cert.gate.CertStatisticalError: pass rate 7/10 = 0.70, Wilson 95% interval "
            "[0.397, 0.892]; lower bound 0.397 < required 0.50",
            "*run 7: answer below the accuracy threshold: confidence 0.354 < threshold 1.000 *",
        ]
    )
    nine = evidence.test("test_nine_of_ten_passes")["statistical"]
    assert (nine["n"], nine["passed"], nine["verdict"]) == (10, 9, "passed")
    assert nine["lower"] == pytest.approx(0.59585, abs=1e-5)
    assert nine["upper"] == pytest.approx(0.982124, abs=1e-5)
    assert [o["outcome"] for o in nine["outcomes"]].count("failed") == 1
    seven = evidence.test("test_seven_of_ten_fails")
    assert seven["statistical"]["verdict"] == "failed"
    assert seven["violations"][0]["kind"] == "statistical"
    assert len(seven["measurements"]) == 10
    assert {m["run"] for m in seven["measurements"]} == set(range(10))
    assert evidence.test("test_repeat_method")["statistical"]["passed"] == 9


@pytest.mark.filterwarnings("default::UserWarning")  # inner in-process runs inherit our filters
def test_runs_that_cannot_be_measured_count_neither_way(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        import itertools, pytest
        from conftest import CONTEXT, GOOD

        # "Yes." states no checkable term: claims (the only weighted component) is not measured.
        half = itertools.cycle([GOOD, "Yes."])

        @pytest.mark.cert(repeat=4, min_pass_rate=0.3)
        def test_half_measured(cert_trace):
            cert_trace.expect(next(half), CONTEXT)

        @pytest.mark.cert(repeat=3, min_pass_rate=0.3)
        def test_never_measured(cert_trace):
            cert_trace.expect("Yes.", CONTEXT)
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=2, warnings=3)
    half = evidence.test("test_half_measured")["statistical"]
    assert (half["runs"], half["n"], half["passed"], half["not_measured"]) == (4, 2, 2, 2)
    assert half["lower"] == pytest.approx(wilson_interval(2, 2)[0])
    assert half["verdict"] == "passed"
    never = evidence.test("test_never_measured")
    assert never["statistical"]["verdict"] == "not measured"
    assert never["verdict"] == "not measured"
    result.stdout.fnmatch_lines(["*::test_never_measured: no run could be measured (3 of 3 not measured)*"])
    strict = project.runpytest("--cert-strict", "-k", "never")
    strict.assert_outcomes(failed=1)


def test_repeat_method_requires_a_pass_rate(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        def test_missing(cert_trace):
            with pytest.raises(ValueError, match="needs min_pass_rate="):
                cert_trace.repeat(lambda: None, 3)
            with pytest.raises(ValueError, match="n must be an integer >= 1"):
                cert_trace.repeat(lambda: None, 0, min_pass_rate=0.5)
        """
    )
    project.runpytest().assert_outcomes(passed=1)


def test_unreachable_statistical_settings_are_refused() -> None:
    with pytest.raises(CertMarkerError) as info:
        marker_options([((), {"repeat": 10, "min_pass_rate": 0.8})], PRESETS)
    assert str(info.value) == (
        "repeat=10 can never reach min_pass_rate=0.8 at 95% confidence: even 10/10 passed runs give a "
        "Wilson lower bound of 0.722; use repeat >= 16 or a lower min_pass_rate"
    )
    assert marker_options([((), {"repeat": 16, "min_pass_rate": 0.8})], PRESETS).repeat == 16
    with pytest.raises(CertMarkerError, match="no finite number of runs proves a rate of 1"):
        marker_options([((), {"repeat": 50, "min_pass_rate": 1.0})], PRESETS)


def test_a_failure_the_test_catches_is_not_a_violation(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        import pytest
        from pytest_cert import CertAccuracyError
        from conftest import BAD, CONTEXT

        def test_expects_the_catch(cert_trace):
            with pytest.raises(CertAccuracyError):
                cert_trace.expect(BAD, CONTEXT)
        """
    )
    project.runpytest().assert_outcomes(passed=1)
    test = evidence.test("test_expects_the_catch")
    assert test["violations"] == []
    assert test["measurements"][0]["passed"] is False
    assert evidence.results()["violations"] == []


def test_skipped_and_erroring_tests_have_no_gate_verdict(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("no database")

        @pytest.mark.skip(reason="later")
        @pytest.mark.cert(treshold=0.5)
        def test_skipped(cert_trace):
            pass

        def test_setup_error(cert_trace, broken):
            pass
        """
    )
    project.runpytest("--cert-test-budget=1").assert_outcomes(skipped=1, errors=1)
    # The skip mark wins over the (misspelt) cert marker; a skipped test never reached the gate.
    assert [t["nodeid"].split("::")[1] for t in evidence.results()["tests"]] == ["test_setup_error"]
    error = evidence.test("test_setup_error")
    assert (error["outcome"], error["verdict"]) == ("error", "no check")


def test_session_budget_is_checked_when_the_run_stops_early(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        from conftest import ask

        def test_a(client):
            ask(client)
            assert False

        def test_b(client):
            ask(client)
        """
    )
    result = project.runpytest("-x", "--cert-budget=0.00001")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["session - cost 0.000027 USD > session budget 0.000010 USD (--cert-budget)"])
    assert [v["where"] for v in evidence.results()["violations"]] == ["session"]


def test_collect_only_leaves_the_evidence_folder_alone(project: pytest.Pytester, evidence) -> None:
    project.makepyfile("def test_one(cert_trace):\n    pass\n")
    project.runpytest().assert_outcomes(passed=1)
    before = evidence.path("results.json").read_text()
    project.runpytest("--co", "--cert-budget=1")
    project.runpytest("--fixtures", "--cert-budget=1")
    assert evidence.path("results.json").read_text() == before


@pytest.mark.filterwarnings("default::UserWarning")  # inner in-process runs inherit our filters
def test_strict_unmeasured_runs_count_neither_way_then_fail(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        import itertools, pytest
        from conftest import CONTEXT, GOOD

        half = itertools.cycle([GOOD, "Yes."])

        @pytest.mark.cert(repeat=10, min_pass_rate=0.5)
        def test_half(cert_trace):
            cert_trace.expect(next(half), CONTEXT)
        """
    )
    result = project.runpytest("--cert-strict")
    result.assert_outcomes(failed=1)
    stats = evidence.test("test_half")["statistical"]
    assert (stats["passed"], stats["failed"], stats["not_measured"]) == (5, 0, 5)
    result.stdout.fnmatch_lines(
        ["*CertStatisticalError: pass rate 5/5 = 1.00*not every run could be measured*"]
    )
    assert evidence.test("test_half")["violations"][0]["kind"] == "not_measured"


def test_record_refuses_an_invalid_record(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        def test_bad_record(cert_trace):
            r = cert_trace.record(provider="openai", model="gpt-4o-mini", input_tokens=1, output_tokens=1)
            with pytest.raises(ValueError, match="the record is not valid.*span_id"):
                cert_trace.record(r.replace(span_id="x"))
        """
    )
    project.runpytest().assert_outcomes(passed=1)
