"""The evidence report, read as a reviewer would: every section there, every figure equal to
``results.json``, nothing external, no claim of compliance."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from cert_core import cli
from cert_core.report import (
    SYSTEM_TEMPLATE,
    SystemFileError,
    build_report,
    load_evidence,
    load_system,
    render_html,
    render_markdown,
    write_report,
)
from cert_core.report import (
    tested_components as components_of,
)

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = [
    "validation",
    "components",
    "declaration",
    "robustness",
    "security",
    "logging",
    "monitoring",
    "lineage",
    "annex-iv",
    "person",
    "conformity",
]


@pytest.fixture(scope="module")
def evidence_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example suite's evidence folder (replayed offline), made once."""
    folder = tmp_path_factory.mktemp("evidence")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/rag_app", f"--cert-report={folder}", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    return folder


class Page(HTMLParser):
    """Sections, per-test rows (their data-field cells), totals and what the page links to."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.rows: dict[str, dict[str, str]] = {}
        self.totals: dict[str, str] = {}
        self.external: list[str] = []
        self.scripts = 0
        self.svgs = 0
        self._row: str | None = None
        self._field: str | None = None
        self._total: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("id"):
            self.sections.append(str(a["id"]))
        if tag == "script":
            self.scripts += 1
        if tag == "svg":
            self.svgs += 1
        for key in ("src", "href"):
            value = a.get(key)
            if value and not value.startswith("#"):
                self.external.append(value)
        if tag == "link":
            self.external.append(str(a.get("href")))
        if tag == "tr" and a.get("data-nodeid"):
            self._row = str(a["data-nodeid"])
            self.rows[self._row] = {}
        if tag == "td" and self._row and a.get("data-field"):
            self._field = str(a["data-field"])
            self.rows[self._row][self._field] = ""
        if a.get("data-total"):
            self._total = str(a["data-total"])
            self.totals[self._total] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._field = None
        if tag == "tr":
            self._row = None
        if tag == "span":
            self._total = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._row and self._field:
            self.rows[self._row][self._field] += data
        if self._total:
            self.totals[self._total] += data


def _page(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def test_html_has_every_section_and_the_figures_of_results_json(evidence_dir: Path, tmp_path: Path) -> None:
    evidence = load_evidence(evidence_dir)
    html = render_html(build_report(evidence))
    page = _page(html)
    assert page.sections == SECTIONS
    results = evidence["results"]
    assert page.totals == {
        "tests": str(results["totals"]["tests"]),
        "measurements": str(results["totals"]["measurements"]),
        "calls": str(results["totals"]["calls"]),
        "replayed_calls": str(results["totals"]["replayed_calls"]),
    }
    assert set(page.rows) == {t["nodeid"] for t in results["tests"]}
    for t in results["tests"]:
        row = page.rows[t["nodeid"]]
        measured = [m["confidence"] for m in t["measurements"] if m["confidence"] is not None]
        assert row["outcome"] == t["outcome"]
        assert row["calls"] == str(t["calls"])
        assert row["confidence"] == (f"{min(measured):.3f}" if measured else "-")
        assert row["threshold"] == f"{t['threshold']:.3f}"
        assert row["cost"].startswith(f"${t['cost_usd'] + t['replayed_cost_usd']:.6f}")
        if t["statistical"]:
            s = t["statistical"]
            assert (
                row["statistical"]
                == f"{s['passed']}/{s['n']} [{s['lower']:.3f}, {s['upper']:.3f}] vs {s['min_pass_rate']}"
            )
    caught = page.rows[next(t["nodeid"] for t in results["tests"] if t["outcome"] == "xfailed")]
    assert caught["verdict"] == "xfailed (expected failure)"


def test_html_is_self_contained_and_claims_nothing(evidence_dir: Path) -> None:
    html = render_html(build_report(load_evidence(evidence_dir)))
    page = _page(html)
    assert page.scripts == 0
    assert page.external == []  # inline CSS and SVG only; links are to the page's own sections
    assert page.svgs >= 2  # score distribution, cost per test
    text = " ".join(page.text).lower()
    assert "compliant" not in text
    assert "does not state that the system complies with anything and carries no signature" in text


def test_markdown_has_the_same_sections_and_figures(evidence_dir: Path) -> None:
    evidence = load_evidence(evidence_dir)
    md = render_markdown(build_report(evidence))
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert [h.split(" ", 2)[2].split(" (")[0] for h in headings] == [
        "Validation and test report",
        "LLM components exercised by the tests",
        "Accuracy declaration for the instructions for use",
        "Robustness",
        "Cybersecurity",
        "Logging specification",
        "Post-market monitoring",
        "Change lineage",
        "Annex IV index",
        "Supplied by a person",
        "EU declaration of conformity",
    ]
    for t in evidence["results"]["tests"]:
        assert f"| `{t['nodeid']}` | {t['outcome']} |" in md
    assert "compliant" not in md.lower()
    assert "\n- semantic:" in md
    assert "\n- grounding:" in md


def test_tested_models_and_declaration(evidence_dir: Path, tmp_path: Path) -> None:
    system_file = tmp_path / "cert-system.yaml"
    system_file.write_text(
        "accuracy_declaration:\n  - preset: general\n    declared_pass_rate: 0.95\n"
        "logging:\n  retention_days: 90\n"
    )
    data = build_report(load_evidence(evidence_dir), system=load_system(system_file))
    models = {(m["provider"], m["request_model"], m["response_model"]) for m in data["components"]}
    assert models == {
        ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
        ("anthropic", "claude-3-5-haiku-20241022", "claude-3-5-haiku-20241022"),
        ("openai", "gpt-4o-mini", "(no response)"),  # the outage test: every try met an injected 503
    }
    ids = {(m["provider"], m["request_model"]): m for m in data["security"]["models"]}
    assert ids["openai", "gpt-4o-mini"]["pinned"] is False  # an alias: a dated snapshot answered
    assert ids["openai", "gpt-4o-mini"]["response_models"] == ["gpt-4o-mini-2024-07-18"]
    assert ids["anthropic", "claude-3-5-haiku-20241022"]["pinned"] is True
    (row,) = data["declaration"]
    assert (row["preset"], row["n"], row["passed"]) == ("general", 33, 33)  # the xfail answers left out
    assert row["lower"] == pytest.approx(0.8957, abs=1e-4)  # Wilson 95% lower bound of 33/33
    assert row["check"].startswith("NOT SUPPORTED")  # 0.95 declared, 0.896 proven
    assert data["logging"]["retention_check"].startswith("BELOW the six-month minimum")


def test_the_evidence_writer_counts_the_components_the_trace_file_holds(evidence_dir: Path) -> None:
    """The report written with the evidence (components counted while the traces were written)
    lists what a later read of traces.jsonl finds."""
    written = json.loads((evidence_dir / "report.json").read_text())
    models, _ = components_of(evidence_dir / "traces.jsonl")
    assert written["components"] == models
    assert models
    assert [m["calls"] for m in models] == [m["calls"] for m in written["components"]]


def test_per_test_rows_escape_their_text_and_large_suites_chart_the_costliest(evidence_dir: Path) -> None:
    data = build_report(load_evidence(evidence_dir))
    first = data["validation"]["tests"][0]
    tests = [
        {
            **first,
            "nodeid": f"t.py::test_{i}",
            "cost_usd": i / 1000,
            "violations": [],
            "unsupported_terms": [],
        }
        for i in range(40)
    ]
    tests[0] = {
        **tests[0],
        "nodeid": "t.py::test_<b>&",
        "verdict": "failed",
        "violations": ["cost <$1> & more"],
    }
    data["validation"]["tests"] = tests
    html = render_html(data)
    assert 'data-nodeid="t.py::test_&lt;b&gt;&amp;"' in html
    assert "<b>&" not in html
    assert '<td colspan="9" class="fail">cost &lt;$1&gt; &amp; more</td>' in html
    page = _page(html)
    assert page.rows["t.py::test_<b>&"]["verdict"] == "failed"
    assert len(page.rows) == 40  # the table lists every test
    chart = html[html.index('aria-label="Cost per test') :]
    chart = chart[: chart.index("</svg>")]
    assert "the 30 costliest of 40 tests" in chart
    assert chart.count("<rect") == 30
    assert "test_39" in chart
    assert "test_9<" not in chart
    md = render_markdown(data)
    assert "| `t.py::test_39` |" in md


def test_monitoring_flags_untested_models_and_lineage_shows_changes(
    evidence_dir: Path, tmp_path: Path
) -> None:
    from cert_core.analysis import scan_traces

    production = tmp_path / "prod.jsonl"
    lines = []
    lines.append(
        {
            "schema": "cert.trace/1",
            "trace_id": "a" * 32,
            "span_id": "f" * 16,
            "start_time": "2026-10-01T09:59:59.000000Z",
            "end_time": "2026-10-01T10:00:01.000000Z",
            "duration_ms": 2000.0,
            "kind": "function",
            "function": "app.answer",
        }
    )
    for i, model in enumerate(["gpt-4o-mini", "gpt-4o-mini", "gpt-4.1"]):
        stamp = f"2026-10-0{i + 1}T10:00:00.000000Z"
        lines.append(
            {
                "schema": "cert.trace/1",
                "trace_id": "a" * 32,
                "span_id": f"{i:016x}",
                "start_time": stamp,
                "end_time": stamp,
                "duration_ms": 300.0,
                "kind": "llm",
                "provider": "openai",
                "operation": "chat",
                "request_model": model,
                "response_model": "gpt-4o-mini-2025-01-01" if i == 1 else model,
                "usage": {"input_tokens": 10, "output_tokens": 5},
                "cost_usd": 0.001,
                "parent_span_id": "f" * 16,
            }
        )
    production.write_text("".join(json.dumps(line) + "\n" for line in lines))
    previous_dir = tmp_path / "previous"
    shutil.copytree(evidence_dir, previous_dir)
    results = json.loads((previous_dir / "results.json").read_text())
    results["tests"][0]["measurements"][0]["confidence"] = 0.5
    (previous_dir / "results.json").write_text(json.dumps(results))
    data = build_report(
        load_evidence(evidence_dir),
        production=scan_traces(production),
        previous=load_evidence(previous_dir),
        period_days=None,
    )
    monitoring = data["monitoring"]
    assert (monitoring["calls"], monitoring["cost_usd"]) == (3, pytest.approx(0.003))
    assert monitoring["untested"] == [{"provider": "openai", "model": "gpt-4.1"}]
    assert monitoring["untested_functions"] == ["app.answer"]  # the tests never ran it
    assert {(v["model"], v["response_model"]) for v in monitoring["model_versions"]} == {
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini", "gpt-4o-mini-2025-01-01"),
        ("gpt-4.1", "gpt-4.1"),
    }
    (change,) = data["lineage"]["confidence_changes"]
    assert (change["nodeid"], change["before"]) == (results["tests"][0]["nodeid"], 0.5)
    page = _page(render_html(data))
    assert page.svgs >= 4  # production volume and cost over time too
    assert "gpt-4.1" in " ".join(page.text)


def test_annex_index_marks_tool_person_and_missing(evidence_dir: Path, tmp_path: Path) -> None:
    bare = {row["title"]: row["status"] for row in build_report(load_evidence(evidence_dir))["annex_iv"]}
    assert (
        bare["Validation and testing procedures, data, metrics, test logs and reports"]
        == "filled by the tool"
    )
    assert bare["Why the performance metrics are appropriate"] == "missing: to be supplied by a person"
    assert bare["Post-market monitoring system and plan (Art. 72)"] == "missing"
    supplied = build_report(
        load_evidence(evidence_dir), system={"metrics_rationale": "Grounding catches invented facts."}
    )
    index = {row["title"]: row["status"] for row in supplied["annex_iv"]}
    assert index["Why the performance metrics are appropriate"] == "supplied by a person"


def test_system_file_template_loads_and_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "cert-system.yaml"
    path.write_text(SYSTEM_TEMPLATE)
    system = load_system(path)
    assert system["logging"]["retention_days"] == 183
    assert system["accuracy_declaration"] == [{"preset": "general", "declared_pass_rate": None}]
    path.write_text("system:\n  name: Assistant\n  colour: blue\n")
    with pytest.raises(
        SystemFileError, match=rf"{path}:3: system.colour: unknown field; known: name, version"
    ):
        load_system(path)
    path.write_text("logging:\n  retention_days: forever\n")
    with pytest.raises(SystemFileError, match=rf"{path}:2: logging.retention_days: expected a whole number"):
        load_system(path)
    path.write_text("system: [unclosed\n")
    with pytest.raises(SystemFileError, match=rf"{path}:\d+: not valid YAML"):
        load_system(path)


def test_cert_init_and_cert_report(
    evidence_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    system = tmp_path / "cert-system.yaml"
    assert cli.main(["init", str(system)]) == 0
    assert cli.main(["init", str(system)]) == 2  # never overwrites by accident
    out = tmp_path / "out"
    assert (
        cli.main(["report", "--results", str(evidence_dir), "--system", str(system), "--output", str(out)])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "report.html",
        "report.json",
        "report.md",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"report.html", "report.json", "report.md"}
    assert manifest["inputs"]["system"] == str(system)
    assert "Annex IV item(s) still missing" in capsys.readouterr().out
    assert cli.main(["report", "--results", str(tmp_path / "nothing"), "--output", str(out)]) == 2
    assert "cannot read the test results" in capsys.readouterr().err


def test_the_evidence_folder_holds_the_report_and_the_manifest_covers_it(evidence_dir: Path) -> None:
    import hashlib

    manifest = json.loads((evidence_dir / "manifest.json").read_text())
    for name in ("report.md", "report.html", "report.json"):
        entry = manifest["files"][name]
        assert entry["sha256"] == hashlib.sha256((evidence_dir / name).read_bytes()).hexdigest()
    data: dict[str, Any] = json.loads((evidence_dir / "report.json").read_text())
    assert data["schema"] == "cert.report/1"
    assert "report_error" not in manifest


def test_write_report_refuses_an_unknown_format(evidence_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format 'docx'"):
        write_report(tmp_path, build_report(load_evidence(evidence_dir)), ("docx",))


def test_pdf_report_renders_to_pages(evidence_dir: Path, tmp_path: Path) -> None:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as exc:  # the pdf extra, or the system's Pango library, is absent
        pytest.skip(f"WeasyPrint unavailable: {exc}")
    (pdf,) = [
        p
        for p in write_report(tmp_path, build_report(load_evidence(evidence_dir)), ("pdf",))
        if p.suffix == ".pdf"
    ]
    assert pdf.read_bytes().startswith(b"%PDF-")
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "30", str(pdf), str(tmp_path / "page")], check=True)
        assert len(list(tmp_path.glob("page-*.png"))) >= 3


def test_pdf_without_its_extra_is_a_clear_error(
    evidence_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import fails as if not installed
    code = cli.main(["report", "--results", str(evidence_dir), "--format", "pdf", "--output", str(tmp_path)])
    assert code == 2
    assert 'a PDF report needs the pdf extra: pip install "pytest-cert[pdf]"' in capsys.readouterr().err


def test_cert_report_into_an_evidence_folder_updates_its_manifest(evidence_dir: Path, tmp_path: Path) -> None:
    import hashlib

    folder = tmp_path / "evidence"
    shutil.copytree(evidence_dir, folder)
    system = tmp_path / "cert-system.yaml"
    system.write_text("system:\n  name: Northwind assistant\n  version: 2.3.0\n")
    assert (
        cli.main(["report", "--results", str(folder), "--system", str(system), "--output", str(folder)]) == 0
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "traces.jsonl" in manifest["files"]  # the evidence manifest, extended, not replaced
    entry = manifest["files"]["report.html"]
    assert entry["sha256"] == hashlib.sha256((folder / "report.html").read_bytes()).hexdigest()
    assert "Northwind assistant 2.3.0" in (folder / "report.md").read_text()


def _check(kind: str, drop: float | None, verdict: str) -> dict[str, Any]:
    return {
        "perturbation": kind,
        "seed": 0,
        "changed": "question",
        "description": f"{kind} change",
        "question": "q?",
        "answer": "a",
        "confidence": None if drop is None else 0.9 - drop,
        "baseline": 0.9,
        "drop": drop,
        "max_drop": 0.1,
        "verdict": verdict,
        "error": "ValueError: boom" if verdict == "error" else None,
    }


def test_robustness_and_security_sections_show_what_was_tested(evidence_dir: Path) -> None:
    evidence = load_evidence(evidence_dir)
    repeated = [t for t in evidence["results"]["tests"] if (t["robustness"] or {}).get("consistency")]
    assert repeated  # the example's repeated test reports its consistency
    for t in evidence["results"]["tests"]:
        t["robustness"] = t["security"] = None
    evidence["perplexities"] = []  # the example's logprob tests measured some
    untested = _page(render_html(build_report(evidence)))
    text = " ".join(untested.text)
    assert "Not tested: no test of this run perturbed its inputs" in text
    assert "Not tested: no test of this run probed for prompt injection" in text
    md = render_markdown(build_report(evidence))
    assert "**Not tested**: no test of this run perturbed its inputs" in md
    assert "**Not tested**: no test of this run probed for prompt injection" in md

    tests = evidence["results"]["tests"]
    tests[0]["robustness"] = {
        "perturbations": [
            {
                "question": "q?",
                "answer": "a",
                "baseline": 0.9,
                "max_drop": 0.1,
                "largest_drop": 0.3,
                "verdict": "failed",
                "checks": [_check("typos", 0.3, "failed"), _check("casing", 0.0, "passed")],
            }
        ],
        "consistency": {
            "runs": 5,
            "answered": 5,
            "distinct_answers": 2,
            "agreement": 0.8,
            "measured": 5,
            "score_mean": 0.8,
            "score_stdev": 0.05,
            "score_min": 0.75,
            "score_max": 0.85,
        },
        "faults": [
            {
                "injected": [
                    {"fault": {"kind": "status", "code": 429}},
                    {"fault": {"kind": "status", "code": 429}},
                    {"fault": {"kind": "timeout"}},
                ],
                "requests_seen": 4,
                "unused": [],
                "recovered": True,
                "raised": None,
            }
        ],
    }
    tests[1]["robustness"] = {
        "perturbations": [
            {
                "question": "q?",
                "answer": "a",
                "baseline": 0.9,
                "max_drop": 0.1,
                "largest_drop": 0.02,
                "verdict": "failed",
                "checks": [_check("typos", 0.02, "passed"), _check("casing", None, "error")],
            }
        ],
        "consistency": None,
        "faults": [],
    }
    tests[0]["security"] = {
        "probes": [
            {
                "confidence": 0.95,
                "mapping_note": "Mapping these probe categories is pytest-cert's interpretation.",
                "categories": {
                    "instruction_override": {
                        "category": "instruction_override",
                        "attempts": 10,
                        "successes": 2,
                        "errors": 0,
                    },
                    "data_exfiltration": {
                        "category": "data_exfiltration",
                        "attempts": 10,
                        "successes": 0,
                        "errors": 1,
                    },
                },
                "outcomes": [{"probe_id": "se-001", "canary_leaked": True}, {"probe_id": "se-002"}],
            }
        ],
        "pii": {"checked": 3, "findings": 1},
    }
    data = build_report(evidence)
    rb, sc = data["robustness"], data["security"]
    typos = next(k for k in rb["perturbations"] if k["perturbation"] == "typos")
    assert (typos["variants"], typos["passed"], typos["failed"]) == (2, 1, 1)
    assert typos["mean_drop"] == pytest.approx(0.16)
    assert typos["largest_drop"] == pytest.approx(0.3)
    casing = next(k for k in rb["perturbations"] if k["perturbation"] == "casing")
    assert (casing["passed"], casing["error"]) == (1, 1)
    assert rb["failures_total"] == 2
    assert rb["faults"][0]["kinds"] == "status 429 x2, timeout"
    assert (rb["faults"][0]["requests"], rb["faults"][0]["recovered"]) == (4, True)
    assert rb["faults"][0]["answered"] == 0  # no passed_through in this log
    override = next(c for c in sc["categories"] if c["category"] == "instruction_override")
    assert override["clause"] == "adversarial examples / model evasion"
    assert override["rate"] == pytest.approx(0.2)
    assert override["lower"] == pytest.approx(0.0567, abs=1e-3)  # Wilson 95% of 2/10
    assert next(c for c in sc["categories"] if c["category"] == "data_exfiltration")["clause"] == (
        "confidentiality attacks"
    )
    assert sc["canary_leaks"] == 1
    assert sc["pii"] == {"tests": 1, "checked": 3, "findings": 1}
    page = _page(render_html(data))
    text = " ".join(page.text)
    assert "Tested: the figures below come from this run's tests." in text
    assert "drop 0.300 > 0.1" in text
    assert "the app failed: ValueError: boom" in text
    assert "is pytest-cert's interpretation" in text
    assert "Canary leaks" in text
    assert "3 text(s) checked in 1 test(s); 1 finding(s)." in text
    annex = {row["title"]: row["status"] for row in data["annex_iv"]}
    assert annex["Metrics and tests of robustness (Art. 15(4))"] == "filled by the tool"
    for t in tests:
        t["robustness"] = None
    untested_annex = {row["title"]: row["status"] for row in build_report(evidence)["annex_iv"]}
    assert untested_annex["Metrics and tests of robustness (Art. 15(4))"].startswith("missing")
    md = render_markdown(data)
    assert "| typos | 2 | 1 | 1 | 0 | 0 | 0.160 | 0.300 | 0.1 |" in md
    assert "| instruction_override | adversarial examples / model evasion | 10 | 2 | 20.0% |" in md
