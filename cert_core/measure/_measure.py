"""``measure()``: one confidence score from semantic, grounding, claims and entailment components.

The score is a weighted mean of the components that ran. A component that could not run (no model
installed, nothing checkable in the answer) is ``None`` and named in ``not_measured`` with the
reason; it is left out of the mean, never replaced by a made-up neutral number. When no component
ran, there is no confidence and no verdict (``passed`` is ``None``).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import msgspec

from ._entailment import EntailmentScorer
from ._grounding import GroundingWeights, claims_score, ground
from ._presets import DEFAULT_PRESET, PRESETS, Preset
from ._semantic import DEFAULT_MODEL, Embedder, ModelError, SemanticScorer, load_embedder

__all__ = [
    "METRIC",
    "Component",
    "Measurement",
    "Measurer",
    "configure_measure",
    "default_measurer",
    "measure",
    "measure_many",
]

from .._metric import COMPONENTS, METRIC

# Texts beyond this are refused rather than embedded for minutes: a reference is a retrieved
# context or a gold answer, not a corpus.
MAX_CHARS = 1_000_000


@runtime_checkable
class Component(Protocol):
    """An extra measurement component (a custom scorer) that joins the weighted mean.

    ``score`` returns a value in [0, 1], or ``None`` when it cannot judge the pair (then the
    component is "not measured" for that pair and left out of the mean); an exception is reported
    as "not measured" with its message, never scored.
    """

    name: str
    weight: float

    def score(self, answer: str, reference: str) -> float | None: ...


def _check_components(components: Sequence[Component]) -> None:
    seen: set[str] = set()
    for c in components:
        name = getattr(c, "name", None)
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"component {c!r}: name must be an identifier, got {name!r}")
        if name in COMPONENTS or name in seen:
            raise ValueError(f"component name {name!r} is already taken")
        seen.add(name)
        weight = getattr(c, "weight", None)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight >= 0:
            raise ValueError(f"component {name!r}: weight must be a number >= 0, got {weight!r}")
        if not callable(getattr(c, "score", None)):
            raise ValueError(f"component {name!r} has no score(answer, reference) method")


class Measurement(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The accuracy of one answer against its reference (serialises into ``evaluation``)."""

    confidence: float | None
    threshold: float
    passed: bool | None
    semantic: float | None = None
    grounding: float | None = None
    #: ``0.5 ** (unsupported terms / 2)``: how many terms the reference does not support.
    claims: float | None = None
    entailment: float | None = None
    #: Scores of extra components (custom scorers), by name; ``None`` where not measured.
    extra: dict[str, float | None] = msgspec.field(default_factory=dict)
    weights: dict[str, float] = msgspec.field(default_factory=dict)
    unsupported_terms: list[str] = msgspec.field(default_factory=list)
    not_measured: dict[str, str] = msgspec.field(default_factory=dict)
    flags: list[str] = msgspec.field(default_factory=list)
    explanation: str = ""
    preset: str = DEFAULT_PRESET
    metric: str = METRIC

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for a trace record's ``evaluation`` field."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


def _check_text(value: object, argument: str, index: int | None = None) -> None:
    where = argument if index is None else f"{argument} of pair {index}"
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{where} is empty")
    if len(value) > MAX_CHARS:
        raise ValueError(f"{where} is {len(value):,} characters; at most {MAX_CHARS:,} can be measured")


def _explain(
    m: dict[str, Any],
    weights: dict[str, float],
    confidence: float | None,
    threshold: float,
    names: Sequence[str] = COMPONENTS,
) -> str:
    if confidence is None:
        return "not measured: " + "; ".join(f"{k}: {v}" for k, v in m["not_measured"].items())
    parts = [f"{name} {m[name]:.2f} (weight {weights[name]:.2g})" for name in names if name in weights]
    # Computed but given no weight by the preset: shown, not counted.
    parts += [
        f"{name} {m[name]:.2f} (not weighted)"
        for name in names
        if name not in weights and m.get(name) is not None
    ]
    verdict = ">=" if confidence >= threshold else "<"
    line = f"confidence {confidence:.2f} {verdict} threshold {threshold:.2f}: " + ", ".join(parts)
    if m["unsupported_terms"]:
        shown = ", ".join(repr(t) for t in m["unsupported_terms"][:8])
        more = len(m["unsupported_terms"]) - 8
        line += f"; unsupported: {shown}" + (f" and {more} more" if more > 0 else "")
    if m["not_measured"]:
        line += "; not measured: " + ", ".join(m["not_measured"])
    return line


