"""Production traces opened for analysis: one scan with DuckDB, aggregated per day.

DuckDB (``pip install "pytest-cert[analysis]"``) reads the JSONL files in parallel, keeping only the
columns the analysis needs; ``bench/bench_analysis.py`` chose it by measurement over pyarrow and
over our own streaming reader. Files DuckDB cannot take as they are go through
:func:`cert_core.read_traces` instead, which reports bad lines as ``file:line: field: problem``:
logs in the original CERT format, files with a corrupt line or a wrongly typed field, and files
with lines that are not ``cert.trace/1`` records. In strict mode the first bad line stops the
analysis with that message; in tolerant mode bad lines are skipped and each one is reported.

The result of the scan is small: one row per (day, provider, model, function) with counts and
sums, from which every breakdown, trend and anomaly is computed.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .._records import SCHEMA
from .._store import TraceReadError, read_traces, trace_files

__all__ = [
    "AnalysisError",
    "DailyGroup",
    "LongPrompts",
    "RepeatedPrompt",
    "TraceScan",
    "in_period",
    "period_start",
    "scan_traces",
]

# Only these fields are parsed; the rest of each line (prompts, answers) is skipped.
_COLUMNS = {
    "schema": "VARCHAR",
    "kind": "VARCHAR",
    "span_id": "VARCHAR",
    "parent_span_id": "VARCHAR",
    "function": "VARCHAR",
    "start_time": "VARCHAR",
    "duration_ms": "DOUBLE",
    "provider": "VARCHAR",
    "request_model": "VARCHAR",
    "response_model": "VARCHAR",
    "cost_usd": "DOUBLE",
    "usage": "STRUCT(input_tokens BIGINT, output_tokens BIGINT)",
    "error": "STRUCT(type VARCHAR)",
    "evaluation": "STRUCT(confidence DOUBLE, passed BOOLEAN)",
    "replayed": "BOOLEAN",
}
# DuckDB's limit for one line; a longer one (a huge prompt) takes the slow path (our reader).
_MAX_OBJECT_BYTES = 16 * 1024 * 1024


class AnalysisError(ValueError):
    """Traces that cannot be analysed, with the file, line and field at fault where known."""


@dataclasses.dataclass(frozen=True)
class DailyGroup:
    """The LLM calls of one day for one provider, model and calling function."""

    day: str  # YYYY-MM-DD (UTC)
    provider: str
    model: str
    function: str  # the @trace function the call ran in, or "(none)"
    response_model: str  # the snapshot the API reported ("(none)" when it did not say)
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced: int  # calls without a known cost (their cost is not in cost_usd)
    latency_ms_sum: float
    evaluated: int  # calls that carry an evaluation
    passed: int  # of those, the ones that passed their threshold
    evaluated_cost_usd: float
    confidence_sum: float
    replayed: int


@dataclasses.dataclass(frozen=True)
class RepeatedPrompt:
    """One exact request input (messages and all) sent more than once to the same model."""

    function: str
    provider: str
    model: str
    prompt_sha: str  # MD5 of the input's JSON text: an identity, not a security hash
    prompt_head: str  # its first 160 characters
    calls: int
    cost_usd: float
    first_seen: str  # day
    last_seen: str


@dataclasses.dataclass(frozen=True)
class LongPrompts:
    """How input lengths of one model are spread: the tail above the 90th percentile."""

    provider: str
    model: str
    calls: int
    input_tokens: int
    median_input_tokens: float
    p90_input_tokens: float
    long_calls: int  # calls above the 90th percentile
    tokens_above_p90: int  # what trimming those calls to the 90th percentile would save


@dataclasses.dataclass
class TraceScan:
    """What one pass over the traces found."""

    files: list[Path]
    groups: list[DailyGroup]
    records: int  # lines read (LLM and function records)
    skipped: list[str]  # bad lines skipped in tolerant mode, as file:line: field: problem
    converted: list[Path]  # files that went through read_traces (legacy, bad or odd lines)
    newest: str | None  # the day of the latest call (YYYY-MM-DD)
    repeated: list[RepeatedPrompt] = dataclasses.field(default_factory=list)  # with prompts=True
    long_prompts: list[LongPrompts] = dataclasses.field(default_factory=list)  # with prompts=True


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as exc:
        raise AnalysisError('trace analysis needs DuckDB: pip install "pytest-cert[analysis]"') from exc
    return duckdb


def _sql_list(paths: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _columns(prompts: bool = False) -> str:
    # The input as VARCHAR, not JSON: DuckDB then keeps its text as it is, without building it.
    columns = {**_COLUMNS, "input": "VARCHAR"} if prompts else _COLUMNS
    return "{" + ", ".join(f"{name}: '{kind}'" for name, kind in columns.items()) + "}"


def _is_legacy(path: Path) -> bool:
    """Whether a file's first record is in the original CERT format (no ``schema`` field)."""
    import gzip

    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            for line in fh:
                if line.strip():
                    return b'"schema"' not in line
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read: {exc}") from exc
    return False


