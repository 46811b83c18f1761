"""pytest-cert quickstart: trace a few calls, price them, and verify the tamper-evident log.

Run with ``python3 dev.py demo`` (sets everything up) or ``python examples/quickstart.py [DIR]``.
Nothing here touches the network: the "LLM" is a stand-in that returns canned answers with
token counts, recorded exactly as the SDK connectors will record real calls. The example test
suite with the pytest gate replaces this script as the main job once it exists.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import cert_core
from cert_core import TraceRecord, format_timestamp, price_call, record_call, start_span

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-traces")
LOG = OUT / "traces.jsonl"

CANNED = {
    "What was revenue growth in 2025?": ("Revenue grew 12% to $89.5B in fiscal 2025.", 412, 18),
    "Who is the CFO?": ("The CFO is Maria Lopez, appointed in March 2024.", 388, 15),
    "Summarise the risk section.": ("Main risks: supply chain, FX exposure and a pending EU case.", 1630, 42),
}


def stand_in_llm(model: str, provider: str, question: str) -> str:
    """Pretend to call a model; record the call as a connector would (kind="llm", priced)."""
    answer, input_tokens, output_tokens = CANNED[question]
    span = start_span()
    start = time.time_ns()
    usage = cert_core.Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    price = price_call(provider, model, usage)
    record_call(
        TraceRecord(
            schema=cert_core.SCHEMA,
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_span_id=span.parent_span_id,
            start_time=format_timestamp(start),
            end_time=format_timestamp(start + 1_000_000),
            duration_ms=1.0,
            kind="llm",
            provider=provider,
            operation="chat",
            request_model=model,
            response_model=model,
            input=[{"role": "user", "content": question}],
            output=answer,
            usage=usage,
            cost_usd=price.cost_usd,
            price_source=price.source,
            price_error=price.error,
            finish_reasons=["stop"],
            metadata={"simulated": True},
        )
    )
    return answer


@cert_core.trace(metadata={"app": "quickstart"})
def answer_question(question: str, model: str, provider: str) -> str:
    return stand_in_llm(model, provider, question)


def main() -> int:
    for stale in OUT.glob("traces*.jsonl"):
        stale.unlink()
    # Records with no recorder active go to the default trace file: this one, for the demo.
    cert_core.configure(log_path=LOG)
    calls = [
        ("What was revenue growth in 2025?", "gpt-4o-mini", "openai"),
        ("Who is the CFO?", "gpt-4o", "openai"),
        ("Summarise the risk section.", "claude-sonnet-4-20250514", "anthropic"),
        ("Who is the CFO?", "my-private-finetune", "openai"),  # no public price: cost unknown, not 0
    ]
    for question, model, provider in calls:
        print(f"  {model:28} {question!r} -> {answer_question(question, model, provider)!r}")
    cert_core.configure(log_path=None)  # closes (flushes) the trace file

    records = list(cert_core.read_traces(LOG))
    spend: dict[str, float] = defaultdict(float)
    unknown: list[str] = []
    for record in records:
        if record.kind != "llm":
            continue
        if record.cost_usd is None:
            unknown.append(f"{record.request_model}: {record.price_error}")
        else:
            spend[record.request_model or "?"] += record.cost_usd
    report = cert_core.verify_traces(LOG)
    print(
        f"\nTrace log: {LOG} ({len(records)} records: {sum(r.kind == 'llm' for r in records)} LLM calls,"
        f" {sum(r.kind == 'function' for r in records)} traced functions)"
    )
    print("Cost by model (USD):")
    for model, usd in sorted(spend.items()):
        print(f"  {model:28} {usd:.6f}")
    print(f"  {'total (known prices)':28} {sum(spend.values()):.6f}")
    for line in unknown:
        print(f"  unpriced: {line[:140]}")
    verdict = {0: "intact", 1: "TAMPERED", 3: "truncated", 4: "nothing to verify"}[report.exit_code]
    print(
        f"Integrity (cert verify): {verdict}; {report.chained} chained records "
        f"in {len(report.heads)} chain(s)"
    )
    print(f"Check it yourself: cert verify {LOG}")
    return 0 if report.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
