"""Fixtures shared by the cert_core tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import cert_core


@pytest.fixture
def instrumented() -> Iterator[None]:
    """The SDKs patched for the test, then restored (and the capture mode reset)."""
    cert_core.instrument()
    try:
        yield
    finally:
        cert_core.uninstrument()
        cert_core.instrument(capture="full")  # reset the capture mode for the next test
        cert_core.uninstrument()
