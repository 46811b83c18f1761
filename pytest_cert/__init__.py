"""pytest-cert: the pytest plugin that turns the LLM calls of a test suite into gated evidence.

The plugin itself is :mod:`pytest_cert.plugin` (entry point ``pytest11: cert``); the library it
adapts is :mod:`cert_core`.
"""

from __future__ import annotations

__all__: list[str] = []
