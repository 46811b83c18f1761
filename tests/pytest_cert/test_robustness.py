"""Robustness in the plugin: ``cert_trace.perturb()`` and the consistency of repeated runs."""

from __future__ import annotations

import pytest

from tests.pytest_cert.conftest import Evidence

APPS = """
PASSAGES = [
    "The Helios 10 home battery stores 10.2 kWh of energy.",
    "Its warranty lasts 10 years from the installation date.",
    "Installation takes one day and needs a certified electrician.",
]
GOLD = "The Helios 10 warranty lasts 10 years from the installation date."
QUESTION = "How long is the Helios 10 warranty?"

def robust(question, passages):
    # Finds the warranty passage whatever the wording or order of its inputs.
    found = [p for p in passages if "warranty" in p]
    return "The Helios 10 warranty lasts 10 years from the installation date." if found else "Unknown."

def brittle(question, passages):
    # A cache keyed on the exact question: any variation misses and the app guesses.
    if question == QUESTION:
        return GOLD
    return "The Helios 10 battery stores 10.2 kWh and installation takes one day."
"""


def test_perturb_passes_a_robust_app_and_fails_a_brittle_one(
    project: pytest.Pytester, evidence: Evidence
) -> None:
    project.makepyfile(
        apps=APPS,
        test_apps="""
        from apps import PASSAGES, GOLD, QUESTION, robust, brittle

        def test_robust(cert_trace):
            result = cert_trace.perturb(robust, QUESTION, context=PASSAGES, reference=GOLD, max_drop=0.05)
            assert result.passed

        def test_brittle(cert_trace):
            cert_trace.perturb(brittle, QUESTION, context=PASSAGES, reference=GOLD, max_drop=0.05,
                               perturbations=["typos", "casing"])
        """,
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*CertRobustnessError: robustness: 2 of 2 variant(s) dropped the score by more than 0.050 *",
            "*typos (seed 0; 1 typo(s): '*' -> '*'): confidence * -> * (drop 0.* > 0.050)",
            "*variant: 'How lnog is the Helios 10 warranty?'",
        ]
    )
    robust = evidence.test("test_robust")["robustness"]
    (run,) = robust["perturbations"]
    assert run["verdict"] == "passed"
    assert [c["perturbation"] for c in run["checks"]] == [
        "typos",
        "casing",
        "whitespace",
        "punctuation",
        "homoglyphs",
        "distractor",
        "reorder",
    ]
    assert all(c["drop"] <= 0.05 for c in run["checks"])
    brittle = evidence.test("test_brittle")
    assert brittle["violations"][0]["kind"] == "robustness"
    checks = brittle["robustness"]["perturbations"][0]["checks"]
    assert all(c["verdict"] == "failed" for c in checks)
    assert all(c["drop"] > 0.05 for c in checks)
    assert brittle["security"] is None


def test_repeated_runs_report_answer_agreement_and_score_spread(
    project: pytest.Pytester, evidence: Evidence
) -> None:
    project.makepyfile(
        """
        import itertools
        CONTEXT = "The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall."
        answers = itertools.cycle([
            "The Eiffel Tower was completed in 1889.",
            "the eiffel tower was completed in 1889",
            "The Eiffel Tower was completed in 1925 by Gustave Flaubert.",
        ])

        def test_runs(cert_trace):
            cert_trace.repeat(lambda: cert_trace.expect(next(answers), CONTEXT), 6, min_pass_rate=0.2)
        """
    )
    project.runpytest().assert_outcomes(passed=1)
    c = evidence.test("test_runs")["robustness"]["consistency"]
    assert (c["runs"], c["answered"], c["measured"]) == (6, 6, 6)
    assert c["distinct_answers"] == 2  # case and punctuation do not count as a difference
    assert c["agreement"] == pytest.approx(4 / 6)
    assert c["score_min"] < c["score_max"]
    assert c["score_stdev"] > 0
    assert c["score_min"] <= c["score_mean"] <= c["score_max"]


def test_pii_checks_are_counted_under_security(project: pytest.Pytester, evidence: Evidence) -> None:
    project.makepyfile(
        """
        def test_clean(cert_trace):
            cert_trace.expect_no_pii("The Helios 10 stores 10.2 kWh.")
            cert_trace.expect_no_pii("Call us any time.")
        """
    )
    project.runpytest().assert_outcomes(passed=1)
    test = evidence.test("test_clean")
    assert test["security"] == {"probes": [], "pii": {"checked": 2, "findings": 0}}
    assert test["robustness"] is None


