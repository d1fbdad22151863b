"""The eval_every benchmark runs end to end in its quick mode and writes its table."""

from __future__ import annotations

from pathlib import Path

from benchmark_script import run_benchmark


def test_quick_mode_writes_a_table_whose_evaluated_rounds_agree(tmp_path: Path) -> None:
    done = run_benchmark("eval_every.py", "--quick", "--out", str(tmp_path), timeout_s=900)
    assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / "eval_every_quick.md").read_text()
    assert "| promptfl | 1 | 2 |" in text and "| promptfl | 2 | 1 |" in text  # rounds evaluated
    assert "identical numbers: True" in text
