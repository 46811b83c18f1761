"""What the pytest plugin costs a test suite.

A generated suite of 1,000 trivial tests runs in fresh pytest processes, configurations
interleaved, each several times.

- ``inert_overhead_pct``: the plugin installed but unused, against ``-p no:cert``.
- ``cost_tracking_overhead_pct``: every test makes one OpenAI SDK call (a FakeLLM transport stands
  in for the network), budgets on (``--cert-test-budget``, ``--cert-budget``), against the same
  suite and options with ``--cert-no-instrument`` (no call recorded).

Each configuration runs once first to warm up (byte-code caches, the price cache), as on a
developer's machine after the first run.

Overheads compare the fastest run of each configuration, by process CPU time (user + system):
on a shared machine other work only ever adds time, so the minimum is the estimate least
disturbed by it (as ``timeit`` advises). Medians, and wall-clock figures, are printed beside.

    python bench/bench_plugin.py [--tests 1000] [--repeats 9]
    python bench/bench_plugin.py --instructions   # deterministic: CPU instructions under valgrind

``--instructions`` runs each configuration once under valgrind's callgrind and compares the
instructions executed (all threads of the pytest process), a count that does not depend on what
else the machine is doing; it takes minutes (valgrind runs code about 50 times slower).

Prints a table, then one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIVIAL = "def test_{i}():\n    assert {i} >= 0\n"

CALLING_HEADER = """
import httpx2, openai
from cert_core.testing import FakeLLM

_fake = FakeLLM()
_fake.openai_chat("The answer.", prompt_tokens=20, completion_tokens=5)
client = openai.OpenAI(api_key="sk-bench", http_client=httpx2.Client(transport=_fake.transport()))
"""
CALLING = """
def test_{i}():
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "q{i}"}}])
    assert r.choices[0].message.content
"""


def write_suite(folder: Path, tests: int, calling: bool, per_file: int = 100) -> None:
    folder.mkdir(parents=True)
    (folder / "pytest.ini").write_text("[pytest]\n")
    for start in range(0, tests, per_file):
        body = CALLING_HEADER if calling else ""
        template = CALLING if calling else TRIVIAL
        body += "".join(template.format(i=i) for i in range(start, min(tests, start + per_file)))
        (folder / f"test_{start // per_file:03d}.py").write_text(body)


PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
# Byte-code caches on, as in an installed package (the warm-up run writes them).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _pytest(folder: Path, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed in {folder}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def run(folder: Path, args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one pytest process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    _pytest(folder, [*PYTEST, *args], ENV)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def instructions(folder: Path, args: list[str]) -> int:
    """CPU instructions one pytest process executes, counted by valgrind's callgrind."""
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    done = _pytest(folder, [*valgrind, *PYTEST, *args], {**ENV, "PYTHONHASHSEED": "0"})
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise SystemExit(f"valgrind printed no instruction count in {folder}:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def main_instructions(tests: int, configs_for: dict[str, tuple[Path, list[str]]]) -> None:
    counts = {}
    for name, (folder, extra) in configs_for.items():
        run(folder, extra)  # byte-code caches written, evidence folder in place
        counts[name] = instructions(folder, extra)
    names = list(configs_for)

    def pct(new: str, base: str) -> float:
        return round((counts[new] - counts[base]) / counts[base] * 100, 2)

    print(f"{tests} tests, CPU instructions of one pytest process (valgrind callgrind)")
    print(f"{'configuration':<42} {'instructions':>16}")
    for name in names:
        print(f"{name:<42} {counts[name]:>16,}")
    inert, tracking = pct(names[1], names[0]), pct(names[3], names[2])
    per_test_ns = (counts[names[3]] - counts[names[2]]) / tests
    print(f"inert overhead:          {inert:+.2f}%  (target <= 2)")
    print(
        f"cost-tracking overhead:  {tracking:+.2f}%  (target <= 5); {per_test_ns:,.0f} instructions per test"
    )
    print(
        json.dumps(
            {
                "inert_overhead_pct": inert,
                "cost_tracking_overhead_pct": tracking,
                "tests": tests,
                "method": "instructions",
                "instructions": counts,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind")
    args = parser.parse_args()
    budgets = ["--cert-test-budget=1", "--cert-budget=100"]
    with tempfile.TemporaryDirectory() as tmp:
        trivial, calling = Path(tmp) / "trivial", Path(tmp) / "calling"
        write_suite(trivial, args.tests, calling=False)
        write_suite(calling, args.tests, calling=True)
        configs = {
            "trivial, -p no:cert": (trivial, ["-p", "no:cert"]),
            "trivial, plugin unused": (trivial, []),
            "one SDK call each, --cert-no-instrument": (calling, [*budgets, "--cert-no-instrument"]),
            "one SDK call each, instrumented": (calling, budgets),
        }
        if args.instructions:
            main_instructions(args.tests, configs)
            return
        for folder, extra in configs.values():  # warm the file cache and byte-compilation once
            run(folder, extra)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
        for _ in range(args.repeats):
            for name, (folder, extra) in configs.items():
                samples[name].append(run(folder, extra))
    cpu_min = {name: min(c for _, c in s) for name, s in samples.items()}
    cpu_med = {name: statistics.median(c for _, c in s) for name, s in samples.items()}
    wall_min = {name: min(w for w, _ in s) for name, s in samples.items()}
    names = list(configs)

    def pct(values: dict[str, float], new: str, base: str) -> float:
        return round((values[new] - values[base]) / values[base] * 100, 2)

    inert, tracking = pct(cpu_min, names[1], names[0]), pct(cpu_min, names[3], names[2])
    print(f"{args.tests} tests, {args.repeats} interleaved runs per configuration")
    print(f"{'configuration':<42} {'CPU min s':>10} {'CPU median':>10} {'wall min s':>10}")
    for name in names:
        print(f"{name:<42} {cpu_min[name]:>10.3f} {cpu_med[name]:>10.3f} {wall_min[name]:>10.3f}")
    print(f"inert overhead (CPU, min):          {inert:+.2f}%  (target <= 2)")
    print(f"cost-tracking overhead (CPU, min):  {tracking:+.2f}%  (target <= 5)")
    print(
        f"(medians: inert {pct(cpu_med, names[1], names[0]):+.2f}%, "
        f"cost tracking {pct(cpu_med, names[3], names[2]):+.2f}%; wall-clock minima: inert "
        f"{pct(wall_min, names[1], names[0]):+.2f}%, cost tracking {pct(wall_min, names[3], names[2]):+.2f}%)"
    )
    print(
        json.dumps(
            {
                "inert_overhead_pct": inert,
                "cost_tracking_overhead_pct": tracking,
                "tests": args.tests,
                "repeats": args.repeats,
                "median_inert_overhead_pct": pct(cpu_med, names[1], names[0]),
                "median_cost_tracking_overhead_pct": pct(cpu_med, names[3], names[2]),
            }
        )
    )


if __name__ == "__main__":
    main()
