"""Overhead of the OpenAI / Anthropic instrumentation, against the bare SDK and OpenLLMetry.

Run: ``python bench/bench_connectors.py`` (needs ``openai``, ``anthropic`` and, for the OpenLLMetry
column, ``opentelemetry-sdk`` + ``opentelemetry-instrumentation-openai``: ``pip install -e ".[bench]"``).
Every call goes through the real SDK over an in-process mock transport, so what is measured is the
SDK's own work plus the instrumentation's; cert_core writes its records to a trace file, as in real
use, and OpenLLMetry exports its spans to memory.

Method. Each instrumentation runs in its own worker process, set up once as in real use, and times
batches of calls after a warm-up; the workers run in rotating order, round after round, and a
figure is the median over rounds of (worker's median time per call - bare worker's). Switching
instrumentation on and off inside one process would measure the cost of switching (class
attributes rewritten, Python's specialised bytecode thrown away), not the steady state; and
OpenLLMetry's ``uninstrument`` leaves its wrappers in place, so it cannot be switched at all.

``--instructions`` instead counts the CPU instructions of an OpenAI call with valgrind's callgrind
(deterministic, about ten minutes): a worker makes 10 calls, another 70, with the garbage
collector off, and the difference divided by 60 is the cost of one call, bare and instrumented.
Its last line is JSON with ``instructions_per_call_bare``, ``instructions_per_call_cert`` and
``extra_instructions_pct``.

``--in-situ`` times cert_core's own code inside each instrumented call (every piece of it runs
through ``contained()`` or the stream collector's ``feed``, both wrapped with a clock) in one
process with the trace file writer on, and prints the median per call: ``in_situ_openai_us``,
``in_situ_anthropic_us``, ``in_situ_stream_chunk_us``. It resolves what the process comparison
cannot on a noisy machine, but leaves out indirect costs (caches, the garbage collector).

Figures (last line, JSON): ``openai_overhead_us`` and ``anthropic_overhead_us`` (median extra time
per non-streamed call), ``stream_chunk_overhead_us`` (per chunk of a 101-chunk OpenAI stream),
``openllmetry_overhead_us`` (the same OpenAI call, instrumented by OpenLLMetry instead).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
WORKLOADS = {"openai": 200, "anthropic": 200, "stream": 20}  # calls per worker
STREAM_CHUNKS = 101


def batch_us(fn: Callable[[], object], batch: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(batch):
        fn()
    return (time.perf_counter_ns() - t0) / batch / 1000


class FileRecorder:
    def __init__(self, path: Path) -> None:
        import cert_core

        self.writer = cert_core.TraceWriter(path)

    def record(self, record: object) -> None:
        self.writer.write(record)  # type: ignore[arg-type]


class ListRecorder:
    def __init__(self, kept: list[object]) -> None:
        self.kept = kept

    def record(self, record: object) -> None:
        self.kept.append(record)


def worker(
    mode: str, workload: str, calls: int, *, count_only: bool = False, spent: list[int] | None = None
) -> None:
    """One measuring process; prints its median time per call over batches."""
    import anthropic
    import httpx2
    import openai

    import cert_core
    from cert_core.testing import FakeLLM, Reply, openai_chat_chunks

    answer = "Paris is the capital of France."
    fake = FakeLLM().openai_chat(answer).anthropic(answer)
    pieces = [f"word{i} " for i in range(STREAM_CHUNKS - 3)]
    fake.add(
        "/chat/completions",
        Reply(fake.replies["/chat/completions"][0].body, stream=openai_chat_chunks(pieces)),
    )
    fake.replies["/chat/completions"].pop(0)
    transport = fake.transport()
    oc = openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=transport))
    ac = anthropic.Anthropic(api_key="sk-ant-test", http_client=httpx2.Client(transport=transport))
    exporter = None
    if mode == "cert" and count_only:
        # Records kept in memory: a file writer's background flusher would add instructions in
        # proportion to valgrind's (very long) run time, not to the calls. Writing costs what
        # bench_store.py measures.
        kept: list[object] = []
        cert_core.add_recorder(ListRecorder(kept))
        cert_core.instrument()
    elif mode == "cert":
        recorder = FileRecorder(Path(tempfile.mkdtemp()) / "traces.jsonl")
        cert_core.add_recorder(recorder)
        cert_core.instrument()
    elif mode == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        OpenAIInstrumentor().instrument(tracer_provider=provider)

    def openai_call() -> object:
        return oc.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    def anthropic_call() -> object:
        return ac.messages.create(model="claude-sonnet-4-20250514", max_tokens=64, messages=MESSAGES)  # type: ignore[arg-type]

    def stream_call() -> object:
        stream = oc.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        count = sum(1 for _ in stream)
        assert count == STREAM_CHUNKS, count
        return count

    call = {"openai": openai_call, "anthropic": anthropic_call, "stream": stream_call}[workload]
    if count_only:  # under callgrind: just the calls, with no collector pauses to skew the count
        import gc

        for _ in range(10):  # the same warm-up in every run, so it cancels out
            call()
        gc.collect()
        gc.disable()
        for _ in range(calls):
            fake.requests.clear()
            call()
        return
    if spent is not None:  # --in-situ: the time our code took inside each call
        for _ in range(max(10, calls // 5)):
            call()
        own = []
        for _ in range(calls):
            fake.requests.clear()
            spent[0] = 0
            call()
            own.append(spent[0] / 1000)
        print(statistics.median(own))
        return
    batch = 10 if workload != "stream" else 2
    for _ in range(max(10, calls // 5)):
        call()
    samples = []
    for _ in range(calls // batch):
        fake.requests.clear()
        samples.append(batch_us(call, batch))
    if exporter is not None:
        assert len(exporter.get_finished_spans()) >= calls, "OpenLLMetry made no spans for these calls"
    if mode == "cert":
        recorder.writer.close()
        assert recorder.writer.stats.written >= calls, recorder.writer.stats
        assert cert_core.instrumentation_stats().errors == 0, cert_core.instrumentation_stats()
    print(statistics.median(samples))


def run_worker(mode: str, workload: str, calls: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--workload", workload, "--calls", str(calls)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.split()[-1])


def count_instructions() -> None:
    import os
    import re

    def instructions(mode: str, calls: int) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={tmp}/callgrind.out",
                    sys.executable,
                    __file__,
                    "--worker",
                    mode,
                    "--workload",
                    "openai",
                    "--calls",
                    str(calls),
                    "--count-only",
                ],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONHASHSEED": "0"},
            ).stderr
        match = re.search(r"I\s+refs:\s+([\d,]+)", out)
        assert match, out[-2000:]
        return int(match.group(1).replace(",", ""))

    per_call = {}
    for mode in ("bare", "cert"):
        per_call[mode] = (instructions(mode, 70) - instructions(mode, 10)) / 60
    extra = per_call["cert"] - per_call["bare"]
    figures = {
        "instructions_per_call_bare": round(per_call["bare"]),
        "instructions_per_call_cert": round(per_call["cert"]),
        "extra_instructions_pct": round(100 * extra / per_call["bare"], 2),
    }
    print("bench_connectors --instructions: one OpenAI chat call through the real SDK and a mock transport")
    print(f"{'bare SDK':>12} {per_call['bare']:>14,.0f} instructions per call")
    print(f"{'cert_core':>12} {per_call['cert']:>14,.0f} instructions per call (+{extra:,.0f})")
    print(json.dumps(figures))


IN_SITU_CALLS = 2000


def in_situ(calls: int = IN_SITU_CALLS) -> None:
    """Time our own code inside instrumented calls (one process, the trace file writer on).

    Every piece of instrumentation work that runs inside a call goes through ``contained()``
    (call start, response, stream end) or the stream collector's ``feed`` (per chunk); both are
    wrapped with a clock here. What this leaves out is small (two context-variable operations and
    one generator frame per chunk); what it shows is the cost that the per-process comparison
    cannot resolve on a noisy machine.
    """
    calls_of = {"openai": calls, "anthropic": calls, "stream": max(20, calls // 10)}
    per_call: dict[str, float] = {}
    for workload, n in calls_of.items():
        out = subprocess.run(
            [sys.executable, __file__, "--in-situ-worker", workload, "--calls", str(n)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        per_call[workload] = float(out.split()[-1])
    figures = {
        "in_situ_openai_us": round(per_call["openai"], 1),
        "in_situ_anthropic_us": round(per_call["anthropic"], 1),
        "in_situ_stream_chunk_us": round(per_call["stream"] / STREAM_CHUNKS, 2),
    }
    print("bench_connectors --in-situ: median time spent in cert_core's code per call (trace file on)")
    for key, value in figures.items():
        print(f"{key:28} {value:>10}")
    print(json.dumps(figures))


def in_situ_worker(workload: str, calls: int) -> None:
    import cert_core.connectors as connectors
    from cert_core.connectors import _EventCollector

    spent = [0]
    clock = time.perf_counter_ns

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += clock() - t0

        return run

    connectors.contained = timed(connectors.contained)  # type: ignore[assignment]
    _EventCollector.feed = timed(_EventCollector.feed)  # type: ignore[method-assign]
    worker("cert", workload, calls, spent=spent)


def has_openllmetry() -> bool:
    try:
        import opentelemetry.instrumentation.openai
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="Rounds of worker processes (default 9)")
    parser.add_argument("--worker", choices=["bare", "cert", "openllmetry"], help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=list(WORKLOADS), help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument("--count-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--in-situ-worker", choices=list(WORKLOADS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--in-situ",
        action="store_true",
        help="Time cert_core's own code inside each instrumented call instead",
    )
    parser.add_argument(
        "--instructions", action="store_true", help="Count CPU instructions per call with valgrind instead"
    )
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.workload, args.calls, count_only=args.count_only)
        return
    if args.in_situ_worker:
        in_situ_worker(args.in_situ_worker, args.calls)
        return
    if args.instructions:
        count_instructions()
        return
    if args.in_situ:
        in_situ()
        return

    import anthropic
    import openai

    otel = has_openllmetry()
    if not otel:
        print("OpenLLMetry not installed (pip install -e '.[bench]'): its column is left empty")
    extra: dict[tuple[str, str], list[float]] = {}
    bare: dict[str, list[float]] = {w: [] for w in WORKLOADS}
    for workload, calls in WORKLOADS.items():
        modes = ["bare", "cert"] + (["openllmetry"] if workload == "openai" and otel else [])
        for round_ in range(args.rounds):
            order = modes[round_ % len(modes) :] + modes[: round_ % len(modes)]
            times = {mode: run_worker(mode, workload, calls) for mode in order}
            bare[workload].append(times["bare"])
            for mode in modes[1:]:
                extra.setdefault((workload, mode), []).append(times[mode] - times["bare"])

    def med(key: tuple[str, str]) -> float | None:
        return statistics.median(extra[key]) if key in extra else None

    stream = med(("stream", "cert"))
    otel_extra = med(("openai", "openllmetry"))
    figures = {
        "openai_overhead_us": round(med(("openai", "cert")) or 0.0, 1),
        "anthropic_overhead_us": round(med(("anthropic", "cert")) or 0.0, 1),
        "stream_chunk_overhead_us": round((stream or 0.0) / STREAM_CHUNKS, 2),
        "openllmetry_overhead_us": None if otel_extra is None else round(otel_extra, 1),
    }
    print(
        f"bench_connectors: openai {openai.__version__}, anthropic {anthropic.__version__}, "
        f"{args.rounds} rounds of one process per instrumentation"
    )
    print(f"{'figure':28} {'measured':>10} {'bare SDK call':>14} {'target':>10}")
    rows = [
        ("openai_overhead_us", statistics.median(bare["openai"]), "<= 50"),
        ("anthropic_overhead_us", statistics.median(bare["anthropic"]), "<= 50"),
        ("stream_chunk_overhead_us", statistics.median(bare["stream"]) / STREAM_CHUNKS, "<= 2"),
        ("openllmetry_overhead_us", statistics.median(bare["openai"]), "> ours"),
    ]
    for key, base, target in rows:
        value = figures[key]
        shown = "n/a" if value is None else value
        print(f"{key:28} {shown:>10} {base:>12.1f}us {target:>10}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
