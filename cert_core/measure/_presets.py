"""Presets: component weights and a threshold, from calibration on public labelled data.

The numbers live in ``presets.json`` beside this module, written by ``bench/validate.py
--write-presets`` from HaluEval rows [0, 5000) of each subset, with the measurements they came
from. Domain presets differ by operating point on the same ROC curve (a stricter threshold where
a wrong answer costs more), not by invented weights: no labelled financial, legal or medical data
can be obtained here, and the README says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

from .._metric import COMPONENTS
from ._grounding import GroundingWeights

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "load_presets"]

DEFAULT_PRESET = "general"


@dataclass(frozen=True)
class Preset:
    """Weights of the components and the pass threshold of their weighted mean."""

    name: str
    threshold: float
    weights: dict[str, float]
    grounding: GroundingWeights = field(default_factory=GroundingWeights)
    description: str = ""
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"preset {self.name!r}: threshold {self.threshold} is not in [0, 1]")
        unknown = set(self.weights) - set(COMPONENTS)
        if unknown or any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise ValueError(
                f"preset {self.name!r}: weights {self.weights} must be non-negative, known components"
            )


def load_presets(text: str | None = None) -> dict[str, Preset]:
    """Read presets from JSON (the packaged ``presets.json`` by default)."""
    data = json.loads(
        text if text is not None else files(__package__).joinpath("presets.json").read_text("utf-8")
    )
    presets = {}
    for name, spec in data["presets"].items():
        presets[name] = Preset(
            name=name,
            threshold=float(spec["threshold"]),
            weights={k: float(v) for k, v in spec["weights"].items()},
            grounding=GroundingWeights(**spec.get("grounding", {})),
            description=spec.get("description", ""),
            source=spec.get("source", {}),
        )
    if DEFAULT_PRESET not in presets:
        raise ValueError(f"presets must define {DEFAULT_PRESET!r}")
    return presets


PRESETS = load_presets()
