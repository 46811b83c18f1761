"""``cert costs`` over a million (and ten million) production traces: time and peak memory.

    python bench/bench_analysis.py                    # 1M traces, then 10M (about 13 GB on disk)
    python bench/bench_analysis.py --no-10m           # 1M only
    python bench/bench_analysis.py --compare-engines  # also: the same aggregation on pyarrow and msgspec

Traces come from ``bench/gen_traces.py`` (about 1.2 KB per line) in a temporary folder, deleted at
the end; the 10M file is the 1M file ten times over. Each figure is the whole command as a user
runs it (``python -m cert_core.cli costs FILE --json``, process start included), best of
``--rounds`` runs; peak memory is the command's maximum resident set size.

Figures (last line, JSON): ``costs_1m_s`` (target <= 5), ``costs_1m_peak_rss_mb`` (<= 1024),
``costs_10m_s`` (within 12x of ``costs_1m_s``).

``--compare-engines`` times one aggregation (calls and cost per day and model) three ways on the
1M file: DuckDB (what ``cert costs`` uses), ``pyarrow.json`` and msgspec streaming, so the
choice of engine can be re-checked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_traces import generate


def run_costs(path: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``cert costs`` run in a fresh process."""
    code = (
        "import resource, sys, time\n"
        "t0 = time.perf_counter()\n"
        "from cert_core.cli import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    rc = main(['costs', sys.argv[1], '--json'])\n"
        "assert rc == 0, rc\n"
        "print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    _, rss = done.stdout.split()
    return wall, float(rss)


def compare_engines(path: Path) -> list[tuple[str, float, float]]:
    """The same aggregation on three engines, each in its own process: (engine, seconds, MB)."""
    programs = {
        "duckdb": (
            "import duckdb\n"
            "con = duckdb.connect()\n"
            'con.execute("SELECT substr(start_time, 1, 10), request_model, count(*), sum(cost_usd) FROM '
            "read_json(?, format='newline_delimited', columns={start_time: 'VARCHAR', kind: 'VARCHAR', "
            "request_model: 'VARCHAR', cost_usd: 'DOUBLE'}) WHERE kind = 'llm' GROUP BY ALL\", [PATH])"
            ".fetchall()\n"
        ),
        "pyarrow.json": (
            "import pyarrow as pa, pyarrow.json as pj, pyarrow.compute as pc\n"
            "schema = pa.schema([('start_time', pa.string()), ('kind', pa.string()), "
            "('request_model', pa.string()), ('cost_usd', pa.float64())])\n"
            "t = pj.read_json(PATH, parse_options=pj.ParseOptions(explicit_schema=schema, "
            "unexpected_field_behavior='ignore'))\n"
            "t = t.filter(pc.equal(t['kind'], 'llm'))\n"
            "t = t.append_column('day', pc.utf8_slice_codeunits(t['start_time'], 0, 10))\n"
            "t.group_by(['day', 'request_model']).aggregate([('cost_usd', 'sum'), ('cost_usd', 'count')])\n"
        ),
        "msgspec stream": (
            "import msgspec\n"
            "class R(msgspec.Struct):\n"
            "    start_time: str\n"
            "    kind: str\n"
            "    request_model: str | None = None\n"
            "    cost_usd: float | None = None\n"
            "dec = msgspec.json.Decoder(R)\n"
            "agg = {}\n"
            "with open(PATH, 'rb') as f:\n"
            "    rest = b''\n"
            "    while block := f.read(16 << 20):\n"
            "        block = rest + block\n"
            "        cut = block.rfind(b'\\n') + 1\n"
            "        rest = block[cut:]\n"
            "        for r in dec.decode_lines(block[:cut]):\n"
            "            if r.kind == 'llm':\n"
            "                a = agg.setdefault((r.start_time[:10], r.request_model), [0, 0.0])\n"
            "                a[0] += 1\n"
            "                a[1] += r.cost_usd or 0.0\n"
        ),
    }
    out = []
    for name, body in programs.items():
        code = (
            "import resource, sys, time\nPATH = sys.argv[1]\nt0 = time.perf_counter()\n"
            + body
            + "print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
        )
        try:
            done = subprocess.run(
                [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
            )
        except subprocess.CalledProcessError as exc:
            print(f"{name}: failed: {exc.stderr.strip().splitlines()[-1:]}")
            continue
        seconds, rss = (float(x) for x in done.stdout.split())
        out.append((name, seconds, rss))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1_000_000, help="Lines in the base file (default 1M)")
    parser.add_argument("--rounds", type=int, default=3, help="Runs per figure; the best counts")
    parser.add_argument("--no-10m", action="store_true", help="Skip the ten-times file")
    parser.add_argument("--compare-engines", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="cert-bench-analysis-"))
    try:
        base = tmp / "traces.jsonl"
        t0 = time.perf_counter()
        # gen_traces writes one function record per ten calls: 10/11 of the lines are calls.
        lines = generate(args.traces * 10 // 11, base)
        print(
            f"generated {lines:,} lines, {base.stat().st_size / 1e6:,.0f} MB "
            f"in {time.perf_counter() - t0:.0f} s"
        )
        runs = [run_costs(base) for _ in range(args.rounds)]
        one_s = min(r[0] for r in runs)
        one_rss = max(r[1] for r in runs)
        figures: dict[str, float] = {"costs_1m_s": round(one_s, 2), "costs_1m_peak_rss_mb": round(one_rss)}
        rows = [("cert costs, 1M traces", one_s, one_rss, "<= 5 s, <= 1024 MB")]
        if not args.no_10m:
            big = tmp / "traces10.jsonl"
            with big.open("wb") as out:
                for _ in range(10):
                    with base.open("rb") as src:
                        shutil.copyfileobj(src, out, 64 << 20)
            ten_s, ten_rss = min(run_costs(big) for _ in range(max(1, args.rounds - 2)))
            figures["costs_10m_s"] = round(ten_s, 2)
            figures["ratio_10m_to_1m"] = round(ten_s / one_s, 2)
            rows.append(("cert costs, 10M traces", ten_s, ten_rss, "<= 12 x the 1M time"))
            big.unlink()
        print(f"\n{'run':28} {'seconds':>8} {'peak MB':>8}  target")
        for name, seconds, rss, target in rows:
            print(f"{name:28} {seconds:>8.2f} {rss:>8.0f}  {target}")
        if args.compare_engines:
            print(f"\nengine comparison on {lines:,} lines (one aggregation, process start excluded)")
            print(f"{'engine':28} {'seconds':>8} {'peak MB':>8}")
            for name, seconds, rss in compare_engines(base):
                print(f"{name:28} {seconds:>8.2f} {rss:>8.0f}")
        print(f"\ncpus: {os.cpu_count()}, python {sys.version.split()[0]}")
        print(json.dumps(figures))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
