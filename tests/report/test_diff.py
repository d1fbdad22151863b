"""``dp2fl-ray diff``: two real runs compared table by table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dp2fl_ray.cli import main
from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.errors import ConfigError
from dp2fl_ray.report.diff import diff_runs, format_diff, is_timing


def _rewrite(run: Path, table: str, round_: int, column: str, row: int, value: object) -> None:
    """Set one cell of one round's Parquet file, as a changed code path would have written it."""
    path = run / "metrics" / table / f"round={round_}" / "part-0.parquet"
    data = pq.read_table(path)
    values = data.column(column).to_pylist()
    values[row] = value
    index = data.schema.get_field_index(column)
    pq.write_table(
        data.set_column(index, data.schema.field(index), pa.array(values, data.schema.field(index).type)),
        path,
    )


def test_a_second_run_of_the_same_config_is_identical_table_by_table(
    run_dirs: list[Path], tiny_config: ExperimentConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dp2fl_ray.runtime.simulation import run_experiment

    again = tmp_path / "again"
    config = tiny_config.with_overrides(["algorithm.name=dp2fl"])
    run_experiment(config, output_dir=tmp_path, run_name="again", progress=False)
    diff = diff_runs(run_dirs[0], again)
    assert diff.identical
    assert {t.table for t in diff.tables} == {"rounds", "clients", "evals", "aggregation"}
    assert all(t.cells > 0 for t in diff.tables)
    assert main(["diff", str(run_dirs[0]), str(again)]) == 0
    out = capsys.readouterr().out
    assert "metrics/rounds:" in out and out.rstrip().endswith("(left out: columns ending in _s (wall-clock))")


def test_a_changed_number_is_named_by_table_column_and_round(
    run_dirs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run_dirs[0], copy)
    _rewrite(copy, "rounds", 2, "wall_s", 0, 1e6)  # a wall-clock column: not a result
    assert diff_runs(run_dirs[0], copy).identical
    clients = pq.read_table(copy / "metrics" / "clients" / "round=2" / "part-0.parquet")
    loss = clients.column("train_loss").to_pylist()
    _rewrite(copy, "clients", 2, "train_loss", 1, loss[1] + 0.25)
    diff = diff_runs(run_dirs[0], copy)
    assert not diff.identical
    (changed,) = [t for t in diff.tables if not t.identical]
    assert changed.table == "clients"
    (column,) = changed.columns
    assert (column.column, column.differing, column.first_round, column.first_row) == ("train_loss", 1, 2, 1)
    assert column.max_abs == pytest.approx(0.25)
    assert diff_runs(run_dirs[0], copy, atol=0.3).identical
    assert diff_runs(run_dirs[0], copy, ignore=["train_loss"]).identical
    assert main(["diff", str(run_dirs[0]), str(copy)]) == 1
    out = capsys.readouterr().out
    assert "train_loss: 1 value(s) differ, max |A - B| 0.25; first at round 2, row 1 of that round" in out
    assert out.rstrip().splitlines()[-1].startswith("DIFFERENT")


def test_runs_of_two_methods_differ_in_their_tables(run_dirs: list[Path]) -> None:
    diff = diff_runs(run_dirs[0], run_dirs[1])  # dp2fl and local: local writes no aggregation table
    tables = {t.table: t for t in diff.tables}
    assert not tables["aggregation"].in_b and tables["aggregation"].in_a
    assert "only in A" in format_diff(diff)
    assert not diff.identical


def test_a_path_that_is_not_a_run_is_an_error_naming_it(run_dirs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RUN_B.*no such directory"):
        diff_runs(run_dirs[0], tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="--atol"):
        diff_runs(run_dirs[0], run_dirs[0], atol=-1)
    assert main(["diff", str(tmp_path), str(run_dirs[0])]) == 2


def test_only_wall_clock_columns_are_left_out() -> None:
    assert is_timing("wall_s") and is_timing("client_updates_per_s") and is_timing("crosseval_s")
    assert not any(is_timing(c) for c in ("moved_bytes", "cohort_size", "first_time", "personalized_acc"))
