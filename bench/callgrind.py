"""CPU instructions of one command under valgrind's callgrind, for the benchmarks' ``--instructions``
modes: deterministic counts that do not drift with the machine's speed (valgrind runs code about
50 times slower, so those modes take minutes)."""

from __future__ import annotations

import os
import re
import subprocess


def instructions(argv: list[str]) -> int:
    """Instructions executed by ``argv`` (hash seed fixed, so dict and set layouts repeat)."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    match = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if match is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{done.stderr[-2000:]}")
    return int(match.group(1))
