from __future__ import annotations

import pytest

from cert_core.measure import GroundingWeights, ground
from cert_core.measure._terms import sentences, stem, terms_of


def keys(text: str, kind: str | None = None) -> list[str]:
    return [t.key for t in terms_of(text).terms if kind is None or t.kind == kind]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("$89.5B", "#8.95e+10 usd"),
        ("89.5 billion dollars", "#8.95e+10 usd"),
        ("USD 89.5 billion", "#8.95e+10"),  # the currency before the number is not attached
        ("12%", "#12 percent"),
        ("12 percent", "#12 percent"),
        ("12 per cent", "#12 percent"),
        ("1,234,567", "#1.23457e+06"),
        ("€3.2 million", "#3.2e+06 eur"),
        ("£40", "#40 gbp"),
        ("three", "#3"),
        ("0.5", "#0.5"),
        ("5 years", "#5 year"),
        ("a 10-year warranty", "#10 year"),
        ("within 5 business days", "#5 day"),
        ("30 mins", "#30 minute"),
        ("one day", "#1 day"),
        ("10.2 kWh", "#10.2 kwh"),
        ("5 kW", "#5 kw"),
        ("120 km", "#120 km"),
    ],
)
def test_numbers_are_values_with_units(text: str, key: str) -> None:
    assert key in keys(text, "number")


def test_a_lone_m_after_a_plain_number_is_not_millions() -> None:
    assert keys("a 5 m cable", "number") == ["#5"]
    assert keys("$5m", "number") == ["#5e+06 usd"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("March 2, 1991", "@1991-03-02"),
        ("2 March 1991", "@1991-03-02"),
        ("2nd of March, 1991", "@1991-03-02"),
        ("1991-03-02", "@1991-03-02"),
        ("Mar. 1991", "@1991-03"),
    ],
)
def test_dates_are_normalised(text: str, key: str) -> None:
    assert keys(text, "date") == [key]


def test_stop_words_are_dropped_and_words_stemmed() -> None:
    assert keys("The cats were running to the houses") == [stem("cats"), stem("running"), stem("houses")]
    assert stem("cats") != "cats"
    assert stem("cats") == stem("cat")
    assert stem("produced") == stem("produce") == stem("produces")
    assert stem("studies") == stem("study")
    assert stem("stopped") == stem("stop")


def test_names_are_capitalised_words_inside_a_sentence() -> None:
    terms = terms_of("Yesterday Tom Hanks visited the studio.").terms
    assert [(t.text, t.kind) for t in terms] == [
        ("Yesterday", "word"),
        ("Tom", "name"),
        ("Hanks", "name"),
        ("visited", "word"),
        ("studio", "word"),
    ]


def test_sentences_split_on_missing_space_after_period() -> None:
    # HaluEval's knowledge fields glue sentences together like this.
    assert sentences("It was published in Philadelphia.First for Women is a magazine.") == [
        "It was published in Philadelphia.",
        "First for Women is a magazine.",
    ]


def test_equal_values_in_other_words_are_supported() -> None:
    result = ground(
        "Revenue was $89.5B, up 12%.", "Revenue reached 89.5 billion dollars, a 12 percent increase."
    )
    assert result.score == 1.0
    assert result.unsupported == ()


def test_a_wrong_number_is_unsupported_and_weighs_more_than_a_word() -> None:
    result = ground(
        "Revenue was $89.5B, up 13%.", "Revenue reached 89.5 billion dollars, a 12 percent increase."
    )
    assert result.unsupported == ("13%",)
    # revenue(1) + $89.5B(3) supported out of revenue, $89.5B, 13% (3 each) and "up" is a word too
    assert result.score is not None
    assert 0.4 < result.score < 0.8


def test_a_number_in_another_unit_is_not_support() -> None:
    assert ground("It grew 12%.", "It grew by $12.").unsupported == ("12%",)
    assert ground("It grew 12.", "It grew 12%.").unsupported == ()  # no unit claimed
    reference = "Refunds are paid within 5 business days. The warranty lasts 10 years."
    assert ground("The warranty lasts 5 years.", reference).unsupported == ("5 years",)
    assert ground("It has a 10-year warranty.", reference).unsupported == ()
    assert ground("Refunds are paid within 5 days.", reference).unsupported == ()
    assert keys("a 5 minimum order", "number") == ["#5"]  # "min" only as a word of its own


