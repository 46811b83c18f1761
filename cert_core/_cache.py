"""The folder where pytest-cert keeps what only saves time (prices, compiled report templates)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path | None:
    """``$CERT_CACHE_DIR``, else ``$XDG_CACHE_HOME/pytest-cert``, else ``~/.cache/pytest-cert``;
    ``None`` when ``CERT_CACHE_DIR=off``. Whatever is kept there can be deleted at any time."""
    base = os.environ.get("CERT_CACHE_DIR")
    if base == "off":
        return None
    root = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "pytest-cert"
