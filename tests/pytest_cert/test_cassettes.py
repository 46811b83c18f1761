"""Cassettes through the plugin: options, marker, CI, evidence, the latency gate and xdist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.pytest_cert.conftest import Evidence

# Clients whose network is a FakeLLM, or, with NO_NETWORK set, a transport that fails the test.
CONFTEST = """
import os, httpx2, openai, pytest
from cert_core.testing import FakeLLM

ANSWER = "The Eiffel Tower was completed in 1889."
CONTEXT = "The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall."

def tripwire(request):
    raise AssertionError(f"network called: {request.url}")

@pytest.fixture
def client():
    if os.environ.get("NO_NETWORK"):
        transport = httpx2.MockTransport(tripwire)
    else:
        transport = FakeLLM().openai_chat(ANSWER, prompt_tokens=100, completion_tokens=20).transport()
    return openai.OpenAI(api_key="sk-test-secret-0123456789", http_client=httpx2.Client(transport=transport))

def ask(client, question="When was it completed?"):
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
    return r.choices[0].message.content
"""

TESTS = """
import pytest
from conftest import ask, CONTEXT

def test_answer(client, cert_trace):
    cert_trace.expect(ask(client), reference=CONTEXT)

@pytest.mark.parametrize("question", ["When?", "How tall?"])
def test_params(client, question):
    assert ask(client, question)
"""


@pytest.fixture
def app(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("NO_NETWORK", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_app=TESTS)
    return pytester


def cassettes(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.json") if "cassettes" in p.parts)


def test_record_once_then_replay_offline(
    app: pytest.Pytester, evidence: Evidence, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = app.runpytest("--cert-record-mode=once")
    first.assert_outcomes(passed=3)
    first.stdout.fnmatch_lines(["cert: *cassettes once in cassettes/*"])
    names = cassettes(app.path)
    assert names[0] == "cassettes/test_app/test_answer.json"
    # Parameter ids become safe file names, with a digest when characters had to be replaced.
    assert re.fullmatch(r"cassettes/test_app/test_params\[How_tall_\]-[0-9a-f]{8}\.json", names[1])
    assert re.fullmatch(r"cassettes/test_app/test_params\[When_\]-[0-9a-f]{8}\.json", names[2])
    assert evidence.test("test_answer")["cassette"] == {
        "path": "cassettes/test_app/test_answer.json",
        "mode": "once",
        "replayed": 0,
        "recorded": 1,
    }
    monkeypatch.setenv("NO_NETWORK", "1")
    second = app.runpytest("--cert-record-mode=none")
    second.assert_outcomes(passed=3)
    second.stdout.fnmatch_lines(["*3 replayed call(s) ($0.00* recorded cost, not spent)*"])
    test = evidence.test("test_answer")
    assert test["cassette"]["replayed"] == 1
    assert test["cassette"]["recorded"] == 0
    assert (test["replayed_calls"], test["cost_usd"]) == (1, 0)
    assert test["replayed_cost_usd"] > 0
    totals = evidence.results()["totals"]
    assert (totals["replayed_calls"], totals["cost_usd"]) == (3, 0)
    traces = [json.loads(line) for line in evidence.path("traces.jsonl").read_text().splitlines()]
    assert [t.get("replayed") for t in traces] == [True, True, True]


def test_missing_recording_fails_the_test_with_the_request(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_NETWORK", "1")
    result = app.runpytest("--cert-record-mode=none", "-k", "test_answer")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *CassetteMiss: cert replay: no recording for this request in cassette "
            "*test_answer.json (record mode none from --cert-record-mode)",
            "E *request: POST https://api.openai.com/v1/chat/completions model=gpt-4o-mini body sha256:*",
            "E *the cassette holds no recordings (the file does not exist)",
        ]
    )
    result.stdout.no_fnmatch_line("*network called*")


def test_ci_lowers_the_ini_mode_to_none_but_not_the_command_line(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.makeini("[pytest]\ncert_record_mode = once\n")
    monkeypatch.setenv("CI", "true")
    result = app.runpytest("-k", "test_answer")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["cert: *cassettes none in cassettes/ (CI is set: the ini's 'once' is lowered to 'none')*"]
    )
    assert cassettes(app.path) == []
    app.runpytest("-k", "test_answer", "--cert-record-mode=once").assert_outcomes(passed=1)
    assert cassettes(app.path) == ["cassettes/test_app/test_answer.json"]
    monkeypatch.delenv("CI")
    app.runpytest("-k", "test_answer").stdout.fnmatch_lines(["cert: *cassettes once in cassettes/*"])


def test_ci_lowers_every_recording_mode_of_the_ini(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    for mode in ("once", "new_episodes", "all"):
        app.makeini(f"[pytest]\ncert_record_mode = {mode}\n")
        result = app.runpytest("-k", "test_answer")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([f"cert: *cassettes none in cassettes/ (CI is set: the ini's '{mode}'*"])
    assert cassettes(app.path) == []


def test_marker_sets_one_tests_mode_and_cassette(app: pytest.Pytester, evidence: Evidence) -> None:
    app.makepyfile(
        test_marked="""
        import pytest
        from conftest import ask

        @pytest.mark.cert(record_mode="once", cassette="shared/faq.json")
        def test_marked(client):
            assert ask(client)

        def test_live(client):
            assert ask(client)
        """
    )
    app.runpytest("test_marked.py").assert_outcomes(passed=2)
    assert cassettes(app.path) == ["cassettes/shared/faq.json"]
    assert evidence.test("test_live")["cassette"] is None


def test_marker_rejects_a_bad_mode(app: pytest.Pytester) -> None:
    app.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.cert(record_mode="sometimes")
        def test_bad():
            pass
        """
    )
    result = app.runpytest("test_bad.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*record_mode='sometimes': expected this test's cassette record mode*"])


