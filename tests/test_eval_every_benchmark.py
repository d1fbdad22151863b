"""The eval_every benchmark runs end to end in its quick mode and writes its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks" / "eval_every.py"


def test_quick_mode_writes_a_table_whose_evaluated_rounds_agree(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / "eval_every_quick.md").read_text()
    assert "| promptfl | 1 | 2 |" in text and "| promptfl | 2 | 1 |" in text  # rounds evaluated
    assert "identical numbers: True" in text