def test_a_bare_year_is_supported_by_a_full_date() -> None:
    assert ground("She was born in 1991.", "Allie (born March 2, 1991) is a musician.").unsupported == ()
    assert ground("She was born on 2 March 1991.", "She was born in March 1991.").unsupported == (
        "2 March 1991",
    )


def test_unsupported_names_are_listed_as_one_span() -> None:
    result = ground(
        "RDJ starred in Zodiac with Tom Hanks.",
        "Robert Downey Jr. starred in Zodiac. Zodiac stars Jake Gyllenhaal.",
    )
    assert result.unsupported == ("RDJ", "Tom Hanks")


def test_negation_flip_is_detected_both_ways() -> None:
    flipped = ground("The company did not report a loss in 2023.", "The company reported a loss in 2023.")
    assert flipped.negation_mismatches == ("negation (only the answer negates sentence 1)",)
    assert flipped.score is not None
    assert flipped.score < 1.0
    reverse = ground("The drug was approved.", "The drug was not approved by the agency.")
    assert reverse.negation_mismatches == ("negation (only the reference negates sentence 1)",)
    agree = ground("The drug wasn't approved.", "The drug was not approved.")
    assert agree.negation_mismatches == ()
    assert agree.score == 1.0


def test_an_answer_with_nothing_checkable_is_not_scored() -> None:
    result = ground("Yes, it is.", "The sky is blue.")
    assert result.score is None
    assert result.terms == 0


def test_weights_change_the_score() -> None:
    answer, reference = "Paris hosted 3 games.", "Paris hosted 4 games."
    light = ground(answer, reference, GroundingWeights(number=1.0))
    heavy = ground(answer, reference, GroundingWeights(number=10.0))
    assert light.score is not None
    assert heavy.score is not None
    assert heavy.score < light.score


def test_claims_count_unsupported_terms_whatever_the_answer_length() -> None:
    reference = (
        "The museum opened in 1998 in Bilbao. Frank Gehry designed the building, which is clad in "
        "titanium. It houses modern and contemporary art and draws about a million visitors a year."
    )
    short = ground("The museum opened in 2001.", reference)
    long = ground(
        "Frank Gehry designed the museum in Bilbao, a building clad in titanium that houses modern "
        "and contemporary art; it opened in 2001.",
        reference,
    )
    # One unsupported term each ('2001'): the same claims score, 0.5 ** (1 / 2) ...
    assert short.unsupported == long.unsupported == ("2001",)
    assert short.claims == long.claims == pytest.approx(0.5**0.5)
    # ... while the supported share depends on how much else each answer says.
    assert short.score is not None
    assert long.score is not None
    assert short.score < long.score
    # Every two unsupported terms halve it; a long fully supported answer scores 1.
    three = ground("The museum was designed by Zaha Hadid in 2001.", reference)
    assert three.unsupported == ("2001", "Zaha Hadid")
    assert three.unsupported_weight == 3
    assert three.claims == pytest.approx(0.5**1.5)
    supported = ground("Frank Gehry designed the Bilbao museum, clad in titanium, opened in 1998.", reference)
    assert supported.unsupported == ()
    assert supported.claims == 1.0


def test_claims_count_negation_flips_and_follow_term_weights() -> None:
    flipped = ground("The company did not report a loss in 2023.", "The company reported a loss in 2023.")
    assert flipped.unsupported == ()
    assert flipped.claims == pytest.approx(0.5**0.5)  # the flip alone
    heavy = ground("Paris hosted 3 games.", "Paris hosted 4 games.", GroundingWeights(number=4.0))
    assert heavy.claims == pytest.approx(0.5**2)
    assert ground("Yes, it is.", "The sky is blue.").claims is None
    # A claim repeated is one claim.
    twice = ground("Paris hosted 3 games, and 3 games were enough.", "Paris hosted 4 games.")
    assert twice.unsupported == ("3", "enough")
    assert twice.unsupported_weight == 2


def test_a_clause_contradicting_a_whole_reference_sentence_is_a_negation_flip() -> None:
    reference = "The policy covers screen repairs. Accidental damage is not covered."
    claimed = ground("Your policy covers screen repairs, including accidental damage.", reference)
    assert claimed.negation_mismatches == ("negation (only the reference negates sentence 1)",)
    # Restating the covered part alone contradicts nothing.
    assert ground("Your policy covers screen repairs.", reference).negation_mismatches == ()
    # Agreeing with the negated sentence is no flip either.
    agreed = ground("Accidental damage is not covered, but screen repairs are.", reference)
    assert agreed.negation_mismatches == ()
