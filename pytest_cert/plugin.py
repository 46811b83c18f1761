"""pytest entry point (``pytest11: cert``).

For now the plugin only declares its option group; it reads nothing, writes nothing and loads no
model unless a cert option, marker or fixture is used (the gate arrives with the plugin issue).
"""

from __future__ import annotations

import pytest

GROUP = "cert"
GROUP_DESCRIPTION = "pytest-cert: LLM accuracy, cost and evidence gate"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup(GROUP, GROUP_DESCRIPTION)