def _convert(path: Path, out_dir: Path, strict: bool, skipped: list[str]) -> Path:
    """Re-write one file as clean cert.trace/1 lines through our reader (slow path)."""
    import msgspec

    target = out_dir / f"{len(list(out_dir.iterdir())):06d}.jsonl"

    def note(error: TraceReadError) -> None:
        skipped.append(str(error))

    encoder = msgspec.json.Encoder()
    try:
        with target.open("wb") as fh:
            for record in read_traces(path, strict=strict, on_error=note):
                fh.write(encoder.encode(record.to_dict()) + b"\n")
    except TraceReadError as exc:
        raise AnalysisError(str(exc)) from None
    return target


def scan_traces(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    strict: bool = True,
    threads: int | None = None,
    memory_limit: str | None = None,
    prompts: bool = False,
    period_days: int | None = None,
) -> TraceScan:
    """Read trace files (files, directories, globs; ``.gz`` too) into per-day groups.

    Raises :class:`AnalysisError` for a source that matches nothing, and in strict mode for the
    first bad line (``file:line: field: problem``). ``prompts=True`` also reads each call's input
    (slower) to find repeated prompts and long ones, over ``period_days`` ending on the newest day.
    """
    from .._store import TraceSourceError

    try:
        files = trace_files(sources)
    except TraceSourceError as exc:
        raise AnalysisError(str(exc)) from None
    if not files:
        raise AnalysisError("no trace files given")
    duckdb = _duckdb()
    skipped: list[str] = []
    converted: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="cert-analysis-") as tmp:
        work = Path(tmp)
        (work / "converted").mkdir()
        config: dict[str, Any] = {"threads": threads or os.cpu_count() or 1}
        if memory_limit:  # DuckDB's default: 80% of the memory; beyond it, it spills to disk
            config["memory_limit"] = memory_limit
        con = duckdb.connect(config=config)
        try:
            con.execute(f"SET temp_directory = '{work / 'spill'}'")
            con.execute("SET preserve_insertion_order = false")
            con.execute("SET enable_progress_bar = false")
            direct = []
            for path in files:
                if _is_legacy(path):
                    converted.append(path)
                else:
                    direct.append(path)
            readable = [_convert(p, work / "converted", strict, skipped) for p in converted]
            # Files DuckDB refuses (a corrupt line, a wrongly typed field) and files with lines
            # that are not our records go through the reader, which says which line and why.
            while True:
                try:
                    _load(con, [*direct, *readable], prompts)
                except duckdb.Error as exc:
                    bad = _first_refused(con, direct, duckdb)
                    if bad is None:
                        raise AnalysisError(f"DuckDB could not read the traces: {exc}") from exc
                    direct.remove(bad)
                    converted.append(bad)
                    readable.append(_convert(bad, work / "converted", strict, skipped))
                    continue
                odd = _odd_files(con)
                odd_direct = [p for p in direct if str(p) in odd]
                if not odd_direct:
                    break
                for path in odd_direct:
                    direct.remove(path)
                    converted.append(path)
                    readable.append(_convert(path, work / "converted", strict, skipped))
            newest = con.execute("SELECT max(day) FROM raw WHERE kind = 'llm'").fetchone()[0]
            since = period_start(newest, period_days)
            return TraceScan(
                repeated=_repeated(con, since) if prompts else [],
                long_prompts=_long_prompts(con, since) if prompts else [],
                files=files,
                groups=_groups(con),
                records=con.execute("SELECT count(*) FROM raw").fetchone()[0],
                skipped=skipped,
                converted=converted,
                newest=newest,
            )
        finally:
            con.close()


