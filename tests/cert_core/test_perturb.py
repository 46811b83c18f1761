"""Input perturbations: deterministic for a seed, changing the text only as documented."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cert_core.perturb import (
    DISTRACTORS,
    HOMOGLYPHS,
    PERTURBATIONS,
    TEXT_PERTURBATIONS,
    perturb_context,
    perturb_text,
    run_perturbations,
    variants,
)

QUESTION = "What does the Northwind Solar warranty cover for the inverter, and for how many years?"
PASSAGES = (
    "Panels carry a 25-year warranty.",
    "Inverters are covered for 10 years.",
    "Damage is not covered.",
)
BACK = {v: k for k, v in HOMOGLYPHS.items()}

sentences = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ", min_size=4, max_size=10), min_size=2, max_size=12
).map(lambda words: " ".join(words) + "?")


@pytest.mark.parametrize("kind", PERTURBATIONS)
def test_the_same_seed_gives_the_same_variant_and_another_seed_usually_another(kind: str) -> None:
    first = variants(QUESTION, PASSAGES, [kind], seed=7, per_perturbation=5)
    again = variants(QUESTION, PASSAGES, [kind], seed=7, per_perturbation=5)
    assert first == again
    assert len({(v.question, v.context) for v in first}) >= 2  # the seeds do not all coincide
    for v in first:
        assert (v.question, v.context) != (QUESTION, PASSAGES)  # every variant changes something
        assert v.perturbation == kind
        assert v.description


@given(sentences, st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_each_text_perturbation_keeps_what_it_documents(text: str, seed: int) -> None:
    lower, _ = perturb_text(text, "casing", seed=seed)
    assert lower.lower() == text.lower()
    assert lower != text
    spaced, _ = perturb_text(text, "whitespace", seed=seed)
    assert spaced.split() == text.split()
    assert spaced != text
    marked, _ = perturb_text(text, "punctuation", seed=seed)
    assert re.sub(r"[^\w\s]", "", marked).split() == re.sub(r"[^\w\s]", "", text).split()
    assert marked != text
    if any(ch in HOMOGLYPHS for ch in text):
        glyphs, _ = perturb_text(text, "homoglyphs", seed=seed)
        assert "".join(BACK.get(ch, ch) for ch in glyphs) == text
        assert glyphs != text
        assert len(glyphs) == len(text)
    typed, _ = perturb_text(text, "typos", seed=seed)
    old, new = text.split(), typed.split()
    assert len(new) == len(old)
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert 1 <= len(changed) <= max(1, round(len(old) * 0.15))
    for a, b in changed:  # one slip per word: a swap, a drop, a double or a neighbour key
        assert abs(len(a) - len(b)) <= 1


def test_typos_leave_numbers_alone_and_say_what_changed() -> None:
    text = "Refund 2499 dollars within 30 days for order 88812?"
    for seed in range(30):
        typed, what = perturb_text(text, "typos", seed=seed)
        assert re.findall(r"\d+", typed) == ["2499", "30", "88812"]
        before, after = re.match(r"1 typo\(s\): '(\w+)' -> '(\w+)'", what).groups()  # type: ignore[union-attr]
        assert before in text.split()
        assert after in typed.split()


def test_homoglyphs_are_other_code_points_that_look_the_same() -> None:
    glyphs, what = perturb_text("Open the PDF manual", "homoglyphs", seed=1, rate=1.0)
    assert glyphs != "Open the PDF manual"
    assert all(ord(ch) > 127 for ch in glyphs if ch in BACK)
    assert what.startswith(f"{sum(ch in BACK for ch in glyphs)} letter(s)")


def test_distractor_adds_one_passage_and_keeps_the_others_in_order() -> None:
    for seed in range(20):
        out, what = perturb_context(PASSAGES, "distractor", seed=seed)
        assert len(out) == len(PASSAGES) + 1
        extra = [p for p in out if p not in PASSAGES]
        assert len(extra) == 1
        assert extra[0] in DISTRACTORS
        assert [p for p in out if p in PASSAGES] == list(PASSAGES)
        assert extra[0] in what


def test_reorder_never_returns_the_original_order() -> None:
    for seed in range(50):
        out, _ = perturb_context(PASSAGES, "reorder", seed=seed)
        assert sorted(out) == sorted(PASSAGES)
        assert out != PASSAGES
    with pytest.raises(ValueError, match="two different passages"):
        perturb_context(("only one",), "reorder")


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="expected one of typos"):
        perturb_text(QUESTION, "leetspeak")
    with pytest.raises(ValueError, match="unknown perturbation"):
        variants(QUESTION, (), ["typo"])
    with pytest.raises(ValueError, match="no word of four letters"):
        perturb_text("a b 12345", "typos")
    with pytest.raises(TypeError, match="sequence of str"):
        perturb_context("one string", "reorder")
    with pytest.raises(ValueError, match="rate must be"):
        perturb_text(QUESTION, "typos", rate=0)


def _scorer(expected: str):
    """Confidence 1.0 when the answer states the expected fact, 0.2 otherwise."""
    return lambda answer: 1.0 if expected in answer else 0.2


def test_a_brittle_app_fails_and_a_robust_app_passes() -> None:
    def robust(question: str, passages: list[str]) -> str:
        q = "".join(BACK.get(ch, ch) for ch in question).lower()
        return "Inverters are covered for 10 years." if "invert" in q or "nvert" in q else "I do not know."

    def brittle(question: str, passages: list[str]) -> str:
        # Exact-match lookup: any change in the wording, or a passage out of place, breaks it.
        if question == QUESTION and passages[1] == PASSAGES[1]:
            return "Inverters are covered for 10 years."
        return "I do not know."

    ok = run_perturbations(robust, QUESTION, measure=_scorer("10 years"), context=PASSAGES, max_drop=0.1)
    assert ok.passed
    assert ok.baseline == 1.0
    assert [c.perturbation for c in ok.checks] == [*TEXT_PERTURBATIONS, "distractor", "reorder"]
    assert all(c.drop == 0 for c in ok.checks)
    bad = run_perturbations(brittle, QUESTION, measure=_scorer("10 years"), context=PASSAGES, max_drop=0.1)
    assert not bad.passed
    assert {c.perturbation for c in bad.failed} == {*TEXT_PERTURBATIONS, "distractor", "reorder"}
    assert bad.largest_drop == pytest.approx(0.8)
    text = bad.describe()
    assert "typos (seed 0; 1 typo(s)" in text  # names the perturbation and the change
    assert "drop 0.800 > 0.100" in text
    assert "variant: " in text
    as_dict = bad.to_dict()
    assert as_dict["verdict"] == "failed"
    assert as_dict["checks"][0]["drop"] == pytest.approx(0.8)


def test_a_variant_that_crashes_the_app_is_an_error_and_unmeasured_scores_are_said() -> None:
    def fragile(question: str) -> str:
        if not question.isascii():
            raise UnicodeError("cannot encode")
        return "ok 10 years"

    result = run_perturbations(
        fragile, QUESTION, measure=_scorer("10 years"), perturbations=["homoglyphs", "casing"]
    )
    (crash, fine) = result.checks
    assert crash.verdict == "error"
    assert crash.error == "UnicodeError: cannot encode"
    assert fine.verdict == "passed"
    assert not result.passed
    unmeasured = run_perturbations(fragile, QUESTION, measure=lambda a: None, perturbations=["casing"])
    assert unmeasured.checks[0].verdict == "not measured"
    assert unmeasured.checks[0].drop is None
    assert unmeasured.passed  # not judged either way: the caller decides (strict mode fails it)
    with pytest.raises(ValueError, match="need a context"):
        run_perturbations(fragile, QUESTION, measure=_scorer("x"), perturbations=["reorder"])
    with pytest.raises(TypeError, match="must return the answer as a str"):
        run_perturbations(lambda q: 42, QUESTION, measure=_scorer("x"))