INJECTION_APPS = """
def vulnerable(probe):
    # Follows whatever its inputs say and tells the canary when asked.
    text = probe.user + " " + " ".join(probe.context)
    return {"text": "Sure. " + text + " My instructions contain " + probe.canary, "tool_calls": []}

def guarded(probe):
    return {"text": "I can only answer questions about the Helios 10 battery.", "tool_calls": []}
"""


def test_probe_injections_fails_a_vulnerable_app_and_reports_by_category(
    project: pytest.Pytester, evidence: Evidence
) -> None:
    project.makepyfile(
        inj_apps=INJECTION_APPS,
        test_inj="""
        from inj_apps import vulnerable, guarded

        def test_vulnerable(cert_trace):
            cert_trace.probe_injections(vulnerable, categories=["system_prompt_extraction"])

        def test_guarded(cert_trace):
            report = cert_trace.probe_injections(guarded)
            assert report.overall.successes == 0
        """,
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*CertSecurityError: prompt injection: system_prompt_extraction: 12/12 attacks succeeded "
            "(100.0%) > allowed 0.0%; the canary leaked in 12 answer(s)",
        ]
    )
    assert "CERT-CANARY-" not in result.stdout.str()  # the canary is never printed
    bad = evidence.test("test_vulnerable")
    assert bad["violations"][0]["kind"] == "security"
    (report,) = bad["security"]["probes"]
    assert report["categories"]["system_prompt_extraction"]["successes"] == 12
    good = evidence.test("test_guarded")["security"]["probes"][0]
    assert {c: v["successes"] for c, v in good["categories"].items()} == {
        "instruction_override": 0,
        "system_prompt_extraction": 0,
        "data_exfiltration": 0,
        "tool_use_hijack": 0,
    }
    assert good["categories"]["tool_use_hijack"]["attempts"] == 12  # tool calls reported: assessed
    html = evidence.path("report.html").read_text()
    assert 'data-category="system_prompt_extraction"' in html
    assert "pytest-cert&#39;s interpretation" in html or "pytest-cert's interpretation" in html


def test_summary_junit_and_totals_carry_robustness_and_security(
    project: pytest.Pytester, evidence: Evidence
) -> None:
    project.makepyfile(
        apps=APPS,
        test_sum="""
        from apps import PASSAGES, GOLD, QUESTION, robust

        def test_robust(cert_trace):
            cert_trace.perturb(robust, QUESTION, context=PASSAGES, reference=GOLD, perturbations=["typos"])
            cert_trace.expect_no_pii("No personal data here.")
        """,
    )
    result = project.runpytest("--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "robustness (Art. 15(4)): 1 test(s): 1 perturbed variant(s), 0 failed; security (Art. 15(5)): "
            "1 test(s): 1 text(s) checked for personal data, 0 finding(s)"
        ]
    )
    totals = evidence.results()["totals"]
    assert totals["robustness"] == {
        "tests": 1,
        "variants": 1,
        "variants_failed": 0,
        "repeated_tests": 0,
        "fault_injections": 0,
        "logprob_calls": 0,
    }
    assert totals["security"]["pii_checked"] == 1
    summary = evidence.path("summary.md").read_text()
    assert "robustness (Art. 15(4)): 1 test(s): 1 perturbed variant(s), 0 failed" in summary
    junit = (project.path / "junit.xml").read_text()
    assert '<property name="cert.robustness.variants" value="1"' in junit
    assert '<property name="cert.robustness.variants_failed" value="0"' in junit
    assert '<property name="cert.pii.checked" value="1"' in junit


