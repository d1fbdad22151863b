"""The GPU check runs end to end in its CPU quick mode and writes its report."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark_script import run_benchmark


def test_gpu_check_cpu_quick_runs_every_check_and_writes_the_report(tmp_path: Path) -> None:
    done = run_benchmark("gpu_check.py", "--cpu-quick", "--out", str(tmp_path))
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
