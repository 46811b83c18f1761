from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from cert_core.cli import main
from cert_core.measure import auc, calibrate
from cert_core.measure._labelled import LabelledError, read_labelled

CONTEXT = "The Eiffel Tower is 330 metres tall and stands in Paris. It opened in 1889 for the World's Fair."
ROWS = [
    ("The Eiffel Tower is 330 metres tall.", 1),
    ("It opened in 1889.", 1),
    ("The tower stands in Paris.", 1),
    ("It opened for the World's Fair in 1889.", 1),
    ("The Eiffel Tower is 512 metres tall.", 0),
    ("It opened in 1925 in Lyon.", 0),
    ("Gustave Klimt painted the tower gold in 1901.", 0),
    ("The tower stands in Berlin beside the Reichstag.", 0),
]


def test_auc_matches_the_mann_whitney_definition() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.4 * labels, 1)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_calibrate_finds_the_separating_threshold() -> None:
    result = calibrate([0.9, 0.8, 0.75, 0.7, 0.4, 0.3, 0.2, 0.1], [1, 1, 1, 1, 0, 0, 0, 0], bootstrap=200)
    assert result.auc == 1.0
    assert result.youden.threshold == 0.7
    assert result.best_accuracy.accuracy == 1.0
    assert result.youden.false_positive_rate == 0.0
    assert result.auc_interval == (1.0, 1.0)
    assert result.roc[0] == (0.9, 0.0, 0.25)
    assert "AUC 1.0000" in result.table()
    assert calibrate([0.9, 0.1, 0.5, 0.4], [1, 0, 1, 0], bootstrap=50) == calibrate(
        [0.9, 0.1, 0.5, 0.4], [1, 0, 1, 0], bootstrap=50
    )  # fixed seed: the same intervals every time


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [1, 1], "needs both right"),
        ([0.1, 0.2], [1, 2], "labels must be 0/1"),
        ([0.1], [1, 0], "one length"),
        ([float("nan"), 0.2], [1, 0], "finite"),
    ],
)
def test_calibrate_rejects_bad_input(scores: list[float], labels: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calibrate(scores, labels)


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_read_labelled_formats_and_label_spellings(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "a.jsonl", [{"answer": "x y", "reference": "z", "label": True}])
    (tmp_path / "b.csv").write_text("q,ctx,ok\nx y,z,wrong\nfoo,bar,1\n", encoding="utf-8")
    assert [p.label for p in read_labelled(jsonl)] == [1]
    csv_pairs = read_labelled(tmp_path / "b.csv", answer="q", reference="ctx", label="ok")
    assert [(p.answer, p.label, p.where.rsplit(":", 1)[1]) for p in csv_pairs] == [
        ("x y", 0, "2"),
        ("foo", 1, "3"),
    ]


def test_read_labelled_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"answer": ["a b", "c d"], "reference": ["a b c", "e f"], "label": [1, 0]})
    pq.write_table(table, tmp_path / "t.parquet")
    assert [p.label for p in read_labelled(tmp_path / "t.parquet")] == [1, 0]


def test_read_labelled_saved_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_dict({"answer": ["a b"], "reference": ["a b c"], "label": [1]})
    data.save_to_disk(str(tmp_path / "ds"))
    pairs = read_labelled(tmp_path / "ds")
    assert [(p.answer, p.label, p.where.endswith("row 0")) for p in pairs] == [("a b", 1, True)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"answer": "a", "reference": "b", "label": 1}\nnot json\n', r"bad\.jsonl:2: not JSON"),
        (
            '{"answer": "a", "reference": "b"}\n',
            r"bad\.jsonl:1: label: missing \(columns there: answer, reference\)",
        ),
        (
            '{"answer": "a", "reference": "b", "label": "maybe"}\n',
            r"bad\.jsonl:1: label: 'maybe' is not a label",
        ),
        ('{"answer": 3, "reference": "b", "label": 1}\n', r"bad\.jsonl:1: answer: expected non-empty text"),
        ("\n\n", r"bad\.jsonl: no rows"),
    ],
)
def test_read_labelled_names_file_line_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LabelledError, match=message):
        read_labelled(path)


def test_read_labelled_unknown_format_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_bytes(b"")
    with pytest.raises(LabelledError, match=r"unknown format '\.xlsx'"):
        read_labelled(tmp_path / "x.xlsx")
    with pytest.raises(LabelledError, match="no such file"):
        read_labelled(tmp_path / "missing.jsonl")


def test_cert_calibrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(
        tmp_path / "labelled.jsonl", [{"answer": a, "reference": CONTEXT, "label": y} for a, y in ROWS]
    )
    out = tmp_path / "cal.json"
    assert main(["calibrate", str(data), "--out", str(out), "--bootstrap", "100"]) == 0
    printed = capsys.readouterr().out
    assert "pairs 8 (right 4, wrong 4)" in printed
    result = json.loads(out.read_text())
    assert result["n"] == 8
    assert result["auc"] >= 0.75  # the made-up facts are caught by grounding
    assert result["roc"][-1][1:] == [1.0, 1.0]


def test_cert_calibrate_plots_the_roc_curve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    data = write_jsonl(
        tmp_path / "labelled.jsonl", [{"answer": a, "reference": CONTEXT, "label": y} for a, y in ROWS]
    )
    plot = tmp_path / "roc.png"
    assert main(["calibrate", str(data), "--plot", str(plot), "--bootstrap", "50"]) == 0
    assert f"wrote {plot}" in capsys.readouterr().out
    png = plot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk: 4.5 x 4.5 inches at 120 dpi
    assert 300 <= width <= 700, width
    assert 300 <= height <= 700, height


def test_cert_calibrate_plot_without_matplotlib_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    data = write_jsonl(
        tmp_path / "labelled.jsonl", [{"answer": a, "reference": CONTEXT, "label": y} for a, y in ROWS]
    )
    plot = tmp_path / "roc.png"
    assert main(["calibrate", str(data), "--plot", str(plot), "--bootstrap", "50"]) == 2
    assert "--plot needs matplotlib (pip install matplotlib); no plot written" in capsys.readouterr().err
    assert not plot.exists()


def test_cert_calibrate_reports_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("answer,reference\na,b\n", encoding="utf-8")
    assert main(["calibrate", str(bad)]) == 2
    assert "bad.csv:2: label: missing" in capsys.readouterr().err
    good = write_jsonl(tmp_path / "good.jsonl", [{"answer": "a b", "reference": "a b c", "label": 1}])
    assert main(["calibrate", str(good), "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["calibrate", str(good)]) == 2  # one class only: nothing to calibrate
    assert "needs both right (1) and wrong (0) answers" in capsys.readouterr().err
