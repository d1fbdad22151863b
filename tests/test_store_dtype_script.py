"""The store-dtype benchmark runs end to end in its CPU quick mode and compares float32 and bfloat16."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark_script import run_benchmark


def test_store_dtype_cpu_quick_compares_float32_and_bfloat16(tmp_path: Path) -> None:
    done = run_benchmark(
        "store_dtype.py", "--cpu-quick", "--set", "federation.rounds=1", "--out", str(tmp_path)
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    rows = {r["dtype"]: r for r in json.loads((tmp_path / "store_dtype.json").read_text())}
    assert set(rows) == {"float32", "bfloat16"}
    full, half = rows["float32"]["bytes_per_client"], rows["bfloat16"]["bytes_per_client"]
    assert half - 20 == (full - 20) // 2  # the prompt's bytes halve; the 20 bytes of ids and loss do not
    text = (tmp_path / "store_dtype.md").read_text()
    assert "| 0 | bfloat16 |" in text and "--set federation.rounds=1" in text and ", 1 rounds," in text