def _read_json(paths: Sequence[Path], prompts: bool = False) -> str:
    return (
        f"read_json({_sql_list(paths)}, format='newline_delimited', compression='auto', "
        f"columns={_columns(prompts)}, filename=true, maximum_object_size={_MAX_OBJECT_BYTES})"
    )


# One narrow row per record: what the reports need, derived while reading (a day, not a
# timestamp; one model name; flags, not structs), so ten million rows stay in memory. The file
# name is kept only for rows that are not trace records, to send their file to the reader.
_SLIM = f"""
    CASE WHEN schema IS DISTINCT FROM '{SCHEMA}' OR kind IS NULL OR kind NOT IN ('llm', 'function')
        OR start_time IS NULL THEN filename END AS odd_file,
    kind,
    CASE WHEN kind = 'function' THEN span_id END AS fn_span,
    CASE WHEN kind = 'function' THEN function END AS fn_name,
    CASE WHEN kind = 'llm' THEN parent_span_id END AS parent_span_id,
    substr(start_time, 1, 10) AS day,
    duration_ms,
    coalesce(provider, '(unknown)') AS provider,
    coalesce(request_model, response_model, '(unknown)') AS model,
    coalesce(response_model, '(none)') AS response_model,
    cost_usd,
    usage.input_tokens AS input_tokens,
    usage.output_tokens AS output_tokens,
    error.type IS NOT NULL AS failed,
    evaluation.confidence AS confidence,
    evaluation.passed AS passed,
    replayed
"""
# With prompts: each input is kept as a digest and its first characters, never whole.
_PROMPT_COLUMNS = "md5(input) AS prompt_sha, left(input, 160) AS prompt_head"


def _load(con: Any, paths: Sequence[Path], prompts: bool = False) -> None:
    con.execute("DROP TABLE IF EXISTS raw")
    select = _SLIM + (", " + _PROMPT_COLUMNS if prompts else "")
    if not paths:  # every file took the slow path and nothing was readable: an empty table
        empty = "(SELECT NULL::VARCHAR AS filename, " + ", ".join(
            f"NULL::{kind} AS {name}" for name, kind in _COLUMNS.items()
        )
        empty += ", NULL::VARCHAR AS input) WHERE false" if prompts else ") WHERE false"
        con.execute(f"CREATE TEMP TABLE raw AS SELECT {select} FROM (SELECT * FROM {empty})")
        return
    con.execute(f"CREATE TEMP TABLE raw AS SELECT {select} FROM {_read_json(paths, prompts)}")


def _first_refused(con: Any, paths: Sequence[Path], duckdb: Any) -> Path | None:
    """The first file DuckDB cannot load (every column parsed, as the real load does)."""
    try:
        for path in paths:
            try:
                con.execute(f"CREATE OR REPLACE TEMP TABLE probe AS SELECT * FROM {_read_json([path])}")
            except duckdb.Error:
                return path
        return None
    finally:
        con.execute("DROP TABLE IF EXISTS probe")


def _odd_files(con: Any) -> set[str]:
    rows = con.execute("SELECT DISTINCT odd_file FROM raw WHERE odd_file IS NOT NULL").fetchall()
    return {r[0] for r in rows}


