"""Labelled pairs for calibration: rows of (answer, reference, label) from JSONL, CSV, Parquet, or a
Hugging Face dataset saved to disk. Bad rows are reported by file, line (or row) and field."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LabelledError", "LabelledPair", "read_labelled"]

_TRUE = {"1", "true", "yes", "right", "correct", "pass", "supported"}
_FALSE = {"0", "false", "no", "wrong", "hallucinated", "incorrect", "fail", "unsupported"}


class LabelledError(ValueError):
    """A labelled-data file that cannot be read, or a row in it that is not a labelled pair."""


@dataclass(frozen=True, slots=True)
class LabelledPair:
    answer: str
    reference: str
    label: int  # 1: the answer is right (supported), 0: wrong
    where: str  # file:line, for messages


def _label(value: Any, where: str, column: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise LabelledError(f"{where}: {column}: {value!r} is not a label (use 1/0, true/false, right/wrong)")


def _rows(path: Path) -> Iterator[tuple[str, Any]]:
    suffix = path.suffix.lower()
    if path.is_dir():
        try:
            import datasets
        except ImportError as exc:
            raise LabelledError(f"{path}: a saved Hugging Face dataset needs: pip install datasets") from exc
        try:
            data = datasets.load_from_disk(str(path))
        except Exception as exc:
            raise LabelledError(f"{path}: not a dataset saved with save_to_disk(): {exc}") from exc
        if isinstance(data, datasets.DatasetDict):
            raise LabelledError(f"{path}: holds splits {list(data)}; give the folder of one split")
        for i, row in enumerate(data):
            yield f"{path}:row {i}", row
    elif suffix in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise LabelledError(f"{path}:{number}: not JSON: {exc}") from None
                if not isinstance(row, dict):
                    raise LabelledError(
                        f"{path}:{number}: expected an object per line, got {type(row).__name__}"
                    )
                yield f"{path}:{number}", row
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            for row in reader:
                yield f"{path}:{reader.line_num}", row
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise LabelledError(
                f'{path}: Parquet needs pyarrow: pip install "pytest-cert[analysis]"'
            ) from exc
        offset = 0
        for batch in pq.ParquetFile(path).iter_batches():
            for i, row in enumerate(batch.to_pylist()):
                yield f"{path}:row {offset + i}", row
            offset += batch.num_rows
    else:
        raise LabelledError(
            f"{path}: unknown format {suffix!r} (use .jsonl, .csv, .tsv, .parquet or a dataset folder)"
        )


def read_labelled(
    path: str | Path, *, answer: str = "answer", reference: str = "reference", label: str = "label"
) -> list[LabelledPair]:
    """Read labelled pairs; the column names can be changed."""
    path = Path(path)
    if not path.exists():
        raise LabelledError(f"{path}: no such file or directory")
    pairs = []
    for where, row in _rows(path):
        values = {}
        for column in (answer, reference, label):
            if column not in row or row[column] is None:
                raise LabelledError(f"{where}: {column}: missing (columns there: {', '.join(map(str, row))})")
            values[column] = row[column]
        for column in (answer, reference):
            if not isinstance(values[column], str) or not values[column].strip():
                raise LabelledError(f"{where}: {column}: expected non-empty text, got {values[column]!r:.60}")
        pairs.append(
            LabelledPair(values[answer], values[reference], _label(values[label], where, label), where)
        )
    if not pairs:
        raise LabelledError(f"{path}: no rows")
    return pairs
