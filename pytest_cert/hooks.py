"""pytest-cert's own hook specifications (added in ``pytest_addhooks``).

Implement them in a ``conftest.py`` or a plugin, like any pytest hook. Examples are in the
README ("Extending the gate").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cert_core.measure import Component


@pytest.hookspec
def pytest_cert_components(config: pytest.Config) -> list[Component] | None:
    """Return extra measurement components (custom scorers) for ``cert_trace.expect``.

    Each is an object with ``name`` (an identifier), ``weight`` (>= 0) and
    ``score(answer, reference) -> float | None``; its score joins the weighted mean beside the
    preset's components and appears in every measurement and failure message. Called once, on the
    first measurement of the session (in each xdist worker).

    .. code-block:: python

        # conftest.py
        class MentionsSource:
            name, weight = "cites_source", 0.5

            def score(self, answer, reference):
                return 1.0 if "[source]" in answer else 0.0

        def pytest_cert_components(config):
            return [MentionsSource()]
    """


@pytest.hookspec
def pytest_cert_test_result(item: pytest.Item, result: dict[str, Any]) -> None:
    """Add fields to one test's result before it is stored (and sent to the xdist controller).

    Put your fields under ``result["extra"]`` (a dict of JSON values); they are kept in
    ``results.json``. Called in the process that ran the test, after its teardown.

    .. code-block:: python

        def pytest_cert_test_result(item, result):
            result["extra"]["owner"] = item.get_closest_marker("owner").args[0]
    """


@pytest.hookspec
def pytest_cert_results(config: pytest.Config, results: dict[str, Any]) -> None:
    """Add session-level fields to ``results.json`` before the evidence folder is written (on the
    controller only). Put them under ``results["extra"]``."""


@pytest.hookspec
def pytest_cert_summary(config: pytest.Config, results: dict[str, Any]) -> tuple[str, str] | None:
    """Return ``(title, markdown)`` to add a section to ``summary.md`` (and the GitHub job
    summary); the Markdown is also printed in the terminal summary. Controller only.

    .. code-block:: python

        def pytest_cert_summary(config, results):
            slow = [t["nodeid"] for t in results["tests"] if (t["latency_ms"] or 0) > 2000]
            return "Slow tests", "\\n".join(f"- `{n}`" for n in slow) or "none"
    """
