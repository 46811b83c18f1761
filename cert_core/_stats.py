"""Small statistics shared by the gate, the report and the analysis: the Wilson score interval."""

from __future__ import annotations

import math

__all__ = ["wilson_interval", "z_quantile"]


def z_quantile(confidence: float) -> float:
    """The normal quantile of a two-sided interval at ``confidence`` (1.96 at 0.95)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson_interval(passed: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval of a pass rate ``passed / n`` at ``confidence``."""
    if n <= 0:
        raise ValueError("the Wilson interval needs at least one run")
    if not 0 <= passed <= n:
        raise ValueError(f"passed must be between 0 and n={n}, got {passed}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    z = z_quantile(confidence)
    p = passed / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
