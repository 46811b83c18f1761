#!/usr/bin/env python3
"""Look at the evidence report as a reviewer will: a browser screenshot and the PDF's pages.

    python docs/render_report.py [EVIDENCE_DIR] [--out DIR] [--production TRACES...]

Renders the report of an evidence folder (default: runs the example suite, ``examples/rag_app``,
into a temporary one), then:

* ``report.png``: the HTML in headless Chromium (Debian package ``chromium``), full width;
* ``report.pdf`` (WeasyPrint, ``pip install "pytest-cert[pdf]"``) and ``page-N.png`` for each of
  its pages (``pdftoppm``, Debian package ``poppler-utils``).

A missing tool is reported and its step skipped; nothing is installed. The images are for a
person to look at; ``tests/cert_core/test_report.py`` checks the content.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evidence", nargs="?", help="Evidence folder (default: run the example suite)")
    parser.add_argument(
        "--out", default="report-render", help="Folder for the images (default report-render)"
    )
    parser.add_argument("--production", nargs="+", help="Production traces for the monitoring section")
    args = parser.parse_args()

    from cert_core.report import ReportError, build_report, load_evidence, write_report

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        evidence = Path(args.evidence) if args.evidence else Path(tmp) / "evidence"
        if not args.evidence:
            subprocess.run(
                [sys.executable, "-m", "pytest", "examples/rag_app", f"--cert-report={evidence}", "-q"],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        production = None
        if args.production:
            from cert_core.analysis import scan_traces

            production = scan_traces(args.production)
        data = build_report(load_evidence(evidence), production=production)
        write_report(out, data, ("md", "html"))
        print(f"report: {out / 'report.html'}")
        browser = _browser()
        if browser is None:
            print("screenshot skipped: no Chromium or Chrome on PATH (Debian: apt install chromium)")
        else:
            shot = out / "report.png"
            subprocess.run(
                [
                    browser,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    f"--screenshot={shot}",
                    "--window-size=1100,5200",
                    (out / "report.html").as_uri(),
                ],
                check=True,
                capture_output=True,
            )
            print(f"screenshot: {shot}")
        try:
            write_report(out, data, ("pdf",))
        except ReportError as exc:
            print(f"PDF skipped: {exc}")
            return 0
        print(f"pdf: {out / 'report.pdf'}")
        if shutil.which("pdftoppm") is None:
            print("PDF pages skipped: no pdftoppm (Debian: apt install poppler-utils)")
            return 0
        for old in out.glob("page-*.png"):
            old.unlink()
        subprocess.run(
            ["pdftoppm", "-png", "-r", "60", str(out / "report.pdf"), str(out / "page")], check=True
        )
        pages = sorted(out.glob("page-*.png"))
        print(f"pages: {len(pages)} PNG file(s), {pages[0].name} to {pages[-1].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
