"""pytest-cert: the pytest plugin that turns the LLM calls of a test suite into gated evidence.

The plugin itself is :mod:`pytest_cert.plugin` (entry point ``pytest11: cert``); the library it
adapts is :mod:`cert_core`. Importing this package imports neither ``cert_core`` nor any SDK.
"""

from __future__ import annotations

from .fixtures import CertTrace
from .gate import (
    CertAccuracyError,
    CertFailure,
    CertGateError,
    CertMarkerError,
    CertPiiError,
    CertRobustnessError,
    CertSecurityError,
    CertStatisticalError,
    CertWarning,
    StatisticalResult,
    wilson_interval,
)

__all__ = [
    "CertAccuracyError",
    "CertFailure",
    "CertGateError",
    "CertMarkerError",
    "CertPiiError",
    "CertRobustnessError",
    "CertSecurityError",
    "CertStatisticalError",
    "CertTrace",
    "CertWarning",
    "StatisticalResult",
    "wilson_interval",
]
