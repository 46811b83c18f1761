"""The terms a text asserts: numbers with their units, dates, names and content words.

Grounding compares the terms of an answer with those of its reference, so both go through the same
normalisation here: numbers become values with a unit (``$89.5B`` and ``89.5 billion dollars`` are
both ``89500000000 usd``), dates become ISO prefixes (``March 2, 1991`` and ``2 March 1991`` are both
``1991-03-02``), words are lower-cased and lightly stemmed, and stop words are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["NEGATIONS", "STOP_WORDS", "Term", "TextTerms", "sentences", "stem", "terms_of"]

# Function words that carry no fact. Negations are not here: they are checked apart.
STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each else ever few for from
    further had has have having he her here hers herself him himself his how however i if in into is
    it its itself just let like may me might more most much must my myself now of off on once only
    or other our ours ourselves out over own per quite rather same says said shall she should since
    so some such than that the their theirs them themselves then there these they this those through
    thus to too under until up upon us very was we were what when where whether which while who whom
    whose why will with within would yet you your yours yourself yourselves one ones also well
    really get got go goes going know think yes oh okay ok sure lot lots thing things way
    """.split()  # noqa: SIM905 - a word list reads better as text
)
NEGATIONS = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot"}
)

_MONTHS = {
    name: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for name in names
}
_MONTH = (
    r"(?P<{g}>january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?"
)
_DATE = re.compile(
    "|".join(
        [
            r"\b(?P<iy>\d{4})-(?P<im>\d{1,2})-(?P<id>\d{1,2})\b",  # 1991-03-02
            # March 2, 1991 / March 2nd 1991 / March 1991
            rf"\b{_MONTH.format(g='am')}\s+(?:(?P<ad>\d{{1,2}})(?:st|nd|rd|th)?,?\s+)?(?P<ay>\d{{4}})\b",
            rf"\b(?P<bd>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH.format(g='bm')},?\s+(?P<by>\d{{4}})\b",
        ]
    ),
    re.IGNORECASE,
)

_SCALE = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mn": 1e6,
    "mln": 1e6,
    "million": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
    "t": 1e12,
    "tn": 1e12,
    "trillion": 1e12,
}
_UNITS = {
    "$": "usd",
    "usd": "usd",
    "dollar": "usd",
    "dollars": "usd",
    "us$": "usd",
    "€": "eur",
    "eur": "eur",
    "euro": "eur",
    "euros": "eur",
    "£": "gbp",
    "gbp": "gbp",
    "pound": "gbp",
    "pounds": "gbp",
    "¥": "jpy",
    "yen": "jpy",
    "jpy": "jpy",
    "%": "percent",
    "percent": "percent",
    "per cent": "percent",
    "pct": "percent",
    # Durations and physical quantities: "5 years" is not "5 business days", "10-year" is "10 years".
    "year": "year",
    "yr": "year",
    "month": "month",
    "week": "week",
    "day": "day",
    "hour": "hour",
    "hr": "hour",
    "minute": "minute",
    "min": "minute",
    "second": "second",
    "sec": "second",
    "kwh": "kwh",
    "mwh": "mwh",
    "gwh": "gwh",
    "kw": "kw",
    "mw": "mw",
    "watt": "watt",
    "kg": "kg",
    "kilogram": "kg",
    "km": "km",
    "kilometre": "km",
    "kilometer": "km",
    "mile": "mile",
}
# Words between a number and its duration that do not change the unit ("5 business days").
_DURATION_MODIFIERS = ("business", "working", "calendar", "full", "consecutive")
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        """
        zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
        sixteen seventeen eighteen nineteen twenty
        """.split()  # noqa: SIM905 - a word list reads better as text
    )
}
_NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80})
_NUMBER_WORDS.update({"ninety": 90, "hundred": 100, "dozen": 12})
_NUMBER = re.compile(
    r"(?P<cur>us\$|[$€£¥])?\s?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
    r"|\b(?:" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")\b)"
    r"(?:\s?(?P<scale>thousand|million|billion|trillion|mln|mn|bn|tn|[kmbt])\b)?"
    r"(?:[\s-]?(?P<unit>%|percent|per cent|pct|dollars?|usd|euros?|eur|pounds?|gbp|yen|jpy"
    r"|(?:(?:" + "|".join(_DURATION_MODIFIERS) + r")\s)?"
    r"(?:years?|yrs?|months?|weeks?|days?|hours?|hrs?|minutes?|mins?|seconds?|secs?)"
    r"|kwh|mwh|gwh|kw|mw|watts?|kg|kilograms?|km|kilometres?|kilometers?|miles?)(?![a-z]))?",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z])|\n\s*\n|(?<=[a-z0-9]\.)(?=[A-Z][a-z])")


@dataclass(frozen=True, slots=True)
class Term:
    """One fact-carrying piece of a text."""

    text: str  # as written, for messages
    key: str  # normalised: what is compared
    kind: str  # "number", "date", "name", "word"
    sentence: int  # index of the sentence it is in
    start: int  # offsets in that sentence
    end: int


