#!/usr/bin/env python3
"""Re-record this example's cassettes against the local stand-in server (``standin.py``).

No real API is reachable where this project is built, so the committed cassettes were recorded
here: the suite runs with ``--cert-record-mode=all`` and ``--cert-record-upstream`` pointing at the
stand-in, which speaks the OpenAI and Anthropic wire formats. The SDKs address the real API URLs
and the cassettes keep them; only the recording's bytes come from the stand-in (each recording
notes ``"upstream"``).

    python examples/rag_app/record_cassettes.py          # rewrite tests/cassettes/ from the stand-in

To record against the real APIs instead, with your keys (this spends a few cents):

    OPENAI_API_KEY=sk-... ANTHROPIC_API_KEY=sk-ant-... \\
        python -m pytest examples/rag_app --cert-record-mode=all
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from standin import StandIn  # noqa: E402


def main(argv: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "CI")}
    env["OPENAI_API_KEY"] = env["ANTHROPIC_API_KEY"] = "stand-in-key"  # scrubbed from cassettes anyway
    with StandIn() as server, tempfile.TemporaryDirectory() as report:
        print(f"record_cassettes: stand-in at {server.url}", flush=True)
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(HERE),
            "--cert-record-mode=all",
            f"--cert-record-upstream={server.url}",
            f"--cert-report={report}",
            *argv,
        ]
        code = subprocess.run(command, env=env, cwd=HERE).returncode
        where = HERE / "tests" / "cassettes"
        print(f"record_cassettes: {len(server.requests)} request(s) recorded into {where}")
        return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
