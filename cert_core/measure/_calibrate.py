"""Calibration: how well a score separates right from wrong answers, and where to put the threshold.

``calibrate(scores, labels)`` gives the ROC curve, its AUC, the threshold that maximises Youden's J
(sensitivity + specificity - 1) and the one that maximises accuracy, each with a bootstrap 95%
interval. Everything is deterministic: the bootstrap uses a fixed seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Calibration", "Operating", "auc", "calibrate"]


@dataclass(frozen=True)
class Operating:
    """One threshold and what it does: answers scoring at least ``threshold`` pass."""

    threshold: float
    accuracy: float
    true_positive_rate: float  # right answers that pass
    false_positive_rate: float  # wrong answers that pass
    interval: tuple[float, float]  # bootstrap 95% interval of the threshold


@dataclass(frozen=True)
class Calibration:
    n: int
    positives: int
    auc: float
    auc_interval: tuple[float, float]
    youden: Operating
    best_accuracy: Operating
    roc: list[tuple[float, float, float]] = field(repr=False)  # (threshold, fpr, tpr)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A plain-text summary."""
        lines = [
            f"pairs {self.n} (right {self.positives}, wrong {self.n - self.positives})",
            f"AUC {self.auc:.4f}  (95% CI {self.auc_interval[0]:.4f} - {self.auc_interval[1]:.4f})",
            f"{'threshold by':<16}{'threshold':>10}{'95% CI':>18}{'accuracy':>10}{'TPR':>8}{'FPR':>8}",
        ]
        for name, op in (("Youden's J", self.youden), ("accuracy", self.best_accuracy)):
            ci = f"{op.interval[0]:.3f} - {op.interval[1]:.3f}"
            lines.append(
                f"{name:<16}{op.threshold:>10.4f}{ci:>18}{op.accuracy:>10.4f}"
                f"{op.true_positive_rate:>8.3f}{op.false_positive_rate:>8.3f}"
            )
        return "\n".join(lines)


def _arrays(scores: Sequence[float], labels: Sequence[int | bool]) -> tuple[Any, Any]:
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"scores and labels must be two lists of one length; got {s.shape} and {y.shape}")
    if not np.isin(y, [0, 1]).all():
        raise ValueError("labels must be 0/1 (or False/True): 1 for a right answer, 0 for a wrong one")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers (leave unmeasured pairs out)")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("calibration needs both right (1) and wrong (0) answers")
    return s, y


def auc(scores: Sequence[float], labels: Sequence[int | bool]) -> float:
    """Area under the ROC curve (ties count half): P(score of a right answer > a wrong one's)."""
    return _auc(*_arrays(scores, labels))


def _auc(s: Any, y: Any) -> float:
    import numpy as np

    # Average ranks (ties share the mean of their positions), as the Mann-Whitney U statistic needs.
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    pos = int(y.sum())
    neg = len(y) - pos
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _roc(s: Any, y: Any) -> tuple[Any, Any, Any, Any]:
    """Per distinct score, highest first: threshold, FPR, TPR and accuracy of passing at it."""
    import numpy as np

    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    pos, neg = y.sum(), (~y).sum()
    accuracy = (tp + (neg - fp)) / len(y)
    return s[distinct], fp / neg, tp / pos, accuracy


def _best(fpr: Any, tpr: Any, accuracy: Any) -> tuple[int, int]:
    """Indices on the ROC of the Youden and the best-accuracy thresholds."""
    import numpy as np

    return int(np.argmax(tpr - fpr)), int(np.argmax(accuracy))


def calibrate(
    scores: Sequence[float], labels: Sequence[int | bool], *, bootstrap: int = 1000, seed: int = 0
) -> Calibration:
    """ROC, AUC and the best thresholds of ``scores`` for ``labels`` (1 = right answer)."""
    import numpy as np

    s, y = _arrays(scores, labels)
    thresholds, fpr, tpr, accuracy = _roc(s, y)
    youden, best = _best(fpr, tpr, accuracy)
    rng = np.random.default_rng(seed)
    aucs, youdens, bests = [], [], []
    for _ in range(bootstrap):
        pick = rng.integers(0, len(s), len(s))
        bs, by = s[pick], y[pick]
        if by.all() or not by.any():
            continue
        aucs.append(_auc(bs, by))
        b_thresholds, *rates = _roc(bs, by)
        j, a = _best(*rates)
        youdens.append(float(b_thresholds[j]))
        bests.append(float(b_thresholds[a]))

    def interval(values: list[float], point: float) -> tuple[float, float]:
        if not values:
            return (point, point)
        low, high = np.percentile(values, [2.5, 97.5])
        return (round(float(low), 6), round(float(high), 6))

    def operating(i: int, resampled: list[float]) -> Operating:
        threshold = float(thresholds[i])
        rates = (float(accuracy[i]), float(tpr[i]), float(fpr[i]))
        return Operating(threshold, *rates, interval(resampled, threshold))

    area = _auc(s, y)
    return Calibration(
        n=len(s),
        positives=int(y.sum()),
        auc=round(area, 6),
        auc_interval=interval(aucs, area),
        youden=operating(youden, youdens),
        best_accuracy=operating(best, bests),
        roc=[(float(t), float(f), float(p)) for t, f, p in zip(thresholds, fpr, tpr, strict=True)],
    )
