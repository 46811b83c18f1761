"""Unit tests of ``cert_core._recording``: ``@trace``, spans, recorders and the default trace file."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cert_core import (
    DEFAULT_LOG_PATH,
    SCHEMA,
    Span,
    TraceRecord,
    TraceWriter,
    _recording,
    add_recorder,
    configure,
    current_span,
    format_timestamp,
    new_span_id,
    new_trace_id,
    read_traces,
    record_call,
    recording,
    recording_stats,
    remove_recorder,
    start_span,
    trace,
)


class ListRecorder:
    """Keeps every record it is given, in order."""

    def __init__(self) -> None:
        self.records: list[TraceRecord] = []

    def record(self, record: TraceRecord) -> None:
        self.records.append(record)


class BrokenRecorder:
    def record(self, record: TraceRecord) -> None:
        raise RuntimeError("recorder exploded")


class TracedFailure(Exception):
    pass


class UnreprableValue:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


@pytest.fixture(autouse=True)
def _isolated_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Write nothing in the repository, start from the default sink, and close this test's writers."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CERT_LOG_PATH", raising=False)
    configure(log_path=None)
    yield
    configure(log_path=None)
    root = tmp_path.resolve()
    for path, writer in list(_recording._writers_by_path.items()):
        if path.resolve().is_relative_to(root):
            writer.close()


def read_back(path: Path) -> list[TraceRecord]:
    _recording._writer_for(path).flush()
    return list(read_traces(path))


def only(records: list[TraceRecord]) -> TraceRecord:
    assert len(records) == 1, records
    return records[0]


def assert_well_formed(record: TraceRecord, function: str) -> None:
    assert record.kind == "function"
    assert record.function == function
    assert len(record.trace_id) == 32
    assert len(record.span_id) == 16
    assert record.duration_ms > 0
    assert record.start <= record.end
    # end_time is start_time plus the measured duration (both cut to microseconds)
    elapsed_ms = (record.end - record.start).total_seconds() * 1000
    assert elapsed_ms == pytest.approx(record.duration_ms, abs=0.0011)


@trace
def add(a: int, b: int = 0) -> int:
    return a + b


@trace
async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


@trace
def count_up(n: int, *, start: int = 0) -> Iterator[int]:
    yield from range(start, start + n)


@trace
async def async_count_up(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def collect_async(agen: AsyncIterator[Any]) -> list[Any]:
    async def consume() -> list[Any]:
        return [item async for item in agen]

    return asyncio.run(consume())


@pytest.mark.parametrize(
    ("decorate", "metadata"),
    [
        pytest.param(trace, None, id="bare"),
        pytest.param(trace(), None, id="called"),
        pytest.param(
            trace(metadata={"team": "search", "run": 3}), {"team": "search", "run": 3}, id="metadata"
        ),
    ],
)
def test_decorator_forms_record_a_sync_call(
    decorate: Callable[..., Any], metadata: dict[str, Any] | None
) -> None:
    def multiply(a: int, b: int) -> int:
        """Multiply two numbers."""
        return a * b

    traced = decorate(multiply)
    rec = ListRecorder()

    with recording(rec):
        assert traced(6, b=7) == 42

    record = only(rec.records)
    assert_well_formed(record, f"{__name__}.test_decorator_forms_record_a_sync_call.<locals>.multiply")
    assert record.input == {"args": ["6"], "kwargs": {"b": "7"}}
    assert record.output == "42"
    assert record.error is None
    assert record.parent_span_id is None
    assert record.metadata == metadata
    assert traced.__name__ == "multiply"
    assert traced.__doc__ == "Multiply two numbers."


def test_trace_name_replaces_the_qualified_name() -> None:
    @trace(name="pipeline.rank")
    def rank() -> None:
        pass

    rec = ListRecorder()
    with recording(rec):
        rank()

    assert only(rec.records).function == "pipeline.rank"


def test_sync_duration_covers_the_call() -> None:
    @trace
    def slow() -> str:
        time.sleep(0.01)
        return "done"

    rec = ListRecorder()
    with recording(rec):
        slow()

    record = only(rec.records)
    assert record.duration_ms >= 10
    assert_well_formed(record, f"{__name__}.test_sync_duration_covers_the_call.<locals>.slow")


def test_async_function_is_recorded_when_awaited() -> None:
    rec = ListRecorder()

    with recording(rec):
        assert asyncio.run(async_double(21)) == 42

    record = only(rec.records)
    assert_well_formed(record, f"{__name__}.async_double")
    assert record.input == {"args": ["21"], "kwargs": {}}
    assert record.output == "42"
    assert record.error is None


def test_generator_records_what_it_yielded() -> None:
    rec = ListRecorder()

    with recording(rec):
        items = list(count_up(3, start=5))

    assert items == [5, 6, 7]
    record = only(rec.records)
    assert_well_formed(record, f"{__name__}.count_up")
    assert record.input == {"args": ["3"], "kwargs": {"start": "5"}}
    assert record.output == {"yielded": 3, "items": ["5", "6", "7"]}
    assert record.error is None


def test_generator_keeps_the_first_50_items_and_counts_all() -> None:
    rec = ListRecorder()

    with recording(rec):
        assert sum(count_up(120)) == sum(range(120))

    output = only(rec.records).output
    assert output["yielded"] == 120
    assert output["items"] == [str(i) for i in range(50)]


def test_async_generator_records_what_it_yielded() -> None:
    rec = ListRecorder()

    with recording(rec):
        items = collect_async(async_count_up(4))

    assert items == [0, 1, 2, 3]
    record = only(rec.records)
    assert_well_formed(record, f"{__name__}.async_count_up")
    assert record.input == {"args": ["4"], "kwargs": {}}
    assert record.output == {"yielded": 4, "items": ["0", "1", "2", "3"]}


def test_log_path_writes_its_own_file_with_metadata(tmp_path: Path) -> None:
    own = tmp_path / "own.jsonl"

    @trace(log_path=own, metadata={"suite": "nightly"})
    def greet(name: str) -> str:
        return f"hello {name}"

    rec = ListRecorder()
    with recording(rec):
        greet("ada")
    greet("bob")  # no recorder: the own file still gets it

    records = read_back(own)
    assert [r.input["args"] for r in records] == [["'ada'"], ["'bob'"]]
    assert [r.output for r in records] == ["'hello ada'", "'hello bob'"]
    assert all(r.metadata == {"suite": "nightly"} for r in records)
    assert [r.seq for r in records] == [0, 1]  # one hash chain for the file
    assert only(rec.records).span_id == records[0].span_id


def test_decorators_naming_the_same_file_share_one_writer(tmp_path: Path) -> None:
    shared = tmp_path / "shared.jsonl"

    @trace(log_path=shared)
    def first() -> int:
        return 1

    @trace(log_path=str(shared))
    def second() -> int:
        return 2

    first()
    second()
    first()

    records = read_back(shared)
    assert [r.output for r in records] == ["1", "2", "1"]
    assert len({r.chain for r in records}) == 1
    assert [r.seq for r in records] == [0, 1, 2]


@trace
def fail_sync(exc: BaseException) -> None:
    raise exc


@trace
async def fail_async(exc: BaseException) -> None:
    await asyncio.sleep(0)
    raise exc


@trace
def fail_gen(exc: BaseException) -> Iterator[str]:
    yield "first"
    raise exc


@trace
async def fail_agen(exc: BaseException) -> AsyncIterator[str]:
    yield "first"
    await asyncio.sleep(0)
    raise exc


def run_fail_sync(exc: BaseException) -> None:
    fail_sync(exc)


def run_fail_async(exc: BaseException) -> None:
    asyncio.run(fail_async(exc))


def run_fail_gen(exc: BaseException) -> None:
    list(fail_gen(exc))


def run_fail_agen(exc: BaseException) -> None:
    collect_async(fail_agen(exc))


FAILING_KINDS = [
    pytest.param(run_fail_sync, "fail_sync", None, id="sync"),
    pytest.param(run_fail_async, "fail_async", None, id="async"),
    pytest.param(run_fail_gen, "fail_gen", {"yielded": 1, "items": ["'first'"]}, id="generator"),
    pytest.param(run_fail_agen, "fail_agen", {"yielded": 1, "items": ["'first'"]}, id="async-generator"),
]


@pytest.mark.parametrize(("run", "name", "output"), FAILING_KINDS)
def test_exception_is_recorded_and_reraised_unchanged(
    run: Callable[[BaseException], None], name: str, output: dict[str, Any] | None
) -> None:
    error = TracedFailure("disk full")
    rec = ListRecorder()

    with recording(rec), pytest.raises(TracedFailure) as excinfo:
        run(error)

    assert excinfo.value is error
    record = only(rec.records)
    assert_well_formed(record, f"{__name__}.{name}")
    assert record.error is not None
    assert record.error.type == "TracedFailure"
    assert record.error.message == "disk full"
    assert record.output == output
    assert record.input == {"args": ["TracedFailure('disk full')"], "kwargs": {}}


def test_base_exception_is_recorded_and_reraised() -> None:
    interrupt = KeyboardInterrupt("stop")
    rec = ListRecorder()

    with recording(rec), pytest.raises(KeyboardInterrupt) as excinfo:
        fail_sync(interrupt)

    assert excinfo.value is interrupt
    error = only(rec.records).error
    assert error is not None
    assert (error.type, error.message) == ("KeyboardInterrupt", "stop")


def test_exception_with_failing_str_is_still_recorded() -> None:
    class Mute(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str either")

    error = Mute()
    rec = ListRecorder()

    with recording(rec), pytest.raises(Mute) as excinfo:
        fail_sync(error)

    assert excinfo.value is error
    recorded = only(rec.records).error
    assert recorded is not None
    assert recorded.type.endswith("Mute")
    assert "str() failed" in recorded.message


def test_generator_send_reaches_the_generator() -> None:
    @trace
    def running_total() -> Iterator[int]:
        total = 0
        while True:
            value = yield total
            if value is None:
                return
            total += value

    rec = ListRecorder()
    with recording(rec):
        gen = running_total()
        assert next(gen) == 0
        assert gen.send(5) == 5
        assert gen.send(2) == 7
        with pytest.raises(StopIteration):
            gen.send(None)

    record = only(rec.records)
    assert record.output == {"yielded": 3, "items": ["0", "5", "7"]}
    assert record.error is None


def test_generator_throw_is_handled_inside_the_generator() -> None:
    @trace
    def resilient() -> Iterator[Any]:
        try:
            yield 1
        except ValueError as exc:
            yield f"recovered from {exc}"
        yield 3

    rec = ListRecorder()
    with recording(rec):
        gen = resilient()
        assert next(gen) == 1
        assert gen.throw(ValueError("bad value")) == "recovered from bad value"
        assert list(gen) == [3]

    record = only(rec.records)
    assert record.error is None
    assert record.output == {"yielded": 3, "items": ["1", "'recovered from bad value'", "3"]}


def test_generator_throw_not_handled_propagates_the_same_exception() -> None:
    error = ValueError("unhandled")
    rec = ListRecorder()

    with recording(rec):
        gen = count_up(5)
        next(gen)
        with pytest.raises(ValueError, match="unhandled") as excinfo:
            gen.throw(error)

    assert excinfo.value is error
    record = only(rec.records)
    assert record.error is not None
    assert record.error.type == "ValueError"
    assert record.output == {"yielded": 1, "items": ["0"]}


def test_generator_closed_early_is_recorded_and_cleaned_up() -> None:
    cleaned: list[bool] = []

    @trace
    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            cleaned.append(True)

    rec = ListRecorder()
    with recording(rec):
        gen = endless()
        assert [next(gen), next(gen)] == [0, 1]
        gen.close()

    assert cleaned == [True]
    record = only(rec.records)
    assert record.error is None
    assert record.output == {"yielded": 2, "items": ["0", "1"]}


def test_generator_return_value_reaches_yield_from() -> None:
    @trace
    def inner() -> Iterator[int]:
        yield 1
        return "inner result"

    def outer() -> Iterator[Any]:
        result = yield from inner()
        yield result

    rec = ListRecorder()
    with recording(rec):
        assert list(outer()) == [1, "inner result"]

    assert only(rec.records).output == {"yielded": 1, "items": ["1"]}


def test_async_generator_athrow_and_aclose_reach_the_generator() -> None:
    cleaned: list[bool] = []

    @trace
    async def resilient() -> AsyncIterator[Any]:
        try:
            try:
                yield 1
            except ValueError:
                yield "recovered"
            while True:
                yield 3
        finally:
            cleaned.append(True)

    async def main() -> list[Any]:
        agen = resilient()
        seen = [await agen.__anext__(), await agen.athrow(ValueError("x")), await agen.__anext__()]
        await agen.aclose()
        return seen

    rec = ListRecorder()
    with recording(rec):
        assert asyncio.run(main()) == [1, "recovered", 3]

    assert cleaned == [True]
    record = only(rec.records)
    assert record.error is None
    assert record.output == {"yielded": 3, "items": ["1", "'recovered'", "3"]}


@trace
def child_span() -> Span | None:
    return current_span()


@trace
def parent_span() -> tuple[Span | None, Span | None]:
    return current_span(), child_span()


def test_nested_call_is_a_child_of_the_outer_span() -> None:
    rec = ListRecorder()

    with recording(rec):
        seen_outer, seen_inner = parent_span()

    inner, outer = rec.records
    assert inner.function == f"{__name__}.child_span"
    assert outer.parent_span_id is None
    assert inner.parent_span_id == outer.span_id
    assert inner.trace_id == outer.trace_id
    assert seen_outer == Span(outer.trace_id, outer.span_id, None)
    assert seen_inner == Span(outer.trace_id, inner.span_id, outer.span_id)


def test_current_span_is_none_outside_traced_calls() -> None:
    assert current_span() is None
    rec = ListRecorder()
    with recording(rec):
        parent_span()
    assert current_span() is None


def test_separate_top_level_calls_start_separate_traces() -> None:
    rec = ListRecorder()

    with recording(rec):
        add(1)
        add(2)

    first, second = rec.records
    assert first.trace_id != second.trace_id
    assert first.span_id != second.span_id


def test_start_span_is_a_root_outside_and_a_child_inside() -> None:
    root = start_span()

    @trace
    def inside() -> tuple[Span, Span | None]:
        return start_span(), current_span()

    rec = ListRecorder()
    with recording(rec):
        child, own = inside()

    assert root.parent_span_id is None
    assert own is not None
    assert child.trace_id == own.trace_id
    assert child.parent_span_id == own.span_id
    assert child.span_id != own.span_id


def test_spans_nest_across_await_and_tasks() -> None:
    @trace
    async def fetch(i: int) -> Span | None:
        await asyncio.sleep(0)
        return current_span()

    @trace
    async def gather_all() -> list[Span | None]:
        first = await fetch(1)
        await asyncio.sleep(0)
        rest = await asyncio.gather(fetch(2), asyncio.create_task(fetch(3)))
        return [first, *rest]

    rec = ListRecorder()
    with recording(rec):
        spans = asyncio.run(gather_all())

    *children, parent = rec.records
    assert parent.function.endswith("gather_all")
    assert len(children) == 3
    assert {c.parent_span_id for c in children} == {parent.span_id}
    assert {c.trace_id for c in children} == {parent.trace_id}
    assert sorted(s.span_id for s in spans if s is not None) == sorted(c.span_id for c in children)


def test_calls_inside_a_generator_are_children_of_its_span() -> None:
    @trace
    def produce() -> Iterator[Span | None]:
        yield child_span()
        yield child_span()

    rec = ListRecorder()
    consumer_spans = []
    with recording(rec):
        for _ in produce():
            consumer_spans.append(current_span())  # the consumer is not inside the generator's span

    *children, gen_record = rec.records
    assert consumer_spans == [None, None]
    assert gen_record.function.endswith("produce")
    assert len(children) == 2
    assert all(c.parent_span_id == gen_record.span_id for c in children)
    assert all(c.trace_id == gen_record.trace_id for c in children)


def test_calls_inside_an_async_generator_are_children_of_its_span() -> None:
    @trace
    async def produce() -> AsyncIterator[int]:
        for i in range(2):
            yield await async_double(i)

    rec = ListRecorder()
    with recording(rec):
        assert collect_async(produce()) == [0, 2]

    *children, gen_record = rec.records
    assert len(children) == 2
    assert all(c.parent_span_id == gen_record.span_id for c in children)


@pytest.mark.parametrize(
    ("make", "run"),
    [
        pytest.param(
            lambda: trace(capture=False)(lambda secret: secret * 2), lambda f: f("token"), id="sync"
        ),
        pytest.param(
            lambda: trace(capture=False)(count_up.__wrapped__),  # type: ignore[attr-defined]
            lambda f: list(f(2)),
            id="generator",
        ),
    ],
)
def test_capture_false_records_neither_input_nor_output(
    make: Callable[[], Callable[..., Any]], run: Callable[[Callable[..., Any]], Any]
) -> None:
    traced = make()
    rec = ListRecorder()

    with recording(rec):
        run(traced)

    record = only(rec.records)
    assert record.input is None
    assert record.output is None
    assert record.duration_ms > 0


def test_long_reprs_are_cut_to_max_repr() -> None:
    @trace(max_repr=40)
    def echo(text: str) -> str:
        return text

    rec = ListRecorder()
    with recording(rec):
        assert echo("x" * 500) == "x" * 500

    record = only(rec.records)
    for captured in (record.input["args"][0], record.output):
        # reprlib keeps both ends of a long string and marks the cut in the middle
        assert len(captured) <= 40
        assert captured.startswith("'xxxx")
        assert captured.endswith("xxxx'")
        assert "..." in captured


def test_default_max_repr_bounds_captured_values() -> None:
    rec = ListRecorder()

    with recording(rec):
        add(10**3000, 1)

    assert len(only(rec.records).input["args"][0]) <= 1000


def test_max_repr_above_the_default_keeps_longer_values() -> None:
    @trace(max_repr=2000)
    def echo(text: str) -> str:
        return text

    rec = ListRecorder()
    with recording(rec):
        echo("y" * 1500)

    assert only(rec.records).input["args"][0] == repr("y" * 1500)


@pytest.mark.parametrize("max_repr", [0, 7, -1])
def test_max_repr_below_8_is_rejected(max_repr: int) -> None:
    with pytest.raises(ValueError, match=f"max_repr must be at least 8 characters, got {max_repr}"):
        trace(max_repr=max_repr)


@trace
def _identity(value: Any) -> Any:
    return value


def test_failing_repr_does_not_break_the_call() -> None:
    value = UnreprableValue()
    rec = ListRecorder()

    with recording(rec):
        result = _identity(value)

    assert result is value
    record = only(rec.records)
    assert record.error is None
    assert "UnreprableValue" in record.input["args"][0]
    assert "UnreprableValue" in record.output


def test_failing_repr_is_counted_in_capture_errors() -> None:
    before = recording_stats().capture_errors
    rec = ListRecorder()

    with recording(rec):
        _identity(UnreprableValue())

    assert recording_stats().capture_errors == before + 2  # the argument and the return value
    assert only(rec.records).input["args"][0] == "<UnreprableValue: repr failed>"


def test_recording_receives_calls_and_tasks_started_inside() -> None:
    rec = ListRecorder()

    async def main() -> None:
        with recording(rec):
            await asyncio.gather(asyncio.create_task(async_double(1)), asyncio.create_task(async_double(2)))
            late = asyncio.create_task(async_double(3))  # runs after the block, keeps its context
        await late
        await async_double(4)  # started outside: not recorded

    asyncio.run(main())

    assert sorted(r.output for r in rec.records) == ["2", "4", "6"]


def test_nested_recordings_both_receive_records() -> None:
    outer, inner = ListRecorder(), ListRecorder()

    with recording(outer):
        with recording(inner) as entered:
            assert entered is inner
            add(1, 1)
        add(2, 2)
    add(3, 3)

    assert [r.output for r in outer.records] == ["2", "4"]
    assert [r.output for r in inner.records] == ["2"]


def test_add_recorder_receives_records_from_a_plain_thread() -> None:
    rec = ListRecorder()
    add_recorder(rec)
    try:
        thread = threading.Thread(target=add, args=(20, 22))
        thread.start()
        thread.join()
    finally:
        remove_recorder(rec)
    add(1, 2)  # after removal: not received

    record = only(rec.records)
    assert record.output == "42"
    assert record.input == {"args": ["20", "22"], "kwargs": {}}


def test_add_recorder_twice_delivers_once_and_removing_unknown_is_harmless() -> None:
    rec = ListRecorder()
    remove_recorder(rec)  # never added: no error
    add_recorder(rec)
    add_recorder(rec)
    try:
        add(1)
    finally:
        remove_recorder(rec)

    assert len(rec.records) == 1


def test_context_recorder_reaches_threads_only_through_a_copied_context() -> None:
    rec = ListRecorder()

    with recording(rec):
        plain = threading.Thread(target=add, args=(1,))
        plain.start()
        plain.join()
        context = contextvars.copy_context()
        copied = threading.Thread(target=context.run, args=(add, 2))
        copied.start()
        copied.join()

    assert [r.output for r in rec.records] == ["2"]


def test_failing_recorder_does_not_break_the_call_and_is_counted_once_in_the_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_recording, "_reported", set())  # the "log once" memory is process-wide
    caplog.set_level(logging.ERROR, logger="cert_core")
    before = recording_stats().recorder_errors
    good = ListRecorder()

    with recording(BrokenRecorder()), recording(good):
        assert add(1, 2) == 3
        assert add(3, 4) == 7

    stats = recording_stats()
    assert stats.recorder_errors == before + 2
    assert stats.last_error is not None
    assert "RuntimeError: recorder exploded" in stats.last_error
    assert [r.output for r in good.records] == ["3", "7"]
    logged = [r for r in caplog.records if r.name == "cert_core"]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert "recorder exploded" in logged[0].getMessage()


def test_recording_stats_is_a_snapshot() -> None:
    snapshot = recording_stats()
    snapshot.recorder_errors += 1000

    assert recording_stats().recorder_errors == snapshot.recorder_errors - 1000


def test_without_recorder_records_go_to_the_configured_file(tmp_path: Path) -> None:
    path = tmp_path / "configured.jsonl"
    configure(log_path=path)

    add(5, 6)

    record = only(read_back(path))
    assert record.function == f"{__name__}.add"
    assert record.output == "11"


def test_without_configuration_records_go_to_cert_log_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.jsonl"
    monkeypatch.setenv("CERT_LOG_PATH", str(path))
    configure(log_path=None)

    add(7, 8)

    assert only(read_back(path)).output == "15"
    assert not (tmp_path / DEFAULT_LOG_PATH).exists()


def test_configure_wins_over_cert_log_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERT_LOG_PATH", str(tmp_path / "from-env.jsonl"))
    configured = tmp_path / "configured.jsonl"
    configure(log_path=configured)

    add(1, 1)

    assert only(read_back(configured)).output == "2"
    assert not (tmp_path / "from-env.jsonl").exists()


def test_without_any_setting_records_go_to_cert_traces_jsonl_in_the_working_directory(tmp_path: Path) -> None:
    add(2, 3)

    assert only(read_back(Path(DEFAULT_LOG_PATH))).output == "5"
    assert (tmp_path / "cert_traces.jsonl").is_file()


def test_active_recorder_keeps_records_out_of_the_default_file(tmp_path: Path) -> None:
    path = tmp_path / "configured.jsonl"
    configure(log_path=path)
    add(1, 0)  # no recorder: written to the file
    rec = ListRecorder()

    with recording(rec):
        add(2, 0)

    assert [r.output for r in read_back(path)] == ["1"]
    assert only(rec.records).output == "2"


def test_configure_switches_the_default_file(tmp_path: Path) -> None:
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    configure(log_path=first)
    add(1, 0)
    configure(log_path=second)  # closes the first writer, flushing it
    add(2, 0)

    assert [r.output for r in read_traces(first)] == ["1"]
    assert [r.output for r in read_back(second)] == ["2"]


def _manual_record(function: str) -> TraceRecord:
    now = format_timestamp(time.time_ns())
    return TraceRecord(
        schema=SCHEMA,
        trace_id=new_trace_id(),
        span_id=new_span_id(),
        start_time=now,
        end_time=now,
        duration_ms=0.0,
        kind="function",
        function=function,
    )


def test_record_call_hands_the_record_to_recorders_and_the_given_writer(tmp_path: Path) -> None:
    record = _manual_record("manual.step")
    rec = ListRecorder()

    with TraceWriter(tmp_path / "explicit.jsonl") as writer, recording(rec):
        record_call(record, writer=writer)

    assert rec.records == [record]
    assert rec.records[0] is record
    written = only(list(read_traces(tmp_path / "explicit.jsonl")))
    assert written.function == "manual.step"
    assert written.span_id == record.span_id


def test_record_call_never_raises_for_a_broken_recorder() -> None:
    before = recording_stats().recorder_errors

    with recording(BrokenRecorder()):
        record_call(_manual_record("manual.broken"))

    assert recording_stats().recorder_errors == before + 1


@pytest.mark.parametrize("kind", ["recursive", "unreprable"])
def test_unserialisable_metadata_drops_each_record_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    own = tmp_path / "own.jsonl"
    value: Any = UnreprableValue()
    if kind == "recursive":
        value = {}
        value["itself"] = value

    @trace(log_path=own, metadata={"value": value})
    def step() -> int:
        return 1

    with caplog.at_level(logging.ERROR, logger="cert_core"):
        assert step() == 1  # the call is never broken by its record
        assert step() == 1

    writer = _recording._writer_for(own)
    writer.flush()
    assert writer.stats.dropped == 2
    assert writer.stats.written == 0
    assert "could not be serialised" in caplog.text