@dataclass(frozen=True, slots=True)
class TextTerms:
    """The terms of one text, and what a reference needs to answer lookups fast."""

    terms: tuple[Term, ...]
    keys: frozenset[str]  # every key, for support lookups
    sentence_keys: tuple[frozenset[str], ...]  # content keys per sentence
    sentence_negated: tuple[bool, ...]  # whether each sentence holds a negation


def stem(word: str) -> str:
    """A light, deterministic English stemmer: plural and common verb/adjective endings only."""
    w = word.lower().replace("\u2019", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) <= 3:
        return w
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("edly", ""), ("ed", ""), ("ly", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)] + keep
            break
    else:
        if (w.endswith("es") and w[-3:-2] in ("s", "x", "z")) or w.endswith(("ches", "shes")):
            w = w[:-2]
        elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
    if len(w) > 4 and w[-1] == w[-2] and w[-1] not in "lsz":  # stopped -> stopp -> stop
        w = w[:-1]
    if len(w) > 4 and w.endswith("e"):  # produce / produc(ed)
        w = w[:-1]
    return w


def _value_key(value: float, unit: str | None) -> str:
    text = f"{value:.6g}" if abs(value) < 1e15 else f"{value:.6e}"
    return f"#{text}" + (f" {unit}" if unit else "")


def sentences(text: str) -> list[str]:
    """Split text into sentences (also where a period is directly followed by a capital)."""
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if p]


def terms_of(text: str) -> TextTerms:
    """Extract the terms of ``text``."""
    found: list[Term] = []
    sentence_keys: list[frozenset[str]] = []
    negated: list[bool] = []
    years: set[str] = set()
    for index, sentence in enumerate(sentences(text)):
        keys: set[str] = set()
        spans: list[tuple[int, int]] = []
        for match in _DATE.finditer(sentence):
            g = match.groupdict()
            year = g["iy"] or g["ay"] or g["by"]
            month = int(g["im"]) if g["im"] else _MONTHS[(g["am"] or g["bm"]).lower().rstrip(".")]
            day = g["id"] or g["ad"] or g["bd"]
            if not 1 <= month <= 12 or (day and not 1 <= int(day) <= 31):
                continue
            key = f"@{year}-{month:02d}" + (f"-{int(day):02d}" if day else "")
            found.append(Term(match.group(0), key, "date", index, *match.span()))
            keys.add(key)
            years.add(f"#{int(year)}*")
            spans.append(match.span())
        for match in _NUMBER.finditer(sentence):
            if any(a <= match.start("num") < b for a, b in spans):
                continue
            raw = match.group("num").lower()
            word_number = raw in _NUMBER_WORDS
            value = float(_NUMBER_WORDS[raw]) if word_number else float(raw.replace(",", ""))
            scale = (match.group("scale") or "").lower()
            if scale in ("m", "b", "t", "k") and match.group("cur") is None and match.group("unit") is None:
                # "5 m" is more often metres than millions; only trust single letters after money
                scale = ""
            value *= _SCALE.get(scale, 1.0)
            unit_text = (match.group("cur") or match.group("unit") or "").lower()
            modifier, _, rest = unit_text.partition(" ")
            if modifier in _DURATION_MODIFIERS:
                unit_text = rest
            unit = _UNITS.get(unit_text) or _UNITS.get(unit_text.rstrip("s"))
            if word_number and value < 2 and not unit and not scale:
                continue  # "one of", "zero" as a word: not a quantity claim
            key = _value_key(value, unit)
            found.append(Term(match.group(0).strip(), key, "number", index, *match.span()))
            keys.add(key)
            keys.add(_value_key(value, None) + "*")  # the value whatever its unit
            spans.append(match.span())
        is_negated = False
        first_word = True
        for match in _WORD.finditer(sentence):
            if any(a <= match.start() < b for a, b in spans):
                first_word = False
                continue
            word = match.group(0)
            lower = word.lower().replace("\u2019", "'")
            if lower in NEGATIONS or lower.endswith("n't"):
                is_negated = True
            head, _, tail = lower.partition("'")
            if tail in ("m", "re", "ve", "ll", "d", "t"):  # I'm, they've, we'll: the pronoun is what is left
                lower = head
            if lower in STOP_WORDS or tail == "t" or lower in NEGATIONS or len(lower) < 2:
                first_word = False
                continue
            kind = "name" if word[0].isupper() and not first_word else "word"
            first_word = False
            key = stem(lower)
            if key in STOP_WORDS:
                continue
            found.append(Term(word, key, kind, index, *match.span()))
            keys.add(key)
        sentence_keys.append(frozenset(keys))
        negated.append(is_negated)
    all_keys = frozenset().union(*sentence_keys) if sentence_keys else frozenset()
    # A full or partial date also supports its bare year.
    return TextTerms(tuple(found), all_keys | frozenset(years), tuple(sentence_keys), tuple(negated))
