"""cert_core: trace records, tamper-evident trace files, ``@trace``, pricing and the ``cert`` CLI.

Everything that is not pytest lives here; this package never imports pytest, torch or
sentence-transformers (heavy parts load lazily behind extras).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from ._pricing import (
    CallPrice,
    PriceConfigError,
    PriceOverride,
    configure_prices,
    load_price_overrides,
    price_call,
)
from ._recording import (
    DEFAULT_LOG_PATH,
    Recorder,
    RecordingStats,
    Span,
    add_recorder,
    configure,
    current_span,
    flush_records,
    record_call,
    recording,
    recording_stats,
    remove_recorder,
    start_span,
    trace,
)
from ._records import (
    LEGACY_SCHEMA,
    MAX_COUNT,
    SCHEMA,
    CallError,
    RecordError,
    TraceRecord,
    Usage,
    format_timestamp,
    from_legacy,
    json_fallback,
    new_span_id,
    new_trace_id,
    parse_timestamp,
)
from ._store import (
    GENESIS,
    FsyncPolicy,
    TraceReadError,
    TraceSourceError,
    TraceWriter,
    WriterStats,
    read_traces,
    trace_files,
)
from ._verify import ChainHead, Finding, VerifyReport, verify_traces
from .connectors import (
    CaptureMode,
    InstrumentationStats,
    instrument,
    instrumentation_stats,
    instrumented_providers,
    uninstrument,
)

try:
    __version__ = _version("pytest-cert")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_LOG_PATH",
    "GENESIS",
    "LEGACY_SCHEMA",
    "MAX_COUNT",
    "SCHEMA",
    "CallError",
    "CallPrice",
    "CaptureMode",
    "ChainHead",
    "Finding",
    "FsyncPolicy",
    "InstrumentationStats",
    "PriceConfigError",
    "PriceOverride",
    "RecordError",
    "Recorder",
    "RecordingStats",
    "Span",
    "TraceReadError",
    "TraceRecord",
    "TraceSourceError",
    "TraceWriter",
    "Usage",
    "VerifyReport",
    "WriterStats",
    "__version__",
    "add_recorder",
    "configure",
    "configure_prices",
    "current_span",
    "flush_records",
    "format_timestamp",
    "from_legacy",
    "instrument",
    "instrumentation_stats",
    "instrumented_providers",
    "json_fallback",
    "load_price_overrides",
    "new_span_id",
    "new_trace_id",
    "parse_timestamp",
    "price_call",
    "read_traces",
    "record_call",
    "recording",
    "recording_stats",
    "remove_recorder",
    "start_span",
    "trace",
    "trace_files",
    "uninstrument",
    "verify_traces",
]