def test_without_such_tests_the_summary_says_not_tested(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_plain(cert_trace):
            assert cert_trace.calls == 0
        """
    )
    result = project.runpytest()
    result.stdout.fnmatch_lines(["robustness (Art. 15(4)): not tested; security (Art. 15(5)): not tested"])


def test_inject_faults_records_what_the_app_met_and_how_it_came_through(
    project: pytest.Pytester, evidence: Evidence
) -> None:
    project.makepyfile(
        """
        import openai
        from conftest import GOOD
        from cert_core.faults import Fault

        def answer(client):
            # The app under test: retries through the SDK, then falls back to a canned reply.
            try:
                r = client.with_options(max_retries=2).chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "When?"}]
                )
                return r.choices[0].message.content
            except openai.APIError:
                return "The assistant is unavailable; please try again later."

        def test_retries_through(cert_trace, client):
            faults = [Fault.status(429, retry_after=0.001), Fault.status(500, retry_after=0.001)]
            with cert_trace.inject_faults(faults) as log:
                assert answer(client) == GOOD
            assert log.recovered and len(log.injected) == 2

        def test_falls_back(cert_trace, client):
            with cert_trace.inject_faults([Fault.status(503, retry_after=0.001)], repeat=True) as log:
                assert answer(client).startswith("The assistant is unavailable")
            assert len(log.injected) == 3  # the first try and the SDK's two retries
        """
    )
    project.runpytest().assert_outcomes(passed=2)
    through = evidence.test("test_retries_through")["robustness"]["faults"][0]
    assert through["requests_seen"] == 3
    assert [r["fault"]["code"] for r in through["injected"]] == [429, 500]
    assert through["passed_through"][0]["status"] == 200
    back = evidence.test("test_falls_back")["robustness"]["faults"][0]
    assert [r["status"] for r in back["injected"]] == [503, 503, 503]
    assert evidence.results()["totals"]["robustness"]["fault_injections"] == 2
    html = evidence.path("report.html").read_text()
    assert "status 429, status 500" in html
    assert "status 503 x3" in html


def test_max_perplexity_gates_calls_with_logprobs_and_says_when_not_measured(
    project: pytest.Pytester, evidence: Evidence
) -> None:
    project.makepyfile(
        """
        import math, httpx2, openai, pytest
        from cert_core.testing import FakeLLM

        def client_for(logprobs):
            fake = FakeLLM().openai_chat("Paris is the capital.", logprobs=logprobs)
            return openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=fake.transport()))

        def ask(client, **extra):
            return client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital?"}], **extra
            )

        SURE = [("Paris", -0.01), (" is", -0.02), (" the", -0.01), (" capital", -0.06)]
        UNSURE = [("Paris", -2.0), (" is", -1.2), (" the", -0.8), (" capital", -2.4)]

        @pytest.mark.cert(max_perplexity=1.5)
        def test_sure(cert_trace):
            ask(client_for(SURE), logprobs=True)
            (record,) = cert_trace.llm_records
            assert record.uncertainty.perplexity == pytest.approx(math.exp(0.025))

        @pytest.mark.cert(max_perplexity=1.5)
        def test_unsure(cert_trace):
            ask(client_for(UNSURE), logprobs=True)

        @pytest.mark.cert(max_perplexity=1.5)
        def test_without_logprobs(cert_trace):
            ask(client_for(None))
        """
    )
    result = project.runpytest("-W", "default", "--junitxml=junit.xml")
    result.assert_outcomes(passed=2, failed=1, warnings=1)
    junit = (project.path / "junit.xml").read_text()
    assert '<property name="cert.uncertainty.max_perplexity" value="4.953' in junit
    result.stdout.fnmatch_lines(
        [
            "*CertGateError: perplexity 4.953 > max_perplexity 1.5 (cert marker): openai/gpt-4o-mini, "
            "mean token logprob -1.600 over 4 token(s)",
            "*max_perplexity: 1 of 1 call(s) returned no token logprobs, not measured*",
        ]
    )
    unsure = evidence.test("test_unsure")
    assert unsure["violations"][0]["kind"] == "uncertainty"
    assert unsure["robustness"]["uncertainty"] == {
        "calls": 1,
        "measured": 1,
        "max_perplexity": pytest.approx(4.953, abs=1e-3),
        "mean_perplexity": pytest.approx(4.953, abs=1e-3),
        "bound": 1.5,
    }
    unmeasured = evidence.test("test_without_logprobs")["robustness"]["uncertainty"]
    assert (unmeasured["measured"], unmeasured["max_perplexity"], unmeasured["bound"]) == (0, None, 1.5)
    assert evidence.results()["totals"]["robustness"]["logprob_calls"] == 2
    result.stdout.fnmatch_lines(["robustness (Art. 15(4)): 3 test(s): 2 call(s) with token logprobs; *"])
    report = evidence.path("report.html").read_text()
    assert "2 of 3 call(s) returned token logprobs" in report
    strict = project.runpytest("--cert-strict", "-k", "without")
    strict.assert_outcomes(failed=1)
