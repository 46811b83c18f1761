"""One-line opt-in: ``import cert_core.auto`` instruments every installed LLM SDK.

The equivalent of ``cert_core.instrument()``, for the original CERT framework's
``from cert.integrations.auto import *`` habit.
"""

from __future__ import annotations

from .connectors import instrument

__all__: list[str] = []

instrument()
