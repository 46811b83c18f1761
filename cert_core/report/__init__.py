"""The evidence report (Article 15 / Annex IV): Markdown and one self-contained HTML file.

:func:`build_report` gathers the content (test results, the models the tests called, production
traces, the person-supplied ``cert-system.yaml``, the previous release); :func:`render_markdown`
and :func:`render_html` turn it into documents (Jinja2 templates; inline CSS and SVG, no script
and no external asset); :func:`write_report` writes ``report.md``, ``report.html`` and the data
they were made from, ``report.json``. The report documents measurements; it never calls the
system compliant and signs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .._evidence import format_usd
from ._data import REPORT_SCHEMA, ComponentTally, build_report, load_evidence, tested_components
from ._system import SYSTEM_TEMPLATE, SystemFileError, load_system

__all__ = [
    "FORMATS",
    "REPORT_FILES",
    "REPORT_SCHEMA",
    "SYSTEM_TEMPLATE",
    "ComponentTally",
    "ReportError",
    "SystemFileError",
    "build_report",
    "load_evidence",
    "load_system",
    "render_html",
    "render_markdown",
    "render_pdf",
    "tested_components",
    "write_report",
]

REPORT_FILES = ("report.md", "report.html", "report.json")


def _usd(value: float | None) -> str:
    return format_usd(value, cents_from=100, trim=False)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _template_cache() -> Any:
    """Compiled templates kept in the cache folder: compiling them costs more than rendering
    (about 0.3 s a session). A cache that cannot be read or written is ignored."""
    import jinja2

    from .._cache import cache_dir

    root = cache_dir()
    if root is None:
        return None
    folder = root / "templates"

    class Cache(jinja2.FileSystemBytecodeCache):
        def load_bytecode(self, bucket: Any) -> None:
            try:
                super().load_bytecode(bucket)
            except OSError:
                pass

        def dump_bytecode(self, bucket: Any) -> None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                super().dump_bytecode(bucket)
            except OSError:
                pass

    return Cache(str(folder))


def _environment(html: bool) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cert_core.report", "templates"),
        bytecode_cache=_template_cache(),
        autoescape=html,
        trim_blocks=not html,
        keep_trailing_newline=True,
    )
    env.filters["usd"] = _usd
    env.filters["pct"] = _pct
    return env


# The per-test table has one row per test, thousands in a large suite: its cells are formatted
# here, once, rather than through a dozen template filters per row (which made the report the
# largest part of what the plugin costs a big suite).


def _f3(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cells(t: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    """Confidence, threshold, runs, cost and latency of one test row, as displayed."""
    stat = t["statistical"]
    runs = (
        f"{stat['passed']}/{stat['n']} [{stat['lower']:.3f}, {stat['upper']:.3f}] vs {stat['min_pass_rate']}"
        if stat
        else "-"
    )
    cost = _usd(t["cost_usd"]) + (" (recorded)" if t["replayed_calls"] else "")
    latency = "-" if t["latency_ms"] is None else f"{t['latency_ms']:.0f} ms"
    return _f3(t["confidence"]), _f3(t["threshold"]), runs, cost, latency


def _test_rows_md(tests: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for t in tests:
        confidence, threshold, runs, cost, latency = _cells(t)
        lines.append(
            f"| `{t['nodeid']}` | {t['outcome']} | {t['verdict']} | {confidence} | {threshold} | {runs} "
            f"| {t['calls']} | {cost} | {latency} |\n"
        )
    return "".join(lines)


def _test_rows_html(tests: Sequence[Mapping[str, Any]]) -> Any:
    from markupsafe import Markup, escape

    rows = []
    for t in tests:
        # Only the test id (and a violation's text) can hold markup: the other cells are numbers
        # and fixed words.
        confidence, threshold, runs, cost, latency = _cells(t)
        nodeid = escape(t["nodeid"])
        fail = ' class="fail"' if t["verdict"] == "failed" else ""
        rows.append(
            f'<tr data-nodeid="{nodeid}"><td><code>{nodeid}</code></td>'
            f'<td data-field="outcome">{t["outcome"]}</td>'
            f'<td data-field="verdict"{fail}>{t["verdict"]}</td>'
            f'<td class="num" data-field="confidence">{confidence}</td>'
            f'<td class="num" data-field="threshold">{threshold}</td>'
            f'<td data-field="statistical">{runs}</td>'
            f'<td class="num" data-field="calls">{t["calls"]}</td>'
            f'<td class="num" data-field="cost">{cost}</td>'
            f'<td class="num">{latency}</td></tr>\n'
        )
        if t["violations"]:
            why = "; ".join(t["violations"])
            if t["unsupported_terms"]:
                why += f" (unsupported terms: {', '.join(t['unsupported_terms'])})"
            rows.append(f'<tr><td colspan="9" class="fail">{escape(why)}</td></tr>\n')
    return Markup("".join(rows))


def render_markdown(data: Mapping[str, Any]) -> str:
    rows = _test_rows_md(data["validation"]["tests"])
    return str(_environment(False).get_template("report.md.j2").render(**data, test_rows=rows))


COST_BARS = 30  # a bar per test up to this many tests; beyond, the costliest (the table lists all)


def _cost_bars(tests: Sequence[Mapping[str, Any]]) -> str:
    from ._svg import bars

    title = "Cost per test (live or as recorded)"
    total = len(tests)
    if total > COST_BARS:
        tests = sorted(tests, key=lambda t: -t["cost_usd"])[:COST_BARS]
        title = f"Cost per test (live or as recorded): the {COST_BARS} costliest of {total:,} tests"
    return bars([t["nodeid"] for t in tests], [t["cost_usd"] for t in tests], title=title)


def _charts(data: Mapping[str, Any]) -> dict[str, str]:
    from ._svg import histogram, series

    validation = data["validation"]
    thresholds = [t["threshold"] for t in validation["tests"] if t["threshold"] is not None]
    tests = validation["tests"]
    charts = {
        "scores": histogram(
            validation["confidences"], thresholds, title="Confidence of every measured answer"
        ),
        "cost": _cost_bars(tests),
        "perplexity": "",
        "volume": "",
        "daily_cost": "",
        "accuracy": "",
    }
    uncertainty = (data.get("robustness") or {}).get("uncertainty") or {}
    if uncertainty.get("perplexity"):
        spread = uncertainty["perplexity"]
        charts["perplexity"] = histogram(
            uncertainty["values"],
            [],
            title="Perplexity of the calls that returned token logprobs",
            low=1.0,
            high=max(2.0, spread["max"]),
        )
    monitoring = data.get("monitoring")
    if monitoring and monitoring["daily"]:
        days = [d["day"] for d in monitoring["daily"]]
        charts["volume"] = series(
            days, [d["calls"] for d in monitoring["daily"]], title="Production calls per day"
        )
        charts["daily_cost"] = series(
            days,
            [d["cost_usd"] for d in monitoring["daily"]],
            title="Production cost per day (USD)",
            fmt="${:,.2f}",
        )
        if any(d["evaluated"] for d in monitoring["daily"]):
            charts["accuracy"] = series(
                days,
                [d["mean_confidence"] for d in monitoring["daily"]],
                title="Mean confidence of evaluated production calls",
                fmt="{:.3f}",
            )
    return charts


def render_html(data: Mapping[str, Any]) -> str:
    rows = _test_rows_html(data["validation"]["tests"])
    template = _environment(True).get_template("report.html.j2")
    return str(template.render(**data, charts=_charts(data), test_rows=rows))


class ReportError(RuntimeError):
    """A report format that cannot be produced here (e.g. PDF without its extra)."""


def render_pdf(data: Mapping[str, Any]) -> bytes:
    """The HTML report as PDF, through WeasyPrint (``pip install "pytest-cert[pdf]"``)."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: WeasyPrint installed, the Pango library not
        raise ReportError(
            'a PDF report needs the pdf extra: pip install "pytest-cert[pdf]" (WeasyPrint, which '
            f"also needs the Pango library of your system): {type(exc).__name__}: {exc}"
        ) from exc
    pdf: bytes = weasyprint.HTML(string=render_html(data)).write_pdf()
    return pdf


FORMATS = ("md", "html", "pdf")


def write_report(
    folder: str | os.PathLike[str], data: Mapping[str, Any], formats: Sequence[str] = ("md", "html")
) -> list[Path]:
    """Write ``report.json`` and the requested formats into ``folder``; return the paths written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    renders: dict[str, tuple[str, Any]] = {
        "md": ("report.md", render_markdown),
        "html": ("report.html", render_html),
        "pdf": ("report.pdf", render_pdf),
    }
    documents: list[tuple[str, str | bytes]] = [
        ("report.json", (msgspec.json.format(msgspec.json.encode(data, enc_hook=str), indent=2) + b"\n"))
    ]
    for fmt in formats:
        if fmt not in renders:
            raise ValueError(f"format {fmt!r}: expected one of {', '.join(renders)}")
        name, render = renders[fmt]
        documents.append((name, render(data)))
    for name, content in documents:
        path = out / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
