"""Accuracy measurement: how well a reference (retrieved context or gold answer) supports an answer.

``measure(answer, reference)`` gives a :class:`Measurement`: one confidence in [0, 1], the weighted
mean of the components that ran (semantic similarity, term grounding, entailment where an NLI
model is configured), explained component by component. Importing this package loads no model;
the semantic model loads on the first measurement.
"""

from ._calibrate import Calibration, Operating, auc, calibrate
from ._entailment import EntailmentError, EntailmentScorer, HuggingFaceNLI, load_nli_model
from ._grounding import GroundingResult, GroundingWeights, ground
from ._measure import (
    METRIC,
    Component,
    Measurement,
    Measurer,
    configure_measure,
    default_measurer,
    measure,
    measure_many,
    resolve_preset,
)
from ._presets import DEFAULT_PRESET, PRESETS, Preset, load_presets
from ._semantic import (
    DEFAULT_MODEL,
    Embedder,
    ModelError,
    ModelFiles,
    SemanticScorer,
    load_embedder,
    resolve_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRESET",
    "METRIC",
    "PRESETS",
    "Calibration",
    "Component",
    "Embedder",
    "EntailmentError",
    "EntailmentScorer",
    "GroundingResult",
    "GroundingWeights",
    "HuggingFaceNLI",
    "Measurement",
    "Measurer",
    "ModelError",
    "ModelFiles",
    "Operating",
    "Preset",
    "SemanticScorer",
    "auc",
    "calibrate",
    "configure_measure",
    "default_measurer",
    "ground",
    "load_embedder",
    "load_nli_model",
    "load_presets",
    "measure",
    "measure_many",
    "resolve_model",
    "resolve_preset",
]
