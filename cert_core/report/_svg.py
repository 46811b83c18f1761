"""Inline SVG charts for the HTML report: no script, no external asset, readable when printed."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["bars", "histogram", "series"]

_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def histogram(
    values: Sequence[float],
    thresholds: Sequence[float],
    *,
    title: str,
    low: float = 0.0,
    high: float = 1.0,
) -> str:
    """Counts of ``values`` in ten bins over [``low``, ``high``] (values outside go to the end
    bins), with a dashed line at each threshold."""
    width, height, left, bottom = 520, 200, 36, 28
    span = (high - low) or 1.0
    bins = [0] * 10
    for v in values:
        bins[min(9, max(0, int((v - low) / span * 10)))] += 1
    top = max(bins) or 1
    plot_w, plot_h = width - left - 10, height - bottom - 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" class="chart">',
        f'<text x="{left}" y="14" {_FONT} font-weight="bold">{escape(title)}</text>',
    ]
    for i, count in enumerate(bins):
        h = plot_h * count / top
        x = left + i * plot_w / 10
        y = 24 + plot_h - h
        bar = plot_w / 10 - 4
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="#4a78b5">'
            f"<title>{low + span * i / 10:.2f} to {low + span * (i + 1) / 10:.2f}: {count}</title></rect>"
        )
        if count:
            parts.append(
                f'<text x="{x + plot_w / 20:.1f}" y="{y - 3:.1f}" {_FONT} text-anchor="middle">{count}</text>'
            )
    digits = 0 if span >= 20 else 1
    for tick in range(0, 11, 2):
        x = left + tick * plot_w / 10
        label = f"{low + span * tick / 10:.{digits}f}"
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" {_FONT} text-anchor="middle">{label}</text>')
    for n, t in enumerate(sorted(set(thresholds))):
        x = left + (t - low) / span * plot_w
        parts.append(
            f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{24 + plot_h}" stroke="#c0392b" stroke-width="2" '
            f'stroke-dasharray="4 3"><title>threshold {t:.3f}</title></line>'
        )
        # Labels to the left of their line, one below the other, so close thresholds stay legible.
        parts.append(
            f'<text x="{x - 3:.1f}" y="{34 + 13 * n}" {_FONT} fill="#c0392b" text-anchor="end">'
            f"threshold {t:.3f}</text>"
        )
    parts.append(
        f'<line x1="{left}" y1="{24 + plot_h}" x2="{left + plot_w}" y2="{24 + plot_h}" stroke="#555"/></svg>'
    )
    return "".join(parts)


def bars(labels: Sequence[str], values: Sequence[float], *, title: str, unit: str = "$") -> str:
    """Horizontal bars, one per label (e.g. cost per test)."""
    row, left, width = 18, 260, 640
    height = 24 + row * max(1, len(labels)) + 8
    top = max(values, default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" class="chart">',
        f'<text x="4" y="14" {_FONT} font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 24 + i * row
        w = (width - left - 90) * value / top
        short = label if len(label) <= 42 else "..." + label[-39:]
        parts.append(f'<text x="{left - 6}" y="{y + 12}" {_FONT} text-anchor="end">{escape(short)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y + 2}" width="{max(w, 1):.1f}" height="{row - 5}" fill="#6a9f58">'
            f"<title>{escape(label)}: {unit}{value:.6f}</title></rect>"
        )
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 12}" {_FONT}>{unit}{value:.6f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def series(days: Sequence[str], values: Sequence[float | None], *, title: str, fmt: str = "{:,.0f}") -> str:
    """A line over days (production volume, cost or accuracy); gaps where a value is missing."""
    width, height, left, bottom = 640, 170, 60, 26
    known = [v for v in values if v is not None]
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    if high == low:
        high = low + 1.0
    plot_w, plot_h = width - left - 12, height - bottom - 24
    n = max(1, len(days) - 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" class="chart">',
        f'<text x="{left}" y="14" {_FONT} font-weight="bold">{escape(title)}</text>',
        f'<text x="{left - 4}" y="28" {_FONT} text-anchor="end">{escape(fmt.format(high))}</text>',
        f'<text x="{left - 4}" y="{24 + plot_h}" {_FONT} text-anchor="end">{escape(fmt.format(low))}</text>',
    ]
    path: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            if path:
                parts.append(
                    f'<polyline points="{" ".join(path)}" fill="none" stroke="#4a78b5" stroke-width="2"/>'
                )
            path = []
            continue
        x = left + plot_w * i / n
        y = 24 + plot_h * (1 - (v - low) / (high - low))
        path.append(f"{x:.1f},{y:.1f}")
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="#4a78b5"><title>{escape(days[i])}: '
            f"{escape(fmt.format(v))}</title></circle>"
        )
    if path:
        parts.append(f'<polyline points="{" ".join(path)}" fill="none" stroke="#4a78b5" stroke-width="2"/>')
    if days:
        parts.append(f'<text x="{left}" y="{height - 8}" {_FONT}>{escape(days[0])}</text>')
        parts.append(
            f'<text x="{left + plot_w}" y="{height - 8}" {_FONT} text-anchor="end">{escape(days[-1])}</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{24 + plot_h}" x2="{left + plot_w}" y2="{24 + plot_h}" stroke="#555"/></svg>'
    )
    return "".join(parts)
