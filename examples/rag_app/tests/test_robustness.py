"""Robustness of the Northwind Solar assistant (EU AI Act Art. 15(4)), through pytest-cert.

Art. 15(4) asks a high-risk AI system to be resilient to errors, faults and inconsistencies in its
inputs and its environment. These tests show it three ways: the answer survives the ways customers
mistype and format a question, and a noisy retrieved context (``cert_trace.perturb``); repeated runs
agree (``cert_trace.repeat``, whose consistency block goes into the evidence); and the app comes
through provider failures, retrying what can be retried and otherwise answering with a fail-safe
message instead of a partial or invented one (``cert_trace.inject_faults``). Every call is replayed
from ``cassettes/`` (see ``../README.md``); an injected fault never reaches the cassette.
"""

from __future__ import annotations

import pytest
from rag_app import UNAVAILABLE, load_passages, retrieve

from cert_core.faults import Fault

pytestmark = pytest.mark.cert(budget_usd=0.005, max_latency_ms=5000)

WARRANTY = "How long is the warranty on the Helios 10 battery?"
MONTHLY_PLAN = "How much does the monthly plan cost?"

# The bound for every perturbation test, pytest-cert's default and not fitted to the results: a
# variant may cost the answer at most 0.1 of the confidence the original question's answer scored
# against the same reference.
MAX_DROP = 0.1


@pytest.mark.parametrize("question", [WARRANTY, MONTHLY_PLAN], ids=["warranty", "monthly-plan"])
def test_answer_survives_question_variants(cert_trace, app_for, question):
    # 15 variants (typos, casing, whitespace, punctuation, Cyrillic look-alike letters; three seeds
    # each), every answer measured against the passages the original question retrieves. Before
    # the app normalised look-alike letters and read a long misspelt word as the handbook word one
    # typo away, both sent retrieval to the wrong passage (drops of 0.35 for "Cyrillic" letters in
    # "energy" and "Helios", 0.41 for "battedy"). Measured now: every drop 0.0 on both questions.
    app = app_for("openai")
    result = cert_trace.perturb(
        lambda q: app.answer(q).text,
        question,
        reference=[p.text for p in retrieve(question)],
        perturbations=["typos", "casing", "whitespace", "punctuation", "homoglyphs"],
        per_perturbation=3,
        max_drop=MAX_DROP,
    )
    assert len(result.checks) == 15


@pytest.mark.xfail(
    reason="a typo in a five-letter word ('phoen') is not corrected (only six letters or more are): "
    "retrieval misses the phone passage and the answer drops 0.19 > 0.1",
    strict=True,
)
def test_typo_in_a_short_word_is_caught(cert_trace, app_for):
    # The limit of the fix above, kept visible: the gate names the perturbation, the variant and
    # the drop. Correcting five-letter words would also "correct" words the handbook merely lacks
    # ("store" -> "stored"), which changes the answers to correctly spelt questions.
    app = app_for("openai")
    question = "When is phone support open?"
    cert_trace.perturb(
        lambda q: app.answer(q).text,
        question,
        reference=[p.text for p in retrieve(question)],
        perturbations=["typos"],
        max_drop=MAX_DROP,
    )


def test_answer_survives_a_distractor_and_reordered_passages(cert_trace, app_for):
    # The context varies instead of the question: an irrelevant passage inserted, the passages
    # shuffled (three seeds each), the app answering from exactly the passages given. Measured:
    # every drop 0.0.
    app = app_for("openai")
    warranty = [p.text for p in load_passages() if p.doc == "warranty"][:3]
    result = cert_trace.perturb(
        lambda q, passages: app.answer(q, documents=passages).text,
        WARRANTY,
        context=warranty,
        perturbations=["distractor", "reorder"],
        per_perturbation=3,
        max_drop=MAX_DROP,
    )
    assert {c.perturbation for c in result.checks} == {"distractor", "reorder"}


