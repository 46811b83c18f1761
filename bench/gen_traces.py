"""Synthetic production traces for the analysis benchmarks (never committed: generate them).

    python bench/gen_traces.py 1000000 /tmp/traces.jsonl [--days 60] [--seed 7]

Each LLM call is one ``cert.trace/1`` record of about 1 KB, as the connectors write them: a
RAG-style chat call with a prompt and an answer, usage, a price, a latency, now and then an error,
and (for a third of them) an evaluation against a reference. Calls come in groups of ten made
by one ``@trace`` function (its record comes first; the calls name it as their parent), so
breakdowns by function have something to join. The mix is
realistic enough for the analysis to find what it looks for: a few functions that always send
the same prompt (cache candidates), one that runs on an expensive model while scoring high
(downgrade candidate), very long prompts in one function, and cost spikes on two days.
Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import msgspec

from cert_core import format_timestamp

MODELS = [  # provider, request model, response model, $ per 1M input, $ per 1M output, weight
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 0.15, 0.60, 50),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06", 2.50, 10.00, 20),
    ("anthropic", "claude-sonnet-4-0", "claude-sonnet-4-20250514", 3.00, 15.00, 15),
    ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022", 0.80, 4.00, 15),
]
FUNCTIONS = [
    "app.support.answer",
    "app.search.rerank",
    "app.summarise.ticket",
    "app.classify.intent",
    "app.report.draft",
]
_WORD_TEXT = (
    "battery warranty installation inverter invoice refund shipping capacity solar panel grid "
    "export tariff monitoring app firmware update account contract cancellation payment plan"
)
WORDS = _WORD_TEXT.split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def generate(count: int, out: Path, *, days: int = 60, seed: int = 7) -> int:
    """Write ``count`` LLM records (plus parent function records) to ``out``; return lines written."""
    rng = random.Random(seed)
    encoder = msgspec.json.Encoder()
    start = int(time.mktime((2026, 9, 1, 0, 0, 0, 0, 0, 0))) * 10**9
    span = days * 86_400 * 10**9
    spike_days = {days // 3, (2 * days) // 3}
    weights = [m[5] for m in MODELS]
    cached_prompts = [_text(rng, 60) for _ in range(5)]
    lines = 0
    trace_id = parent = ""
    with out.open("wb", buffering=1 << 20) as fh:
        batch: list[bytes] = []
        for i in range(count):
            t = start + (span * i) // count
            day = (t - start) // (86_400 * 10**9)
            function = FUNCTIONS[(i // 10) % len(FUNCTIONS)]
            provider, model, dated, pin, pout, _ = rng.choices(MODELS, weights)[0]
            if function == "app.classify.intent":  # an expensive model on an easy task
                provider, model, dated, pin, pout = "openai", "gpt-4o", "gpt-4o-2024-08-06", 2.50, 10.00
            prompt = (
                rng.choice(cached_prompts)
                if function == "app.search.rerank"
                else _text(rng, rng.randint(10, 35))
            )
            inputs = rng.randint(300, 1_500)
            if function == "app.report.draft":
                inputs = rng.randint(20_000, 60_000)  # long prompts
            outputs = rng.randint(20, 300)
            if day in spike_days:
                inputs, outputs = inputs * 4, outputs * 8
            duration = rng.lognormvariate(6.3, 0.5)
            span_id = f"{rng.getrandbits(64) | 1:016x}"
            if i % 10 == 0:  # a traced function that makes the next ten calls
                trace_id = f"{rng.getrandbits(128) | 1:032x}"
                parent = f"{rng.getrandbits(64) | 1:016x}"
                batch.append(
                    encoder.encode(
                        {
                            "schema": "cert.trace/1",
                            "trace_id": trace_id,
                            "span_id": parent,
                            "start_time": format_timestamp(t - 2_000_000),
                            "end_time": format_timestamp(t + int(duration * 1e6) + 1_000_000),
                            "duration_ms": round(duration + 3.0, 3),
                            "kind": "function",
                            "function": function,
                        }
                    )
                )
            error = None
            if rng.random() < 0.01:
                error = {"type": "RateLimitError", "message": "Rate limit reached", "status": 429}
            record: dict[str, object] = {
                "schema": "cert.trace/1",
                "trace_id": trace_id,
                "span_id": span_id,
                "start_time": format_timestamp(t),
                "end_time": format_timestamp(t + int(duration * 1e6)),
                "duration_ms": round(duration, 3),
                "kind": "llm",
                "provider": provider,
                "operation": "chat",
                "request_model": model,
                "response_model": dated,
                "input": [
                    {
                        "role": "system",
                        "content": "Rank these passages."
                        if function == "app.search.rerank"
                        else "Answer from the context. Context: " + _text(rng, 25),
                    },
                    {"role": "user", "content": prompt},
                ],
                "output": None if error else _text(rng, 20),
                "usage": None if error else {"input_tokens": inputs, "output_tokens": outputs},
                "cost_usd": 0.0 if error else round((inputs * pin + outputs * pout) / 1e6, 8),
                "price_source": f"genai-prices ({provider}/{model})",
                "finish_reasons": None if error else ["stop"],
                "request": {"temperature": 0.2, "max_tokens": 400},
                "metadata": {"function": function, "tenant": f"t{i % 17}"},
            }
            record["parent_span_id"] = parent
            if error:
                record["error"] = error
            if i % 3 == 0 and not error:
                confidence = min(
                    1.0, max(0.0, rng.gauss(0.9 if function == "app.classify.intent" else 0.78, 0.1))
                )
                record["evaluation"] = {
                    "confidence": round(confidence, 4),
                    "threshold": 0.7,
                    "passed": confidence >= 0.7,
                }
            batch.append(encoder.encode({k: v for k, v in record.items() if v is not None}))
            if len(batch) >= 10_000:
                lines += len(batch)
                fh.write(b"\n".join(batch) + b"\n")
                batch.clear()
        lines += len(batch)
        if batch:
            fh.write(b"\n".join(batch) + b"\n")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, help="LLM records to write")
    parser.add_argument("out", type=Path)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    t0 = time.perf_counter()
    lines = generate(args.count, args.out, days=args.days, seed=args.seed)
    size = args.out.stat().st_size
    print(
        f"{lines:,} lines, {size / 1e6:,.1f} MB ({size // lines} bytes/line) "
        f"in {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
