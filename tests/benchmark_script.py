"""Run a script of ``experiments/benchmarks/`` as a user does: its own process and its own local
Ray (not the session's), writing its report into a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "experiments" / "benchmarks"


def run_benchmark(name: str, *args: str, timeout_s: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [sys.executable, str(BENCH / name), *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
