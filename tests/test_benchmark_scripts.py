"""The GPU check and the store-dtype benchmark run end to end in their CPU quick modes.

Each script starts its own local Ray in a subprocess, exactly as a user runs it, and writes
its report into a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "experiments" / "benchmarks"


def run_script(name: str, out: Path, timeout_s: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own Ray, not the session's
    cmd = [sys.executable, str(BENCH / name), "--cpu-quick", "--out", str(out)]
    return subprocess.run(
        cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def test_gpu_check_cpu_quick_runs_every_check_and_writes_the_report(tmp_path: Path) -> None:
    done = run_script("gpu_check.py", tmp_path, 600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    status = {row["check"]: row["status"] for row in report["checks"]}
    assert {
        "autocast/clip",
        "autocast/vit",
        "autocast/bert",
        "slice sizing",
        "shared GPU x2",
        "cohort 4",
    } <= set(status)
    assert status.pop("compile/bert") == "skipped" and set(status.values()) == {"ok"}, status
    assert all(
        row["detail"]["bf16_saved_share"] > 0
        for row in report["checks"]
        if row["check"].startswith("autocast")
    )
    assert "| cohort 4 | ok |" in (tmp_path / "gpu.md").read_text()


def test_store_dtype_cpu_quick_compares_float32_and_bfloat16(tmp_path: Path) -> None:
    done = run_script("store_dtype.py", tmp_path, 600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    rows = {r["dtype"]: r for r in json.loads((tmp_path / "store_dtype.json").read_text())}
    assert set(rows) == {"float32", "bfloat16"}
    full, half = rows["float32"]["bytes_per_client"], rows["bfloat16"]["bytes_per_client"]
    assert half - 20 == (full - 20) // 2  # the prompt's bytes halve; the 20 bytes of ids and loss do not
    assert "| bfloat16 |" in (tmp_path / "store_dtype.md").read_text()
