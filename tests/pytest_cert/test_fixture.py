"""The cert_trace fixture: collection of calls (sync, threads, asyncio, anyio), expect(), record()."""

from __future__ import annotations

import pytest


def test_fixture_collects_sync_calls_with_cost_tokens_and_latency(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        from conftest import CONTEXT, ask

        def test_sync(cert_trace, client, claude):
            answer = ask(client)
            claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=50,
                                   messages=[{"role": "user", "content": "When?"}])
            assert cert_trace.calls == 2
            assert cert_trace.input_tokens >= 100 and cert_trace.output_tokens >= 20
            assert cert_trace.tokens == cert_trace.input_tokens + cert_trace.output_tokens
            assert cert_trace.cost_usd > 0
            assert cert_trace.latency_ms == max(r.duration_ms for r in cert_trace.llm_records)
            assert {r.provider for r in cert_trace.records} == {"openai", "anthropic"}
            assert all(r.test_id.endswith("::test_sync") for r in cert_trace.records)
            m = cert_trace.expect(answer, CONTEXT)
            assert m.passed and m.confidence >= m.threshold
        """
    )
    project.runpytest().assert_outcomes(passed=1)
    test = evidence.test("test_sync")
    assert test["calls"] == 2
    assert test["uses"] == ["fixture"]
    assert test["verdict"] == "passed"
    assert test["measurements"][0]["answer"] == "The Eiffel Tower was completed in 1889."


def test_fixture_sees_calls_from_threads_and_asyncio_tasks(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        import asyncio, threading
        from concurrent.futures import ThreadPoolExecutor
        from conftest import ask

        def test_threads(cert_trace, client):
            threads = [threading.Thread(target=ask, args=(client,)) for _ in range(3)]
            for t in threads: t.start()
            for t in threads: t.join()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda _: ask(client), range(2)))
            assert cert_trace.calls == 5

        def test_asyncio(cert_trace, aclient):
            async def one():
                return await aclient.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "When?"}])
            async def main():
                await asyncio.gather(*(asyncio.create_task(one()) for _ in range(4)))
            asyncio.run(main())
            assert cert_trace.calls == 4
        """
    )
    project.runpytest().assert_outcomes(passed=2)
    assert evidence.test("test_threads")["calls"] == 5
    assert evidence.test("test_asyncio")["calls"] == 4


def test_fixture_in_async_tests_under_anyio(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        import pytest
        from conftest import CONTEXT

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_async(cert_trace, aclient):
            r = await aclient.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "When?"}])
            cert_trace.expect(r.choices[0].message.content, CONTEXT)
            assert cert_trace.calls == 1
        """
    )
    project.runpytest().assert_outcomes(passed=1)
    assert evidence.test("test_async")["calls"] == 1


def test_accuracy_failure_message_shows_components_terms_and_threshold_source(
    project: pytest.Pytester, evidence
) -> None:
    project.makepyfile(
        """
        import pytest
        from conftest import BAD, CONTEXT

        @pytest.mark.cert(threshold=0.8)
        def test_marker(cert_trace):
            cert_trace.expect(BAD, CONTEXT)

        def test_option(cert_trace):
            cert_trace.expect(BAD, CONTEXT)

        def test_argument(cert_trace):
            cert_trace.expect(BAD, [CONTEXT, "A second retrieved passage."], threshold=0.75)
        """
    )
    result = project.runpytest("--cert-threshold=0.7")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "E       pytest_cert.gate.CertAccuracyError: answer below the accuracy threshold: "
            "confidence 0.354 < threshold 0.800 (threshold from the cert marker)",
            "E         semantic     not measured: not weighted by preset 'general', so not computed *",
            "E         grounding    0.500  not weighted by the preset",
            "E         claims       0.354  weight 1.00",
            "E         entailment   not measured: no NLI model configured",
            "E         unsupported terms: '1925', 'Gustave Flaubert'",
            "E         preset: general; threshold 0.800 from the cert marker",
            "E         answer: 'The Eiffel Tower was completed in 1925 by Gustave Flaubert.'",
        ]
    )
    result.stdout.fnmatch_lines(["*confidence 0.354 < threshold 0.700 (threshold from --cert-threshold)"])
    result.stdout.fnmatch_lines(
        ["*confidence 0.354 < threshold 0.750 (threshold from the expect() argument)"]
    )
    marker = evidence.test("test_marker")
    assert marker["verdict"] == "failed"
    assert marker["outcome"] == "failed"
    assert marker["violations"][0]["kind"] == "accuracy"
    assert marker["measurements"][0]["unsupported_terms"] == ["1925", "Gustave Flaubert"]


def test_threshold_falls_back_to_ini_then_preset(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        import pytest
        from conftest import CONTEXT, GOOD

        def test_default(cert_trace):
            cert_trace.expect(GOOD, CONTEXT)

        @pytest.mark.cert(preset="healthcare")
        def test_preset(cert_trace):
            cert_trace.expect(GOOD, CONTEXT)
        """
    )
    project.runpytest().assert_outcomes(passed=2)
    assert evidence.test("test_default")["threshold_source"] == "preset general"
    preset = evidence.test("test_preset")
    assert (preset["preset"], preset["threshold_source"]) == ("healthcare", "preset healthcare")
    project.makeini("[pytest]\ncert_threshold = 0.6\n")
    project.runpytest().assert_outcomes(passed=2)
    assert evidence.test("test_default")["threshold_source"] == "ini cert_threshold"