@dataclass
class Measurer:
    """Components and caches shared by every measurement of a session.

    ``semantic_model``: a packaged model name or a model folder; ``semantic_backend``: see
    :func:`load_embedder`; ``entailment``: an :class:`EntailmentScorer` (or ``None``: not measured).
    The embedding model loads on first use, and only for a preset that weights the semantic score:
    embedding is nearly all of a measurement's time, so a score that would not count is "not
    measured" (with that reason) unless ``semantic_unweighted=True`` asks for it as evidence.
    """

    semantic_model: str | os.PathLike[str] = DEFAULT_MODEL
    semantic_backend: str = "auto"
    semantic_sha256: str | None = None
    entailment: EntailmentScorer | None = None
    semantic_enabled: bool = True
    semantic_unweighted: bool = False
    _semantic: SemanticScorer | None = field(default=None, init=False, repr=False)
    _semantic_error: str | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def semantic_scorer(self) -> SemanticScorer | None:
        """The semantic scorer, loaded once; ``None`` (with :attr:`semantic_error`) if it cannot load."""
        if not self.semantic_enabled:
            return None
        with self._lock:
            if self._semantic is None and self._semantic_error is None:
                try:
                    embedder: Embedder = load_embedder(
                        self.semantic_model, backend=self.semantic_backend, sha256=self.semantic_sha256
                    )
                    self._semantic = SemanticScorer(embedder)
                except ModelError as exc:
                    self._semantic_error = str(exc)
            return self._semantic

    @property
    def semantic_error(self) -> str | None:
        if not self.semantic_enabled:
            return "switched off in configuration"
        return self._semantic_error

    def measure_many(
        self,
        pairs: Iterable[tuple[str, str]],
        *,
        threshold: float | None = None,
        preset: str | Preset | None = None,
        components: Sequence[Component] = (),
    ) -> list[Measurement]:
        """Measure ``(answer, reference)`` pairs in one batch (shared references embedded once).

        ``components``: extra :class:`Component` scorers, weighted into the confidence beside
        the preset's components."""
        pairs = list(pairs)
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"pair {i} must be (answer, reference), got {type(pair).__name__}")
            _check_text(pair[0], "answer", i)
            _check_text(pair[1], "reference", i)
        return self._measure(pairs, threshold=threshold, preset=preset, components=components)

    def measure(
        self,
        answer: str,
        reference: str,
        *,
        threshold: float | None = None,
        preset: str | Preset | None = None,
        components: Sequence[Component] = (),
    ) -> Measurement:
        _check_text(answer, "answer")
        _check_text(reference, "reference")
        return self._measure(
            [(answer, reference)], threshold=threshold, preset=preset, components=components
        )[0]

    def _measure(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        threshold: float | None,
        preset: str | Preset | None,
        components: Sequence[Component] = (),
    ) -> list[Measurement]:
        chosen = resolve_preset(preset)
        _check_components(components)
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold must be a number between 0 and 1, got {threshold!r}")
        limit = float(chosen.threshold if threshold is None else threshold)
        rows: list[dict[str, Any]] = [
            {"unsupported_terms": [], "not_measured": {}, "flags": []} for _ in pairs
        ]
        if not pairs:
            return []
        # Grounding and claims always run (they are cheap), weighted or not, so the evidence shows
        # them; the semantic model only when its score counts or is asked for; entailment when an
        # NLI model is configured. Weights only decide what enters the confidence.
        all_weights = {**chosen.weights, **{c.name: float(c.weight) for c in components}}
        if all_weights.get("semantic", 0.0) > 0 or self.semantic_unweighted:
            self._run_semantic(pairs, rows)
        else:
            why = (
                f"not weighted by preset {chosen.name!r}, so not computed "
                "(Measurer(semantic_unweighted=True) computes it anyway)"
            )
            for row in rows:
                row["not_measured"]["semantic"] = why
        self._run_grounding(pairs, rows, chosen.grounding)
        self._run_entailment(pairs, rows)
        for component in components:
            _run_component(component, pairs, rows)
        names = (*COMPONENTS, *(c.name for c in components))
        results = []
        for row in rows:
            used = {n: w for n, w in all_weights.items() if w > 0 and row.get(n) is not None}
            total = sum(used.values())
            weights = {n: round(w / total, 6) for n, w in used.items()}
            confidence = None
            if total > 0:
                confidence = round(sum(row[n] * w for n, w in used.items()) / total, 6)
            passed = None if confidence is None else confidence >= limit
            results.append(
                Measurement(
                    confidence=confidence,
                    threshold=limit,
                    passed=passed,
                    semantic=row.get("semantic"),
                    grounding=row.get("grounding"),
                    claims=row.get("claims"),
                    entailment=row.get("entailment"),
                    extra={c.name: row.get(c.name) for c in components},
                    weights=weights,
                    unsupported_terms=row["unsupported_terms"],
                    not_measured=row["not_measured"],
                    flags=row["flags"],
                    explanation=_explain(row, weights, confidence, limit, names),
                    preset=chosen.name,
                )
            )
        return results

    def _run_semantic(self, pairs: Sequence[tuple[str, str]], rows: list[dict[str, Any]]) -> None:
        scorer = self.semantic_scorer()
        if scorer is None:
            for row in rows:
                row["not_measured"]["semantic"] = self.semantic_error or "model unavailable"
            return
        for row, result in zip(rows, scorer.score_many(pairs), strict=True):
            row["semantic"] = round(result.score, 6)
            row["flags"].extend(result.flags)

    def _run_grounding(
        self, pairs: Sequence[tuple[str, str]], rows: list[dict[str, Any]], weights: GroundingWeights
    ) -> None:
        for (answer, reference), row in zip(pairs, rows, strict=True):
            result = ground(answer, reference, weights)
            if result.score is None:  # claims too: both count the answer's terms
                why = "the answer states no term that a reference could support"
                row["not_measured"]["grounding"] = row["not_measured"]["claims"] = why
                continue
            row["grounding"] = round(result.score, 6)
            row["claims"] = round(claims_score(result.unsupported_weight), 6)
            row["unsupported_terms"].extend([*result.unsupported, *result.negation_mismatches])

    def _run_entailment(self, pairs: Sequence[tuple[str, str]], rows: list[dict[str, Any]]) -> None:
        scorer = self.entailment
        if scorer is None:
            for row in rows:
                row["not_measured"]["entailment"] = "no NLI model configured"
            return
        semantic = self.semantic_scorer()
        premises: list[tuple[int, str, str]] = []
        for i, (answer, reference) in enumerate(pairs):
            # A long reference is checked passage by passage: NLI models truncate what exceeds
            # their window, and the answer is entailed if some passage entails it.
            passages = semantic.passages(reference) if semantic is not None else (reference,)
            premises.extend((i, passage, answer) for passage in passages)
        try:
            scores = list(scorer.entailment([(p, h) for _, p, h in premises]))
            if len(scores) != len(premises):
                raise ValueError(f"{scorer.name} returned {len(scores)} scores for {len(premises)} pairs")
        except Exception as exc:  # a broken plug-in is reported, not scored
            for row in rows:
                row["not_measured"]["entailment"] = f"{type(exc).__name__}: {exc}"
            return
        best: dict[int, float] = {}
        for (i, _, _), score in zip(premises, scores, strict=True):
            best[i] = max(best.get(i, 0.0), float(score))
        for i, row in enumerate(rows):
            row["entailment"] = round(min(max(best[i], 0.0), 1.0), 6)


