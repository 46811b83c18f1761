"""Grounding: the share of an answer's fact-carrying terms that its reference supports, and the
claims score: how many of them it does not support.

Each kind of term (number, date, name, word) has a weight; they are equal by default because
weighting facts above plain words measured worse (see ``GroundingWeights``). A sentence that flips
the polarity of a reference sentence ("was not" against "was") counts as an unsupported claim of
its own.

The share alone cannot tell one unsupported term in a short answer from one in a long answer, nor
one unsupported term from five in answers of the same proportions. The claims score counts them:
``0.5 ** (unsupported / CLAIMS_HALF_LIFE)``, each distinct unsupported term (weighted by kind,
negation flips included) taking the same fraction off, so every :data:`CLAIMS_HALF_LIFE` terms the reference
does not back halve it. A long answer that is fully supported scores 1, as a short one does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ._terms import Term, TextTerms, terms_of

__all__ = [
    "CLAIMS_HALF_LIFE",
    "GroundingResult",
    "GroundingWeights",
    "claims_score",
    "ground",
    "reference_terms",
]

# A negated answer sentence is compared with the reference sentence sharing most of its content
# terms; it is a polarity flip only when that sentence clearly states the same thing.
_SAME_CLAIM = 0.5
# ... or when it holds nearly all the content terms of a reference sentence of the other polarity.
_WHOLE_CLAIM = 0.75
#: Unsupported terms (weighted) that halve the claims score. Its value only sets the scale of the
#: score (any value ranks answers alike); presets' thresholds are fitted on this scale.
CLAIMS_HALF_LIFE = 2.0


def claims_score(unsupported: float) -> float:
    """The claims score of an answer with ``unsupported`` (weighted) unsupported terms."""
    return float(0.5 ** (unsupported / CLAIMS_HALF_LIFE))


@dataclass(frozen=True, slots=True)
class GroundingWeights:
    """How much one term of each kind counts."""

    # Equal by measurement: weighting names, numbers or dates above plain words lowered the AUC on
    # HaluEval fit rows ([0, 1500) of qa and dialogue, [0, 500) of summarization).
    number: float = 1.0
    date: float = 1.0
    name: float = 1.0
    word: float = 1.0
    negation: float = 1.0

    def of(self, kind: str) -> float:
        return float(getattr(self, kind))


@dataclass(frozen=True, slots=True)
class GroundingResult:
    """Grounding of one answer: ``score`` (the supported share) and ``claims`` are ``None`` when
    the answer states no checkable term."""

    score: float | None
    terms: int
    unsupported: tuple[str, ...]
    negation_mismatches: tuple[str, ...]
    #: Weighted count of the distinct unsupported terms and of negation flips.
    unsupported_weight: float = 0.0

    @property
    def claims(self) -> float | None:
        return None if self.score is None else claims_score(self.unsupported_weight)


@functools.lru_cache(maxsize=2048)  # a test suite asks many questions of one context
def reference_terms(text: str) -> TextTerms:
    """The terms of a reference text (cached)."""
    return terms_of(text)


def _supported(term: Term, keys: frozenset[str]) -> bool:
    key = term.key
    if term.kind == "number":
        if " " in key:  # with a unit: the same value in the same unit, or stated without one
            return key in keys or key.split(" ", 1)[0] in keys
        return key + "*" in keys
    if term.kind == "date":
        return key in keys or (len(key) < 11 and any(k.startswith(key) for k in keys if k[0] == "@"))
    return key in keys


def ground(answer: str, reference: str, weights: GroundingWeights | None = None) -> GroundingResult:
    """Score how well ``reference`` supports the terms of ``answer``."""
    weights = weights or GroundingWeights()
    said = terms_of(answer)
    known = reference_terms(reference)
    total = supported = missing = 0.0
    unsupported: list[str] = []
    missed: set[str] = set()  # a claim repeated is one claim: each unsupported key counts once
    previous: Term | None = None  # the last unsupported term, to show "Tom Hanks" as one name
    for term in said.terms:
        weight = weights.of(term.kind)
        total += weight
        if _supported(term, known.keys):
            supported += weight
            previous = None
            continue
        if term.key not in missed:
            missed.add(term.key)
            missing += weight
        adjacent = (
            previous is not None and term.sentence == previous.sentence and term.start - previous.end <= 1
        )
        if adjacent and term.kind == "name" and previous is not None and previous.kind == "name":
            unsupported[-1] = f"{unsupported[-1]} {term.text}"
        elif term.text not in unsupported:
            unsupported.append(term.text)
        previous = term
    flips: list[str] = []
    for index, keys in enumerate(said.sentence_keys):
        if not keys or not known.sentence_keys:
            continue
        negated = said.sentence_negated[index]
        shared = [len(keys & ref_keys) for ref_keys in known.sentence_keys]
        most = max(shared)
        # The reference sentences stating most of the same thing; a tie with one of the answer's
        # polarity is no flip.
        closest = [known.sentence_negated[j] for j, n in enumerate(shared) if n == most]
        flipped = most / len(keys) >= _SAME_CLAIM and negated not in closest
        if not flipped and not negated:
            # A clause of a positive answer sentence can assert what a whole negative reference
            # sentence denies: "covers repairs, including accidental damage" against "Accidental
            # damage is not covered". (Polarity is known per sentence, so a negative answer
            # sentence is not judged clause by clause.)
            flipped = any(
                known.sentence_negated[j] and len(ref_keys) >= 2 and shared[j] >= _WHOLE_CLAIM * len(ref_keys)
                for j, ref_keys in enumerate(known.sentence_keys)
            )
        if flipped:
            side = "answer" if negated else "reference"
            flips.append(f"negation (only the {side} negates sentence {index + 1})")
            total += weights.negation
            missing += weights.negation
    if total == 0:
        return GroundingResult(None, 0, (), ())
    return GroundingResult(supported / total, len(said.terms), tuple(unsupported), tuple(flips), missing)