def test_evaluation_lands_on_the_record_that_produced_the_answer(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        from conftest import CONTEXT, ask
        import json

        def test_one(cert_trace, client, claude, fake):
            fake.replies.pop("/v1/messages")
            fake.anthropic("Something unrelated.")
            answer = ask(client)
            claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=5,
                                   messages=[{"role": "user", "content": "unrelated"}])
            cert_trace.expect(answer, CONTEXT)
        """
    )
    project.runpytest().assert_outcomes(passed=1)
    import json

    lines = [json.loads(x) for x in evidence.path("traces.jsonl").read_text().splitlines()]
    evaluated = [r for r in lines if r.get("evaluation")]
    assert [r["provider"] for r in evaluated] == ["openai"]
    assert evaluated[0]["reference"].startswith("The Eiffel Tower is in Paris.")
    assert evaluated[0]["evaluation"]["passed"] is True


def test_record_adds_calls_made_by_other_means(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        import pytest

        def test_manual(cert_trace):
            r = cert_trace.record(provider="openai", model="gpt-4o-mini", input="q", output="a",
                                  input_tokens=1000, output_tokens=100, latency_ms=250)
            assert r.cost_usd == pytest.approx(0.00021)
            cert_trace.record(provider="in-house", model="llama-local", input_tokens=5, output_tokens=5,
                              cost_usd=0.5, latency_ms=10)
            assert cert_trace.calls == 2
            assert cert_trace.cost_usd == pytest.approx(0.50021)
            assert cert_trace.latency_ms == 250

        def test_bad_values(cert_trace):
            with pytest.raises(ValueError, match="input_tokens=-1; expected an integer from 0 to 92233"):
                cert_trace.record(provider="x", model="y", input_tokens=-1)
            with pytest.raises(ValueError, match="output_tokens=18446744073709551616; expected an integer"):
                cert_trace.record(provider="x", model="y", output_tokens=2**64)
            with pytest.raises(ValueError, match="cost_usd=nan; expected a finite number >= 0"):
                cert_trace.record(provider="x", model="y", cost_usd=float("nan"))
            with pytest.raises(ValueError, match="latency_ms=1000000000.*; expected a finite number >= 0"):
                cert_trace.record(provider="x", model="y", latency_ms=10**400)
            with pytest.raises(ValueError, match="operation='chatty'"):
                cert_trace.record(provider="x", model="y", operation="chatty")
            with pytest.raises(TypeError, match="takes a TraceRecord"):
                cert_trace.record({"model": "x"})
        """
    )
    project.runpytest().assert_outcomes(passed=2)
    test = evidence.test("test_manual")
    assert test["calls"] == 2
    assert test["input_tokens"] == 1005
    assert test["latency_ms"] == 250


