"""Parquet tables and summary.json appear whole or not at all, and read back as written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dp2fl_ray.metrics import MetricsWriter, atomic_write, read_table, write_json


def test_tables_round_trip_with_an_integer_round(tmp_path: Path) -> None:
    writer = MetricsWriter(tmp_path)
    writer.write("rounds", 1, pd.DataFrame({"acc": [0.5]}))
    writer.write("rounds", 2, pd.DataFrame({"acc": [0.75]}))
    frame = read_table(tmp_path, "rounds")
    assert frame["round"].tolist() == [1, 2] and frame["round"].dtype == np.int64
    assert frame["acc"].tolist() == [0.5, 0.75]
    assert pd.read_parquet(tmp_path / "metrics" / "rounds")["acc"].sort_values().tolist() == [0.5, 0.75]


def test_unknown_table_and_round_column_are_refused(tmp_path: Path) -> None:
    writer = MetricsWriter(tmp_path)
    with pytest.raises(ValueError, match="unknown metrics table"):
        writer.write("nope", 1, pd.DataFrame({"a": [1]}))
    with pytest.raises(ValueError, match="partition"):
        writer.write("rounds", 1, pd.DataFrame({"round": [1]}))


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "x" / "file.bin"

    def explode(tmp: str) -> None:
        Path(tmp).write_text("partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert list(target.parent.iterdir()) == []


def test_summary_json_is_strict_json(tmp_path: Path) -> None:
    write_json(tmp_path / "summary.json", {"acc": float("nan"), "n": np.int64(3), "x": np.float32(0.5)})
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data == {"acc": None, "n": 3, "x": 0.5}


def test_a_round_without_rows_or_columns_does_not_hide_the_other_rounds_columns(tmp_path: Path) -> None:
    writer = MetricsWriter(tmp_path)
    writer.write("evals", 1, pd.DataFrame())  # a round whose evaluations eval_every skipped
    writer.write("evals", 2, pd.DataFrame({"client_id": [3], "model": ["global"], "acc": [0.5]}))
    frame = read_table(tmp_path, "evals")
    assert frame.columns.tolist() == ["client_id", "model", "acc", "round"]
    assert frame["model"].tolist() == ["global"] and frame["round"].tolist() == [2]
