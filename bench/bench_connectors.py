"""Overhead of the OpenAI / Anthropic instrumentation, against the bare SDK and OpenLLMetry.

Run: ``python bench/bench_connectors.py`` (needs ``openai``, ``anthropic`` and, for the OpenLLMetry
column, ``opentelemetry-sdk`` + ``opentelemetry-instrumentation-openai``: ``pip install -e ".[bench]"``).
Every call goes through the real SDK over an in-process mock transport, so what is measured is the
SDK's own work plus the instrumentation's; cert_core writes its records to a trace file, as in real
use, and OpenLLMetry exports its spans to memory.

Method. cert_core's figures come from one process per workload that switches the
instrumentation on and off between single calls (``instrument()`` / ``uninstrument()``, outside
the timed call), in the order bare, instrumented, instrumented, bare, ..., for thousands of pairs:
each pair's difference shares the machine's state of the moment (this shared virtual machine's
speed drifts by a third over a day, and separate processes differ by more than the overhead
itself); ``--control`` runs the same pairs with both calls bare and prints what the method
measures when there is nothing to measure (it should be a few microseconds). Records go to
the default trace file, as in production (``cert_core.configure(log_path=...)``); they are built
in batches (``cert_core.flush_records``), so most calls carry only their own share and one in 64
carries the batch: the median is the typical call, the mean (also printed) includes the batches.
OpenLLMetry's ``uninstrument`` leaves its wrappers in place, so it cannot be switched off: it is
compared process against process with the bare SDK, in rotating order, median over rounds.

``--instructions`` instead counts the CPU instructions of an OpenAI call with valgrind's callgrind
(deterministic, about ten minutes): a worker makes 10 calls, another 70, with the garbage
collector off, and the difference divided by 60 is the cost of one call, bare and instrumented.
Its last line is JSON with ``instructions_per_call_bare``, ``instructions_per_call_cert`` and
``extra_instructions_pct``.

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

import callgrind

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
WORKLOADS = {"openai": 200, "anthropic": 200, "stream": 20}  # calls per worker
STREAM_CHUNKS = 101


def batch_us(fn: Callable[[], object], batch: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(batch):
        fn()
    return (time.perf_counter_ns() - t0) / batch / 1000


class ListRecorder:
    cert_deferred = True  # takes records built in batches, as the trace file does

    def __init__(self, kept: list[object]) -> None:
        self.kept = kept

    def record(self, record: object) -> None:
        self.kept.append(record)


def worker(mode: str, workload: str, calls: int, *, count_only: bool = False, control: bool = False) -> None:
    """One measuring process: ``toggle`` (cert_core, see :func:`toggled`), ``cert`` with
    ``count_only`` (under valgrind), or ``bare`` / ``openllmetry`` timed in batches (prints the
    median time per call)."""
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
        # bench_store.py measures. The recorder takes records built in batches, as a file does.
        kept: list[object] = []
        cert_core.add_recorder(ListRecorder(kept))
        cert_core.instrument()
    elif mode == "toggle":
        trace_file = Path(tempfile.mkdtemp()) / "traces.jsonl"
        cert_core.configure(log_path=trace_file)
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
        cert_core.flush_records()  # the records still waiting are built: every call is counted
        return
    if mode == "toggle":  # cert_core switched on and off between single calls
        print(json.dumps(toggled(call, fake, trace_file, calls, control=control)))
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
    print(statistics.median(samples))


TOGGLE_PAIRS = {"openai": 4000, "anthropic": 4000, "stream": 3000}


def toggled(
    call: Callable[[], object], fake: Any, trace_file: Path, pairs: int, *, control: bool = False
) -> dict[str, Any]:
    """Pairs of single calls, bare and instrumented, in the order ABBA ABBA ... (see the method);
    ``control``: both calls of each pair bare, switched off and on again the same way."""
    import cert_core

    clock = time.perf_counter_ns
    for switch in (cert_core.instrument, cert_core.uninstrument):  # warm both ways
        switch()
        for _ in range(50):
            call()
    diffs: list[float] = []
    bare: list[float] = []
    instrumented = 50
    previous = "bare"
    for pair in range(pairs):
        took = {}
        for mode in ("bare", "cert") if pair % 2 == 0 else ("cert", "bare"):
            if mode != previous:  # switching happens where the mode changes, before either kind
                if control:  # the same switching, ending bare
                    cert_core.instrument()
                    cert_core.uninstrument()
                elif mode == "cert":
                    cert_core.instrument()
                else:
                    cert_core.uninstrument()
            previous = mode
            instrumented += mode == "cert" and not control
            t0 = clock()
            call()
            took[mode] = (clock() - t0) / 1000
            fake.requests.clear()
        diffs.append(took["cert"] - took["bare"])
        bare.append(took["bare"])
    cert_core.uninstrument()
    cert_core.configure(log_path=None)  # builds the waiting records and closes the file
    with trace_file.open("rb") as lines:
        written = sum(1 for _ in lines)
    assert written == instrumented, f"{written} records for {instrumented} instrumented calls"
    assert cert_core.instrumentation_stats().errors == 0, cert_core.instrumentation_stats()
    return {
        "median_us": statistics.median(diffs),
        "mean_us": statistics.fmean(diffs),
        "bare_us": statistics.median(bare),
        "pairs": pairs,
    }


def run_toggle(workload: str, pairs: int, *, control: bool = False) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", "toggle", "--workload", workload, "--calls", str(pairs)]
    out = subprocess.run(
        command + (["--control"] if control else []), capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def run_worker(mode: str, workload: str, calls: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--workload", workload, "--calls", str(calls)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.split()[-1])


def count_instructions() -> None:
    def instructions(mode: str, calls: int) -> int:
        worker = ["--worker", mode, "--workload", "openai", "--calls", str(calls), "--count-only"]
        return callgrind.instructions([sys.executable, __file__, *worker])

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
    parser.add_argument("--worker", choices=["bare", "cert", "openllmetry", "toggle"], help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=list(WORKLOADS), help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument("--count-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--control",
        action="store_true",
        help="Both calls of each pair bare: what the method reads as zero",
    )
    parser.add_argument(
        "--instructions", action="store_true", help="Count CPU instructions per call with valgrind instead"
    )
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.workload, args.calls, count_only=args.count_only, control=args.control)
        return
    if args.control:
        controls = {w: run_toggle(w, TOGGLE_PAIRS[w], control=True) for w in WORKLOADS}
        print("bench_connectors --control: the same pairs, both calls bare (the switching done alike)")
        chunks_of = {"stream": STREAM_CHUNKS}
        zero: dict[str, float] = {}
        for workload, row in controls.items():
            unit = "us per chunk" if workload in chunks_of else "us per call"
            zero[f"control_{workload}_median_us"] = round(row["median_us"] / chunks_of.get(workload, 1), 2)
            zero[f"control_{workload}_mean_us"] = round(row["mean_us"] / chunks_of.get(workload, 1), 2)
            print(
                f"{workload:10} median {zero[f'control_{workload}_median_us']:>8} mean "
                f"{zero[f'control_{workload}_mean_us']:>8} {unit}"
            )
        print(json.dumps(zero))
        return
    if args.instructions:
        count_instructions()
        return

    import anthropic
    import openai

    otel = has_openllmetry()
    if not otel:
        print("OpenLLMetry not installed (pip install -e '.[bench]'): its column is left empty")
    ours = {workload: run_toggle(workload, TOGGLE_PAIRS[workload]) for workload in WORKLOADS}
    # OpenLLMetry cannot be switched off again (its uninstrument leaves the wrappers in place):
    # it is compared process against process, bare and instrumented in rotating order.
    otel_extra: list[float] = []
    otel_bare: list[float] = []
    for round_ in range(args.rounds if otel else 0):
        order = ("bare", "openllmetry") if round_ % 2 == 0 else ("openllmetry", "bare")
        times = {mode: run_worker(mode, "openai", WORKLOADS["openai"]) for mode in order}
        otel_extra.append(times["openllmetry"] - times["bare"])
        otel_bare.append(times["bare"])
    figures = {
        "openai_overhead_us": round(ours["openai"]["median_us"], 1),
        "anthropic_overhead_us": round(ours["anthropic"]["median_us"], 1),
        "stream_chunk_overhead_us": round(ours["stream"]["median_us"] / STREAM_CHUNKS, 2),
        "openllmetry_overhead_us": round(statistics.median(otel_extra), 1) if otel_extra else None,
        # The mean includes the calls that built a batch of records (see the method).
        "openai_mean_overhead_us": round(ours["openai"]["mean_us"], 1),
        "anthropic_mean_overhead_us": round(ours["anthropic"]["mean_us"], 1),
        "stream_chunk_mean_overhead_us": round(ours["stream"]["mean_us"] / STREAM_CHUNKS, 2),
    }
    print(
        f"bench_connectors: openai {openai.__version__}, anthropic {anthropic.__version__}; cert_core "
        "switched on and off between single calls (pairs), OpenLLMetry process against process "
        f"({len(otel_extra)} rounds)"
    )
    print(f"{'figure':28} {'median':>8} {'mean':>8} {'bare SDK call':>14} {'pairs':>6} {'target':>8}")
    per_chunk = {"stream": STREAM_CHUNKS}
    for workload, key, target in (
        ("openai", "openai_overhead_us", "<= 50"),
        ("anthropic", "anthropic_overhead_us", "<= 50"),
        ("stream", "stream_chunk_overhead_us", "<= 2"),
    ):
        scale = per_chunk.get(workload, 1)
        row = ours[workload]
        print(
            f"{key:28} {row['median_us'] / scale:>8.2f} {row['mean_us'] / scale:>8.2f} "
            f"{row['bare_us'] / scale:>12.1f}us {row['pairs']:>6} {target:>8}"
        )
    otel_value = figures["openllmetry_overhead_us"]
    otel_base = statistics.median(otel_bare) if otel_bare else 0.0
    shown = "n/a" if otel_value is None else f"{otel_value:.2f}"
    rounds = len(otel_extra)
    print(f"{'openllmetry_overhead_us':28} {shown:>8} {'':>8} {otel_base:>12.1f}us {rounds:>6} {'> ours':>8}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
