"""The core and the plugin stay light: no torch, no sentence-transformers, and no pytest in cert_core."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import cert_core

HEAVY = (
    "torch",
    "sentence_transformers",
    "transformers",
    "numpy",
    "onnx",
    "onnxruntime",
    "genai_prices",
    "pydantic",
)


def python_prints(code: str, *args: str) -> str:
    """What a fresh interpreter running ``code`` prints (nothing imported here leaks into it)."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize("module", ["cert_core", "cert_core.measure", "pytest_cert", "pytest_cert.plugin"])
def test_import_loads_no_heavy_dependency(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    assert python_prints(code) == ""


def test_plain_tracing_loads_no_heavy_dependency(tmp_path: object) -> None:
    code = (
        "import sys, cert_core\n"
        "f = cert_core.trace(log_path=sys.argv[1])(lambda x: x)\n"
        "f(1)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    assert python_prints(code, f"{tmp_path}/t.jsonl") == ""


def test_cert_core_never_imports_pytest() -> None:
    code = (
        "import sys, cert_core, cert_core.cli\n"
        "cert_core.price_call('openai', 'gpt-4o', {'input_tokens': 1})\n"
        "print('pytest' in sys.modules, '_pytest' in sys.modules)"
    )
    assert python_prints(code) == "False False"


def test_no_module_of_cert_core_imports_pytest() -> None:
    """Every module, imported (a lazy import inside a function is caught by the scan below)."""
    code = (
        "import importlib, pkgutil, sys, cert_core\n"
        "for info in pkgutil.walk_packages(cert_core.__path__, 'cert_core.'):\n"
        "    importlib.import_module(info.name)\n"
        "print('pytest' in sys.modules, '_pytest' in sys.modules)"
    )
    assert python_prints(code) == "False False"
    sources = Path(cert_core.__file__).parent.rglob("*.py")
    importing = [
        f"{path.name}:{node.lineno}"
        for path in sources
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if (
            isinstance(node, ast.Import)
            and any(a.name.split(".")[0] in ("pytest", "_pytest") for a in node.names)
        )
        or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("pytest", "_pytest"))
    ]
    assert importing == []


def test_public_api_is_pinned() -> None:
    # A change here is an API change: update CHANGELOG.md with it.
    assert sorted(cert_core.__all__) == sorted(
        [
            "CallError",
            "CallPrice",
            "CaptureMode",
            "ChainHead",
            "DEFAULT_LOG_PATH",
            "Finding",
            "FsyncPolicy",
            "InstrumentationStats",
            "GENESIS",
            "LEGACY_SCHEMA",
            "MAX_COUNT",
            "PriceConfigError",
            "PriceOverride",
            "RecordError",
            "Recorder",
            "RecordingStats",
            "SCHEMA",
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
    )
    for name in cert_core.__all__:
        assert hasattr(cert_core, name), name


def test_measure_api_is_pinned() -> None:
    import cert_core.measure

    assert sorted(cert_core.measure.__all__) == sorted(
        [
            "Calibration",
            "Component",
            "DEFAULT_MODEL",
            "DEFAULT_PRESET",
            "Embedder",
            "EntailmentError",
            "EntailmentScorer",
            "GroundingResult",
            "GroundingWeights",
            "HuggingFaceNLI",
            "METRIC",
            "Measurement",
            "Measurer",
            "ModelError",
            "ModelFiles",
            "Operating",
            "PRESETS",
            "Preset",
            "SemanticScorer",
            "auc",
            "calibrate",
            "configure_measure",
            "default_measurer",
            "ground",
            "load_embedder",
            "load_nli_model",
            "load_presets",
            "measure",
            "measure_many",
            "resolve_model",
            "resolve_preset",
        ]
    )
    for name in cert_core.measure.__all__:
        assert hasattr(cert_core.measure, name), name