def test_latency_gate_uses_the_recorded_latency(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.runpytest("--cert-record-mode=once", "-k", "test_answer").assert_outcomes(passed=1)
    path = app.path / "cassettes/test_app/test_answer.json"
    data = json.loads(path.read_text())
    data["interactions"][0]["recorded"]["call_ms"] = 4321.0  # as slow as the real call was
    path.write_text(json.dumps(data, indent=2))
    monkeypatch.setenv("NO_NETWORK", "1")
    result = app.runpytest("--cert-record-mode=none", "--cert-max-latency-ms=1000", "-k", "test_answer")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*4321*ms*(recorded latency of a replayed call)*"])


def test_bad_cassette_file_is_a_test_error_naming_it(app: pytest.Pytester) -> None:
    path = app.path / "cassettes/test_app/test_answer.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"format": "cert.cassette/9", "interactions": []}')
    result = app.runpytest("--cert-record-mode=none", "-k", "test_answer")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*CassetteError: test_app.py::test_answer: *test_answer.json: format: found 'cert.cassette/9'*"]
    )


def test_cassette_dir_and_ignore_fields_from_the_ini(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.makeini("[pytest]\ncert_cassette_dir = recordings\ncert_replay_ignore =\n    user\n")
    app.makepyfile(
        test_user="""
        import os
        from conftest import ask

        def test_user(client):
            r = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], user=os.environ["RUN_ID"]
            )
            assert r.choices[0].message.content
        """
    )
    monkeypatch.setenv("RUN_ID", "run-1")
    app.runpytest("--cert-record-mode=once", "test_user.py").assert_outcomes(passed=1)
    assert cassettes(app.path) == []  # not under "cassettes"
    assert (app.path / "recordings/test_user/test_user.json").exists()
    monkeypatch.setenv("RUN_ID", "run-2")
    monkeypatch.setenv("NO_NETWORK", "1")
    app.runpytest("--cert-record-mode=none", "test_user.py").assert_outcomes(passed=1)


def test_replay_under_xdist_equals_replay_in_one_process(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.runpytest("--cert-record-mode=once").assert_outcomes(passed=3)
    monkeypatch.setenv("NO_NETWORK", "1")
    single = app.runpytest_subprocess("--cert-record-mode=none", "--cert-report=single")
    single.assert_outcomes(passed=3)
    multi = app.runpytest_subprocess("-n", "2", "--cert-record-mode=none", "--cert-report=multi")
    multi.assert_outcomes(passed=3)
    totals = [json.loads((app.path / d / "results.json").read_text())["totals"] for d in ("single", "multi")]
    keys = ("calls", "replayed_calls", "replayed_cost_usd", "cost_usd", "input_tokens", "output_tokens")
    assert [{k: t[k] for k in keys} for t in totals] == [{k: totals[0][k] for k in keys}] * 2
    assert totals[0]["replayed_calls"] == 3


def test_budgets_count_replayed_calls_at_their_recorded_cost(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.runpytest("--cert-record-mode=once").assert_outcomes(passed=3)
    monkeypatch.setenv("NO_NETWORK", "1")
    per_test = app.runpytest("--cert-record-mode=none", "--cert-test-budget=0.000001", "-k", "test_answer")
    per_test.assert_outcomes(failed=1)
    per_test.stdout.fnmatch_lines(
        [
            "*cost 0.000027 USD > budget 0.000001 USD (--cert-test-budget) over 1 call(s), "
            "1 of them replayed at their recorded cost*"
        ]
    )
    session = app.runpytest("--cert-record-mode=none", "--cert-budget=0.00005")
    session.assert_outcomes(passed=3)
    assert session.ret == 1
    session.stdout.fnmatch_lines(
        ["*cost 0.000081 USD > session budget 0.000050 USD (--cert-budget), 0.000081 USD of it replayed*"]
    )


SHARED = """
import pytest
from conftest import ask

pytestmark = pytest.mark.cert(cassette="shared/faq.json")

def test_first(client):
    assert ask(client, "first?")

def test_second(client):
    assert ask(client, "second?")
"""


def test_tests_sharing_a_cassette_all_record_into_it(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.makepyfile(test_shared=SHARED)
    # Separate processes, as real runs are.
    app.runpytest_subprocess("--cert-record-mode=once", "test_shared.py").assert_outcomes(passed=2)
    data = json.loads((app.path / "cassettes/shared/faq.json").read_text())
    assert [i["request"]["body"]["messages"][0]["content"] for i in data["interactions"]] == [
        "first?",
        "second?",
    ]
    monkeypatch.setenv("NO_NETWORK", "1")
    app.runpytest_subprocess("--cert-record-mode=none", "test_shared.py").assert_outcomes(passed=2)


def test_command_line_beats_the_marker_and_ci_lowers_the_marker(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.makepyfile(
        test_marked="""
        import pytest
        from conftest import ask

        @pytest.mark.cert(record_mode="all")
        def test_marked(client):
            assert ask(client)
        """
    )
    monkeypatch.setenv("NO_NETWORK", "1")
    cli = app.runpytest("--cert-record-mode=none", "test_marked.py")
    cli.assert_outcomes(failed=1)
    cli.stdout.fnmatch_lines(["*(record mode none from --cert-record-mode)*"])
    monkeypatch.setenv("CI", "true")
    ci = app.runpytest("test_marked.py")
    ci.assert_outcomes(failed=1)
    ci.stdout.fnmatch_lines(["*(record mode none from the cert marker's 'all', lowered in CI)*"])
    assert cassettes(app.path) == []
