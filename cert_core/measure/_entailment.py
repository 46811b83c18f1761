"""Entailment: the probability that the reference entails the answer, from a local NLI model.

No NLI model ships with pytest-cert (none can be installed offline from a package registry), so
this component runs only when one is configured: a Hugging Face sequence-classification model
folder whose labels include "entailment". Without one, measurements say "not measured".
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ._semantic import hf_offline

__all__ = ["EntailmentError", "EntailmentScorer", "HuggingFaceNLI", "load_nli_model"]


class EntailmentError(RuntimeError):
    """The NLI model could not be loaded or does not classify entailment."""


class EntailmentScorer(Protocol):
    """Anything that scores whether premises entail hypotheses, each in [0, 1]."""

    name: str

    def entailment(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """``pairs`` are ``(premise, hypothesis)``; returns P(entailment) per pair."""
        ...


class HuggingFaceNLI:
    """A local ``AutoModelForSequenceClassification`` NLI model (needs ``pytest-cert[torch]``)."""

    def __init__(self, path: str | os.PathLike[str], *, batch_size: int = 16, max_tokens: int | None = None):
        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise EntailmentError(
                f"NLI model {str(path)!r}: no config.json there (a Hugging Face model folder)"
            )
        hf_offline()
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise EntailmentError(
                'an NLI model needs torch and transformers: pip install "pytest-cert[torch]"'
            ) from exc
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
            self.model = AutoModelForSequenceClassification.from_pretrained(str(folder))
        except Exception as exc:
            raise EntailmentError(
                f"NLI model {str(path)!r} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        labels = {int(i): str(label).lower() for i, label in self.model.config.id2label.items()}
        entails = [i for i, label in labels.items() if label.startswith("entail")]
        if len(entails) != 1:
            raise EntailmentError(
                f"NLI model {str(path)!r}: its labels {sorted(labels.values())} "
                "name no single 'entailment' class"
            )
        self.entail_index = entails[0]
        self.model.eval()
        self.torch = torch
        self.name = folder.name
        self.batch_size = batch_size
        window = getattr(self.tokenizer, "model_max_length", 512)
        self.max_tokens = min(max_tokens or 512, window if window < 100_000 else 512)
        self._lock = threading.Lock()

    def entailment(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start : start + self.batch_size]
            inputs: Any = self.tokenizer(
                [p for p, _ in batch],
                [h for _, h in batch],
                padding=True,
                truncation="only_first",
                max_length=self.max_tokens,
                return_tensors="pt",
            )
            with self._lock, self.torch.no_grad():
                logits = self.model(**inputs).logits
            probabilities = logits.softmax(dim=-1)[:, self.entail_index]
            scores.extend(float(p) for p in probabilities)
        return scores


def load_nli_model(path: str | os.PathLike[str], **options: Any) -> HuggingFaceNLI:
    """Load a local Hugging Face NLI model folder as an :class:`EntailmentScorer`."""
    return HuggingFaceNLI(path, **options)
