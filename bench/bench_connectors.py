"""Overhead of the OpenAI / Anthropic instrumentation, against the bare SDK and OpenLLMetry.

Run: ``python bench/bench_connectors.py`` (needs the ``openai``, ``anthropic`` and, for the
OpenLLMetry column, ``opentelemetry-sdk`` + ``opentelemetry-instrumentation-openai`` packages:
``pip install -e ".[bench]"``). Every call goes through the real SDK over an in-process mock
transport, so what is measured is the SDK's own work plus ours; records are written to a trace
file, as in real use. Batches of instrumented and bare calls alternate and the figure is the
median of their paired differences, which keeps load from elsewhere on a shared machine out.

Figures (last line, JSON): ``openai_overhead_us`` and ``anthropic_overhead_us`` (median extra
time per non-streamed call), ``stream_chunk_overhead_us`` (per chunk of a 100-chunk stream),
``openllmetry_overhead_us`` (the same OpenAI call instrumented by OpenLLMetry with an in-memory
span exporter instead of ours).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai

import cert_core
from cert_core.testing import FakeLLM, Reply, openai_chat_chunks

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def batch_us(fn: Callable[[], object], batch: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(batch):
        fn()
    return (time.perf_counter_ns() - t0) / batch / 1000


def paired_extra_us(
    setup_on: Callable[[], None],
    setup_off: Callable[[], None],
    fn: Callable[[], object],
    batch: int,
    repeats: int,
) -> tuple[float, float]:
    """(median extra time per call with the instrumentation on, median bare time per call)."""
    diffs, bare = [], []
    for _ in range(repeats):
        setup_off()
        off = batch_us(fn, batch)
        setup_on()
        on = batch_us(fn, batch)
        diffs.append(on - off)
        bare.append(off)
    setup_off()
    return statistics.median(diffs), statistics.median(bare)


class FileRecorder:
    def __init__(self, path: Path) -> None:
        self.writer = cert_core.TraceWriter(path)

    def record(self, record: cert_core.TraceRecord) -> None:
        self.writer.write(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=20, help="Calls per batch (default 20)")
    parser.add_argument("--repeats", type=int, default=41, help="Batch pairs per figure (default 41)")
    args = parser.parse_args()

    answer = "Paris is the capital of France."
    fake = FakeLLM().openai_chat(answer).anthropic(answer)
    pieces = [f"word{i} " for i in range(98)]
    fake.add("/stream/chat/completions", Reply(stream=openai_chat_chunks(pieces), done=True))
    oc = openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=fake.transport()))
    ac = anthropic.Anthropic(api_key="sk-ant-test", http_client=httpx2.Client(transport=fake.transport()))
    streaming = openai.OpenAI(
        api_key="sk-test",
        base_url="http://mock/stream",
        http_client=httpx2.Client(transport=fake.transport()),
    )

    def openai_call() -> object:
        return oc.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    def anthropic_call() -> object:
        return ac.messages.create(model="claude-sonnet-4-20250514", max_tokens=64, messages=MESSAGES)  # type: ignore[arg-type]

    def stream_call() -> object:
        stream = streaming.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        count = sum(1 for _ in stream)
        assert count == 101, count
        return count

    with tempfile.TemporaryDirectory() as tmp:
        recorder = FileRecorder(Path(tmp) / "traces.jsonl")
        cert_core.add_recorder(recorder)

        def on() -> None:
            cert_core.instrument()

        def off() -> None:
            cert_core.uninstrument()

        for fn in (openai_call, anthropic_call, stream_call):  # warm up imports, caches, pricing
            on()
            for _ in range(20):
                fn()
            off()
        openai_extra, openai_bare = paired_extra_us(on, off, openai_call, args.batch, args.repeats)
        anthropic_extra, anthropic_bare = paired_extra_us(on, off, anthropic_call, args.batch, args.repeats)
        stream_batch = max(1, args.batch // 4)
        stream_extra, stream_bare = paired_extra_us(on, off, stream_call, stream_batch, args.repeats)
        recorder.writer.close()
        cert_core.remove_recorder(recorder)
        written = recorder.writer.stats.written
        openllmetry = measure_openllmetry(openai_call, args)

    figures: dict[str, Any] = {
        "openai_overhead_us": round(openai_extra, 1),
        "anthropic_overhead_us": round(anthropic_extra, 1),
        "stream_chunk_overhead_us": round(stream_extra / 101, 2),
        "openllmetry_overhead_us": None if openllmetry is None else round(openllmetry, 1),
    }
    versions = f"openai {openai.__version__}, anthropic {anthropic.__version__}"
    print(f"bench_connectors: {versions}, {written} records written")
    print(f"{'figure':28} {'measured':>10} {'bare SDK call':>14} {'target':>10}")
    rows = [
        ("openai_overhead_us", openai_bare, "<= 50"),
        ("anthropic_overhead_us", anthropic_bare, "<= 50"),
        ("stream_chunk_overhead_us", stream_bare / 101, "<= 2"),
        ("openllmetry_overhead_us", openai_bare, "> ours"),
    ]
    for key, bare, target in rows:
        value = figures[key]
        print(f"{key:28} {'n/a' if value is None else value:>10} {bare:>12.1f}us {target:>10}")
    print(json.dumps(figures))


def measure_openllmetry(openai_call: Callable[[], object], args: argparse.Namespace) -> float | None:
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        print("OpenLLMetry not installed (pip install -e '.[bench]'): its column is left empty")
        return None
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    instrumentor = OpenAIInstrumentor()

    def on() -> None:
        instrumentor.instrument(tracer_provider=provider)

    def off() -> None:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        exporter.clear()

    on()
    for _ in range(20):
        openai_call()
    spans = len(exporter.get_finished_spans())
    off()
    if spans == 0:
        print("OpenLLMetry made no span for this openai version: its column is left empty")
        return None
    extra, _ = paired_extra_us(on, off, openai_call, args.batch, args.repeats)
    return extra


if __name__ == "__main__":
    main()
