"""Fixtures of the example suite: a RagApp per provider, on the official SDK clients.

The clients are the SDKs' defaults (API key and base URL from the environment, their own HTTP
transport). pytest-cert's cassettes sit in that transport: with ``cert_record_mode = none`` every
call is answered from ``tests/cassettes/`` and nothing leaves the machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rag_app import Provider, RagApp

# Replays need no key, but the SDK clients refuse to start without one. A real key set in the
# environment (to re-record against the real APIs) is left alone.
for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
    os.environ.setdefault(variable, "replay-only-not-a-key")


@pytest.fixture
def app_for() -> Iterator[Callable[..., RagApp]]:
    """``app_for("openai")`` / ``app_for("anthropic")``: the service on that provider; keyword
    arguments go to :class:`RagApp` (``app_for("openai", logprobs=True)``)."""
    apps: list[RagApp] = []

    def make(provider: Provider, **options: Any) -> RagApp:
        apps.append(RagApp(provider, **options))
        return apps[-1]

    yield make
    for app in apps:
        app.close()