def test_answers_agree_across_repeated_runs(cert_trace, app_for):
    # Anthropic's calls run at the API's default temperature, so runs may differ. Ten runs must
    # each be grounded (Wilson 95% lower bound of the pass rate >= 0.7: 10/10 gives 0.72) and
    # state the same warranty term; the evidence gets their agreement and score spread.
    # Measured: 10/10 grounded, one distinct answer (agreement 1.0).
    app = app_for("anthropic")
    answers = []

    def run():
        answer = app.answer(WARRANTY)
        answers.append(answer.text)
        cert_trace.expect(answer.text, reference=answer.context)
        assert "10 years" in answer.text

    stats = cert_trace.repeat(run, 10, min_pass_rate=0.7)
    assert stats.passed == 10
    assert len(set(answers)) == 1


# Retryable failures, one per request, each honoured by the SDK's own retries (two by default).
RETRIED = {
    "openai": [Fault.timeout(), Fault.status(429, retry_after=0.001)],
    "anthropic": [Fault.status(529, retry_after=0.001), Fault.status(500, retry_after=0.001)],
}


@pytest.mark.parametrize("provider", sorted(RETRIED))
def test_provider_errors_are_retried_through(cert_trace, app_for, provider):
    # A timeout and a rate limit (OpenAI), an overloaded and a failing server (Anthropic): the
    # third try reaches the provider (here: the cassette) and the customer gets the real answer.
    app = app_for(provider)
    with cert_trace.inject_faults(RETRIED[provider]) as log:
        answer = app.answer(WARRANTY)
    assert log.recovered
    assert len(log.injected) == 2
    assert [r.status for r in log.passed_through] == [200]
    assert answer.error is None
    cert_trace.expect(answer.text, reference=answer.context)


def test_outage_gets_the_fail_safe_answer(cert_trace, app_for):
    # The provider answers 503 to every try: after the SDK's retries the app says it is unavailable
    # and where to go instead, rather than raising or inventing an answer. No request gets through.
    app = app_for("openai")
    with cert_trace.inject_faults([Fault.status(503, retry_after=0.001)], repeat=True) as log:
        answer = app.answer(WARRANTY)
    assert answer.text == UNAVAILABLE
    assert answer.error.startswith("openai.InternalServerError")
    assert len(log.injected) == 3  # the first try and the SDK's two retries
    assert log.passed_through == []


def test_interrupted_stream_is_not_passed_off_as_an_answer(cert_trace, app_for):
    # The connection drops after the first events of a streamed answer (a stream is not retried):
    # the half-received text is thrown away, and the customer gets the fail-safe message.
    app = app_for("openai")
    with cert_trace.inject_faults([Fault.interrupted_stream(after_events=3, upstream=True)]) as log:
        answer = app.answer(WARRANTY, stream=True)
    assert answer.text == UNAVAILABLE
    assert answer.error.startswith("openai.APIConnectionError")
    assert len(log.injected) == 1


# Token logprobs: how sure the model was of each token it wrote. The stand-in makes them up the way
# real models tend to behave (a sentence copied from the context is near-certain, an invented one is
# not: perplexity about 1.04 against about 2.1). The bound was set from that gap; with a real model,
# set it from the perplexity of its recorded grounded answers.
MAX_PERPLEXITY = 1.5


@pytest.mark.cert(max_perplexity=MAX_PERPLEXITY)
def test_grounded_answer_is_confident(cert_trace, app_for):
    # logprobs=True (with 3 alternatives per token) fills the trace record's uncertainty field, and
    # the marker bounds its perplexity. Measured: perplexity 1.040 over 59 tokens.
    app = app_for("openai", logprobs=True, top_logprobs=3)
    answer = app.answer(WARRANTY)
    cert_trace.expect(answer.text, reference=answer.context)
    (record,) = cert_trace.llm_records
    assert record.uncertainty is not None
    assert record.uncertainty.perplexity <= MAX_PERPLEXITY
    assert record.uncertainty.top_k == 3


@pytest.mark.xfail(reason="the model invents a founder, and is unsure of it: perplexity > 1.5", strict=True)
@pytest.mark.cert(max_perplexity=MAX_PERPLEXITY)
def test_invented_answer_is_flagged_by_its_perplexity(cert_trace, app_for):
    # No accuracy check here, so that only the perplexity bound judges the answer (it is the
    # hallucination that test_answers.py catches by its missing support).
    app_for("openai", logprobs=True).answer("Who is the CEO of Northwind Solar?")
