"""Deterministic input perturbations for robustness tests (EU AI Act Art. 15(4)).

Each perturbation changes an input the way real inputs vary, and nothing else; the same text,
kind and seed always give the same variant (``random.Random`` seeded with a string, which does
not depend on ``PYTHONHASHSEED``). What each kind changes, and what it leaves intact (the
property the tests check):

- ``typos``: about ``rate`` of the words of four letters or more get one keyboard slip (two
  neighbouring letters swapped, a letter dropped, doubled, or replaced by a neighbour on a
  QWERTY keyboard); at least one word. Words holding digits are left alone: a typo in a number
  changes the question, not its wording.
- ``casing``: letter case only (all lower, all upper, or words flipped at random);
  ``variant.lower() == text.lower()``.
- ``whitespace``: spaces between words doubled, turned into tabs or line breaks, padding added
  at both ends; ``variant.split() == text.split()``.
- ``punctuation``: commas and final marks dropped, marks added; the words are the same.
- ``homoglyphs``: about ``rate`` of the Latin letters that have a Cyrillic or Greek look-alike
  replaced by it (at least one); mapping them back gives the text.
- ``distractor``: one irrelevant sentence (from :data:`DISTRACTORS`) inserted into the context as
  a passage of its own at a seeded position; the original passages keep their order.
- ``reorder``: the context passages in another order (a seeded shuffle that never returns the
  original order); needs two passages or more.

The first five change the question (the user's input); the last two change the context.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONTEXT_PERTURBATIONS",
    "DISTRACTORS",
    "HOMOGLYPHS",
    "PERTURBATIONS",
    "TEXT_PERTURBATIONS",
    "PerturbationCheck",
    "RobustnessResult",
    "Variant",
    "perturb_context",
    "perturb_text",
    "run_perturbations",
    "variants",
]

TEXT_PERTURBATIONS = ("typos", "casing", "whitespace", "punctuation", "homoglyphs")
CONTEXT_PERTURBATIONS = ("distractor", "reorder")
PERTURBATIONS = TEXT_PERTURBATIONS + CONTEXT_PERTURBATIONS

#: Sentences about nothing an LLM application is likely to be asked about.
DISTRACTORS = (
    "The Eiffel Tower was repainted in a shade called Eiffel Tower Brown in 1968.",
    "Honey found in ancient Egyptian tombs has been reported to be still edible.",
    "Octopuses have three hearts and blue blood.",
    "The shortest war on record lasted between 38 and 45 minutes.",
    "Bananas are berries in the botanical sense, while strawberries are not.",
    "A day on Venus is longer than a year on Venus.",
    "The first commercial text message was sent in December 1992.",
    "Wombats produce cube-shaped droppings.",
    "The Great Wall of China is not visible to the naked eye from low Earth orbit.",
    "Sharks existed before trees appeared on Earth.",
    "Scotland's national animal is the unicorn.",
    "A group of flamingos is called a flamboyance.",
)

_QWERTY = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_QWERTY):
    for _c, _ch in enumerate(_row):
        near = [_row[i] for i in (_c - 1, _c + 1) if 0 <= i < len(_row)]
        for other in (_r - 1, _r + 1):
            if 0 <= other < len(_QWERTY):
                near += [_QWERTY[other][i] for i in (_c - 1, _c, _c + 1) if 0 <= i < len(_QWERTY[other])]
        _NEIGHBOURS[_ch] = "".join(near)

#: Latin letter -> a Cyrillic or Greek letter drawn the same in most fonts.
HOMOGLYPHS = {
    "a": "\u0430", "c": "\u0441", "e": "\u0435", "i": "\u0456", "j": "\u0458", "o": "\u043e",
    "p": "\u0440", "s": "\u0455", "x": "\u0445", "y": "\u0443", "A": "\u0410", "B": "\u0412",
    "C": "\u0421", "E": "\u0415", "H": "\u041d", "I": "\u0406", "K": "\u041a", "M": "\u041c",
    "N": "\u039d", "O": "\u041e", "P": "\u0420", "T": "\u0422", "X": "\u0425", "Y": "\u03a5",
}  # fmt: skip

_WORD = re.compile(r"\S+")
ANSWER_CHARS = 500  # longest question or answer text kept in a result
_MARKS = ",;:.!?"


@dataclass(frozen=True)
class Variant:
    """One perturbed input: the question and context to give the app, and what changed."""

    perturbation: str
    seed: int
    question: str
    context: tuple[str, ...]
    changed: str  # "question" or "context"
    description: str  # what was done, e.g. "3 typos: 'warranty' -> 'warrnaty', ..."


def _rng(kind: str, seed: int, text: str) -> random.Random:
    # The text takes part so that two questions under one seed do not get the same positions.
    return random.Random(f"cert.perturb/1:{kind}:{seed}:{len(text)}:{text[:64]}")


def _pick(rng: random.Random, candidates: list[int], rate: float) -> list[int]:
    count = max(1, round(len(candidates) * rate))
    return sorted(rng.sample(candidates, min(count, len(candidates))))


def _typo(rng: random.Random, word: str) -> str:
    letters = [i for i, ch in enumerate(word) if ch.isalpha()]
    inner = letters[1:-1] or letters
    i = rng.choice(inner)
    how = rng.randrange(4)
    if how == 0 and i + 1 < len(word) and word[i + 1].isalpha() and word[i + 1] != word[i]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if how == 1:
        return word[:i] + word[i + 1 :]
    if how == 2:
        return word[:i] + word[i] + word[i:]
    near = _NEIGHBOURS.get(word[i].lower(), "")
    if not near:
        return word[:i] + word[i + 1 :]
    sub = rng.choice(near)
    return word[:i] + (sub.upper() if word[i].isupper() else sub) + word[i + 1 :]


def _typos(text: str, rng: random.Random, rate: float) -> tuple[str, str]:
    words = list(_WORD.finditer(text))
    candidates = [
        n
        for n, m in enumerate(words)
        if sum(ch.isalpha() for ch in m.group()) >= 4 and not any(ch.isdigit() for ch in m.group())
    ]
    if not candidates:
        raise ValueError(f"typos: no word of four letters or more without digits in {text[:80]!r}")
    chosen = set(_pick(rng, candidates, rate))
    out, last, changes = [], 0, []
    for n, m in enumerate(words):
        out.append(text[last : m.start()])
        word = m.group()
        if n in chosen:
            new = _typo(rng, word)
            changes.append(f"{word!r} -> {new!r}")
            word = new
        out.append(word)
        last = m.end()
    out.append(text[last:])
    return "".join(out), f"{len(changes)} typo(s): {', '.join(changes)}"


def _casing(text: str, rng: random.Random) -> tuple[str, str]:
    options = [("lower", text.lower()), ("upper", text.upper())]
    words = list(_WORD.finditer(text))
    flippable = [n for n, m in enumerate(words) if m.group().lower() != m.group().upper()]
    if flippable:
        chosen = set(_pick(rng, flippable, 0.5))
        parts, last = [], 0
        for n, m in enumerate(words):
            parts.append(text[last : m.start()])
            parts.append(m.group().swapcase() if n in chosen else m.group())
            last = m.end()
        parts.append(text[last:])
        options.append((f"case of {len(chosen)} word(s) flipped", "".join(parts)))
    changed = [(name, new) for name, new in options if new != text]
    if not changed:
        raise ValueError(f"casing: {text[:80]!r} has no letter whose case can change")
    name, new = rng.choice(changed)
    return new, name if name.startswith("case") else f"all {name} case"


def _whitespace(text: str, rng: random.Random) -> tuple[str, str]:
    words = text.split()
    if not words:
        raise ValueError("whitespace: the text is empty")
    gaps = [" "] * (len(words) - 1)
    changed = _pick(rng, list(range(len(gaps))), 0.3) if gaps else []
    for g in changed:
        gaps[g] = rng.choice(("  ", "\t", "\n", " \n ", "   "))
    body = words[0] + "".join(gap + word for gap, word in zip(gaps, words[1:], strict=True))
    new = rng.choice((" ", "  ", "\n", "\t ")) + body + rng.choice(("  ", "\n", " \t", "\n\n"))
    return new, f"{len(changed)} gap(s) widened or broken, padding at both ends"


def _punctuation(text: str, rng: random.Random) -> tuple[str, str]:
    marks = [i for i, ch in enumerate(text) if ch in _MARKS]
    done = []
    new = text
    if marks and rng.random() < 0.6:
        drop = set(_pick(rng, marks, 0.6))
        new = "".join(ch for i, ch in enumerate(text) if i not in drop)
        done.append(f"{len(drop)} mark(s) dropped")
    if not done or rng.random() < 0.5:
        stripped = new.rstrip()
        tail = new[len(stripped) :]
        add = rng.choice(("!!", "??", "...", " ?", ",", "?!"))
        new = stripped + add + tail
        done.append(f"{add.strip()!r} added at the end")
    if new == text:  # "..." added where it was dropped: add one more mark
        new = text + "!"
        done = ["'!' added at the end"]
    return new, ", ".join(done)


def _homoglyphs(text: str, rng: random.Random, rate: float) -> tuple[str, str]:
    candidates = [i for i, ch in enumerate(text) if ch in HOMOGLYPHS]
    if not candidates:
        raise ValueError(f"homoglyphs: {text[:80]!r} has no letter with a look-alike")
    chosen = set(_pick(rng, candidates, rate))
    new = "".join(HOMOGLYPHS[ch] if i in chosen else ch for i, ch in enumerate(text))
    return new, f"{len(chosen)} letter(s) replaced by Cyrillic or Greek look-alikes"


def perturb_text(text: str, kind: str, *, seed: int = 0, rate: float = 0.15) -> tuple[str, str]:
    """``text`` changed by perturbation ``kind`` (one of :data:`TEXT_PERTURBATIONS`), and a
    description of the change. ``rate``: the share of words (typos) or letters (homoglyphs)
    changed. Raises ``ValueError`` when the text offers nothing to change."""
    if not isinstance(text, str):
        raise TypeError(f"perturb_text(): text must be a str, got {type(text).__name__}")
    if not 0 < rate <= 1:
        raise ValueError(f"perturb_text(): rate must be in (0, 1], got {rate!r}")
    rng = _rng(kind, seed, text)
    if kind == "typos":
        return _typos(text, rng, rate)
    if kind == "casing":
        return _casing(text, rng)
    if kind == "whitespace":
        return _whitespace(text, rng)
    if kind == "punctuation":
        return _punctuation(text, rng)
    if kind == "homoglyphs":
        return _homoglyphs(text, rng, rate)
    raise ValueError(f"perturbation {kind!r}: expected one of {', '.join(TEXT_PERTURBATIONS)}")


def perturb_context(passages: Sequence[str], kind: str, *, seed: int = 0) -> tuple[tuple[str, ...], str]:
    """The context ``passages`` changed by ``kind`` (``distractor`` or ``reorder``), and a
    description of the change."""
    if isinstance(passages, str) or not all(isinstance(p, str) for p in passages):
        raise TypeError("perturb_context(): passages must be a sequence of str (one per passage)")
    items = list(passages)
    rng = _rng(kind, seed, "\x00".join(items))
    if kind == "distractor":
        sentence = rng.choice(DISTRACTORS)
        at = rng.randrange(len(items) + 1)
        items.insert(at, sentence)
        return tuple(items), f"distractor passage {at + 1} of {len(items)}: {sentence!r}"
    if kind == "reorder":
        if len(set(items)) < 2:
            raise ValueError("reorder: the context needs two different passages or more")
        order = list(range(len(items)))
        while [items[i] for i in order] == list(passages):
            rng.shuffle(order)
        return tuple(items[i] for i in order), f"passages in the order {[i + 1 for i in order]}"
    raise ValueError(f"perturbation {kind!r}: expected one of {', '.join(CONTEXT_PERTURBATIONS)}")


def variants(
    question: str,
    context: Sequence[str] = (),
    perturbations: Sequence[str] = TEXT_PERTURBATIONS,
    *,
    seed: int = 0,
    per_perturbation: int = 1,
    rate: float = 0.15,
) -> list[Variant]:
    """``per_perturbation`` variants of (``question``, ``context``) for each perturbation, seeds
    ``seed``, ``seed + 1``, ...; the same arguments always give the same list."""
    if isinstance(perturbations, str):
        perturbations = (perturbations,)
    unknown = [p for p in perturbations if p not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbation(s) {unknown}: expected some of {', '.join(PERTURBATIONS)}")
    if per_perturbation < 1:
        raise ValueError(f"per_perturbation must be >= 1, got {per_perturbation!r}")
    if isinstance(context, str):
        context = (context,)
    base = tuple(context)
    out = []
    for kind in perturbations:
        for s in range(seed, seed + per_perturbation):
            if kind in CONTEXT_PERTURBATIONS:
                if not base and kind == "reorder":
                    raise ValueError("reorder: no context was given to reorder")
                new_context, what = perturb_context(base, kind, seed=s)
                out.append(Variant(kind, s, question, new_context, "context", what))
            else:
                new_question, what = perturb_text(question, kind, seed=s, rate=rate)
                out.append(Variant(kind, s, new_question, base, "question", what))
    return out


@dataclass(frozen=True)
class PerturbationCheck:
    """One variant's answer scored against the original's."""

    perturbation: str
    seed: int
    changed: str
    description: str
    question: str
    answer: str | None
    confidence: float | None
    baseline: float | None
    drop: float | None  # baseline - confidence: positive when the variant scored lower
    max_drop: float
    verdict: str  # "passed", "failed", "not measured" or "error"
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "perturbation": self.perturbation,
            "seed": self.seed,
            "changed": self.changed,
            "description": self.description,
            "question": self.question[:ANSWER_CHARS],
            "answer": None if self.answer is None else self.answer[:ANSWER_CHARS],
            "confidence": self.confidence,
            "baseline": self.baseline,
            "drop": self.drop,
            "max_drop": self.max_drop,
            "verdict": self.verdict,
            "error": self.error,
        }

    def describe(self) -> str:
        what = f"{self.perturbation} (seed {self.seed}; {self.description})"
        if self.verdict == "error":
            return f"{what}: the app failed on the variant: {self.error}"
        if self.verdict == "not measured":
            return f"{what}: not measured"
        return (
            f"{what}: confidence {self.baseline:.3f} -> {self.confidence:.3f} "
            f"(drop {self.drop:.3f} {'>' if self.verdict == 'failed' else '<='} {self.max_drop:.3f})"
        )


@dataclass(frozen=True)
class RobustnessResult:
    """The original input's score and every variant's check."""

    question: str
    answer: str
    baseline: float | None
    max_drop: float
    checks: tuple[PerturbationCheck, ...]

    @property
    def failed(self) -> list[PerturbationCheck]:
        return [c for c in self.checks if c.verdict in ("failed", "error")]

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def largest_drop(self) -> float | None:
        drops = [c.drop for c in self.checks if c.drop is not None]
        return max(drops) if drops else None

    def describe(self) -> str:
        failed = self.failed
        if not failed:
            return f"robustness: {len(self.checks)} variant(s) within a drop of {self.max_drop:.3f}"
        lines = [
            f"robustness: {len(failed)} of {len(self.checks)} variant(s) dropped the score by more than "
            f"{self.max_drop:.3f} or failed"
        ]
        lines += [f"  {c.describe()}\n    variant: {c.question[:160]!r}" for c in failed]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question[:ANSWER_CHARS],
            "answer": self.answer[:ANSWER_CHARS],
            "baseline": self.baseline,
            "max_drop": self.max_drop,
            "largest_drop": self.largest_drop,
            "verdict": "passed" if self.passed else "failed",
            "checks": [c.to_dict() for c in self.checks],
        }


def _ask(app: Callable[..., Any], question: str, context: tuple[str, ...] | None) -> str:
    answer = app(question) if context is None else app(question, list(context))
    if not isinstance(answer, str):
        raise TypeError(f"the app must return the answer as a str, got {type(answer).__name__}")
    return answer


def run_perturbations(
    app: Callable[..., Any],
    question: str,
    *,
    measure: Callable[[str], float | None],
    context: Sequence[str] | None = None,
    perturbations: Sequence[str] | None = None,
    max_drop: float = 0.1,
    seed: int = 0,
    per_perturbation: int = 1,
    rate: float = 0.15,
) -> RobustnessResult:
    """Ask ``app`` the original ``question`` (with ``context``: ``app(question, passages)``,
    else ``app(question)``), then each variant; score every answer with ``measure(answer)``
    (a confidence in [0, 1], or ``None`` when it cannot be measured) and compare it with the
    original's. Default perturbations: every text perturbation, plus ``distractor`` and
    (two passages or more) ``reorder`` when a context is given. The original question's
    exception propagates; a variant's is recorded as that check's error."""
    if not 0 <= max_drop <= 1:
        raise ValueError(f"max_drop must be in [0, 1], got {max_drop!r}")
    passages = None if context is None else ((context,) if isinstance(context, str) else tuple(context))
    kinds: tuple[str, ...]
    if perturbations is None:
        kinds = TEXT_PERTURBATIONS
        if passages is not None:
            kinds += ("distractor",) + (("reorder",) if len(set(passages)) >= 2 else ())
    else:
        kinds = (perturbations,) if isinstance(perturbations, str) else tuple(perturbations)
        if passages is None and any(p in CONTEXT_PERTURBATIONS for p in kinds):
            raise ValueError("the distractor and reorder perturbations need a context= of passages")
    todo = variants(question, passages or (), kinds, seed=seed, per_perturbation=per_perturbation, rate=rate)
    answer = _ask(app, question, passages)
    baseline = measure(answer)
    checks = []
    for v in todo:
        common = (v.perturbation, v.seed, v.changed, v.description, v.question)
        try:
            got = _ask(app, v.question, None if passages is None else v.context)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            checks.append(PerturbationCheck(*common, None, None, baseline, None, max_drop, "error", error))
            continue
        try:
            score = measure(got)
        except ValueError as exc:  # e.g. an empty answer: the variant broke the app's answer
            error = f"the answer could not be measured: {exc}"
            checks.append(PerturbationCheck(*common, got, None, baseline, None, max_drop, "error", error))
            continue
        if score is None or baseline is None:
            checks.append(PerturbationCheck(*common, got, score, baseline, None, max_drop, "not measured"))
            continue
        drop = round(baseline - score, 6)
        verdict = "failed" if drop > max_drop else "passed"
        checks.append(PerturbationCheck(*common, got, score, baseline, drop, max_drop, verdict))
    return RobustnessResult(question, answer, baseline, max_drop, tuple(checks))