# The LLM calls with the function each ran in (its parent span's).
_CALLS = """
    WITH fn AS (
        SELECT fn_span, any_value(fn_name) AS fn_name FROM raw
        WHERE fn_span IS NOT NULL AND fn_name IS NOT NULL GROUP BY fn_span
    )
    SELECT c.*, coalesce(fn.fn_name, '(none)') AS caller
    FROM raw AS c LEFT JOIN fn ON fn.fn_span = c.parent_span_id
    WHERE c.kind = 'llm' AND c.day >= ?
"""


def period_start(last_day: str | None, days: int | None) -> str:
    """The first day (YYYY-MM-DD) of ``days`` days ending on ``last_day``; "" means everything."""
    import datetime as dt

    if days is None or not last_day:
        return ""
    return (dt.date.fromisoformat(last_day) - dt.timedelta(days=days - 1)).isoformat()


def in_period(groups: Sequence[DailyGroup], days: int | None) -> list[DailyGroup]:
    """The groups of the ``days`` days ending on the newest one (an export may be old: not today)."""
    if not groups:
        return []
    first = period_start(max(g.day for g in groups), days)
    return [g for g in groups if g.day >= first]


def _repeated(con: Any, since: str | None) -> list[RepeatedPrompt]:
    rows = con.execute(
        f"""
        SELECT caller, provider, model, prompt_sha, any_value(prompt_head), count(*),
            coalesce(sum(cost_usd), 0), min(day), max(day)
        FROM ({_CALLS}) WHERE NOT failed AND prompt_sha IS NOT NULL
        GROUP BY caller, provider, model, prompt_sha HAVING count(*) > 1
        ORDER BY sum(cost_usd) DESC NULLS LAST LIMIT 100
        """,
        [since or ""],
    ).fetchall()
    return [RepeatedPrompt(*row) for row in rows]


def _long_prompts(con: Any, since: str | None) -> list[LongPrompts]:
    rows = con.execute(
        f"""
        WITH calls AS (
            SELECT provider, model, input_tokens AS tokens FROM ({_CALLS}) WHERE input_tokens IS NOT NULL
        ), q AS (
            SELECT provider, model, median(tokens) AS med, quantile_cont(tokens, 0.9) AS p90
            FROM calls GROUP BY ALL
        )
        SELECT c.provider, c.model, count(*), sum(c.tokens), any_value(q.med), any_value(q.p90),
            count(*) FILTER (WHERE c.tokens > q.p90),
            CAST(sum(greatest(c.tokens - q.p90, 0)) AS BIGINT)
        FROM calls AS c JOIN q USING (provider, model)
        GROUP BY c.provider, c.model ORDER BY sum(c.tokens) DESC
        """,
        [since or ""],
    ).fetchall()
    return [LongPrompts(*row) for row in rows]


def _groups(con: Any) -> list[DailyGroup]:
    rows = con.execute(
        f"""
        SELECT day, provider, model, caller AS function, response_model,
            count(*) AS calls,
            count(*) FILTER (WHERE failed) AS errors,
            coalesce(sum(input_tokens), 0) AS input_tokens,
            coalesce(sum(output_tokens), 0) AS output_tokens,
            coalesce(sum(cost_usd), 0) AS cost_usd,
            count(*) - count(cost_usd) AS unpriced,
            coalesce(sum(duration_ms), 0) AS latency_ms_sum,
            count(passed) AS evaluated,
            count(*) FILTER (WHERE passed) AS passed,
            coalesce(sum(cost_usd) FILTER (WHERE passed IS NOT NULL), 0) AS evaluated_cost_usd,
            coalesce(sum(confidence), 0) AS confidence_sum,
            count(*) FILTER (WHERE replayed) AS replayed
        FROM ({_CALLS})
        GROUP BY ALL
        ORDER BY day, provider, model, function, response_model
        """,
        [""],
    ).fetchall()
    return [DailyGroup(*row) for row in rows]