def test_records_json_cannot_carry_leave_the_result_and_say_what_was_lost(
    project: pytest.Pytester, evidence
) -> None:
    project.makepyfile(
        """
        from cert_core import trace

        class Unreprable:
            def __repr__(self):
                raise RuntimeError("no repr")

        looped = {}
        looped["itself"] = looped

        @trace(metadata={"value": Unreprable()})
        def unreprable():
            return "a"

        @trace(metadata={"value": looped})
        def recursive():
            return "b"

        def test_unreprable(cert_trace):
            assert unreprable() == "a"

        def test_recursive(cert_trace):
            assert recursive() == "b"
        """
    )
    project.runpytest().assert_outcomes(passed=2)
    unreprable = evidence.test("test_unreprable")
    assert unreprable["outcome"] == "passed"
    assert unreprable["extra"]["records_error"] == "1 record(s) not kept: RuntimeError: no repr"
    assert evidence.test("test_recursive")["extra"]["records_error"].startswith(
        "1 record(s) not kept: RecursionError:"
    )


def test_a_result_hook_adding_an_unreprable_value_keeps_the_result(
    project: pytest.Pytester, evidence
) -> None:
    project.makeconftest(
        (project.path / "conftest.py").read_text()
        + """
class Unreprable:
    def __repr__(self):
        raise RuntimeError("no repr")

def pytest_cert_test_result(item, result):
    result["extra"]["owner"] = Unreprable()
"""
    )
    project.makepyfile(
        """
        def test_one(cert_trace):
            cert_trace.record(provider="openai", model="gpt-4o-mini", input_tokens=1, output_tokens=1)
        """
    )
    project.runpytest().assert_outcomes(passed=1)
    test = evidence.test("test_one")
    assert test["outcome"] == "passed"
    assert test["extra"]["owner"] == "<Unreprable: repr failed>"
    assert test["extra"]["records_error"] == "1 record(s) not kept: RuntimeError: no repr"


def test_expect_rejects_non_text_with_a_hint(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        def test_types(cert_trace, client):
            r = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
            with pytest.raises(TypeError, match=r"response.choices\\[0\\].message.content"):
                cert_trace.expect(r, "context")
            with pytest.raises(TypeError, match="a non-empty list of strings"):
                cert_trace.expect("answer", [])
            with pytest.raises(ValueError, match="answer is empty"):
                cert_trace.expect("  ", "context")
        """
    )
    project.runpytest().assert_outcomes(passed=1)


@pytest.mark.filterwarnings("default::UserWarning")  # inner in-process runs inherit our filters
def test_not_measured_warns_and_strict_fails(project: pytest.Pytester, evidence) -> None:
    project.makeconftest(
        (project.path / "conftest.py").read_text()
        + """
class Judge:
    name, weight = "judge", 1.0
    def score(self, answer, reference):
        return None

def pytest_cert_components(config):
    return [Judge()]
"""
    )
    project.makepyfile(
        """
        from conftest import CONTEXT, GOOD

        def test_one(cert_trace):
            m = cert_trace.expect(GOOD, CONTEXT)
            assert m.not_measured["judge"] == "the scorer returned no score"
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*CertWarning: test_*.py::test_one: not measured (judge: the scorer returned no score)*"]
    )
    result = project.runpytest("--cert-strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E         judge        not measured: the scorer returned no score"])
    assert evidence.test("test_one")["violations"][0]["kind"] == "not_measured"


def test_tests_without_cert_features_are_untouched(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        def test_plain():
            assert True

        def test_uses(cert_trace):
            assert cert_trace.calls == 0
        """
    )
    project.runpytest("--junitxml=j.xml").assert_outcomes(passed=2)
    nodeids = [t["nodeid"] for t in evidence.results()["tests"]]
    assert nodeids == ["test_tests_without_cert_features_are_untouched.py::test_uses"]
    xml = (project.path / "j.xml").read_text()
    assert xml.count("cert.calls") == 1


def test_fixture_requested_dynamically_still_activates(project: pytest.Pytester, evidence) -> None:
    project.makepyfile(
        """
        from conftest import ask

        def test_dynamic(request, client):
            cert_trace = request.getfixturevalue("cert_trace")
            ask(client)
            assert cert_trace.calls == 1
        """
    )
    project.runpytest().assert_outcomes(passed=1)
    assert evidence.test("test_dynamic")["calls"] == 1