def _run_component(
    component: Component, pairs: Sequence[tuple[str, str]], rows: list[dict[str, Any]]
) -> None:
    for (answer, reference), row in zip(pairs, rows, strict=True):
        try:
            value = component.score(answer, reference)
        except Exception as exc:  # a broken custom scorer is reported, never scored
            row["not_measured"][component.name] = f"{type(exc).__name__}: {exc}"
            continue
        if value is None:
            row["not_measured"][component.name] = "the scorer returned no score"
        elif (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or math.isnan(value)
            or not 0.0 <= value <= 1.0
        ):
            row["not_measured"][component.name] = f"the scorer returned {value!r}, not a number in [0, 1]"
        else:
            row[component.name] = round(float(value), 6)


def resolve_preset(preset: str | Preset | None) -> Preset:
    """A preset by name (``None``: the default), or the given :class:`Preset` itself."""
    if isinstance(preset, Preset):
        return preset
    name = preset or DEFAULT_PRESET
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


_default: Measurer | None = None
_default_lock = threading.Lock()


def configure_measure(**options: Any) -> Measurer:
    """Replace the process-wide :class:`Measurer` that :func:`measure` uses."""
    global _default
    with _default_lock:
        _default = Measurer(**options)
        return _default


def default_measurer() -> Measurer:
    """The process-wide :class:`Measurer` (created on first use) that :func:`measure` uses."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Measurer()
        return _default


def measure(
    answer: str, reference: str, *, threshold: float | None = None, preset: str | Preset | None = None
) -> Measurement:
    """Measure how well ``reference`` (retrieved context or gold answer) supports ``answer``."""
    return default_measurer().measure(answer, reference, threshold=threshold, preset=preset)


def measure_many(
    pairs: Iterable[tuple[str, str]], *, threshold: float | None = None, preset: str | Preset | None = None
) -> list[Measurement]:
    """Measure many ``(answer, reference)`` pairs in one batch."""
    return default_measurer().measure_many(pairs, threshold=threshold, preset=preset)
