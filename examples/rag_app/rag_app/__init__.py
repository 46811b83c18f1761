"""Northwind Solar's retrieval-augmented question-answering service (an example application)."""

from __future__ import annotations

from rag_app.app import (
    DEFAULT_MODELS,
    Answer,
    Passage,
    Provider,
    RagApp,
    load_passages,
    retrieve,
    system_prompt,
)

__all__ = [
    "DEFAULT_MODELS",
    "Answer",
    "Passage",
    "Provider",
    "RagApp",
    "load_passages",
    "retrieve",
    "system_prompt",
]
