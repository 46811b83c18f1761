"""Northwind Solar's retrieval-augmented question-answering service (an example application)."""

from __future__ import annotations

from rag_app.app import (
    DEFAULT_MODELS,
    LINK_DOMAINS,
    UNAVAILABLE,
    WITHHELD,
    Answer,
    Passage,
    Provider,
    RagApp,
    guard,
    load_passages,
    normalise,
    retrieve,
    system_prompt,
)

__all__ = [
    "DEFAULT_MODELS",
    "LINK_DOMAINS",
    "UNAVAILABLE",
    "WITHHELD",
    "Answer",
    "Passage",
    "Provider",
    "RagApp",
    "guard",
    "load_passages",
    "normalise",
    "retrieve",
    "system_prompt",
]
