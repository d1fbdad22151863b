"""Paper-shaped tables equal the Parquet data they are built from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dp2fl_ray.metrics import read_summary, read_table
from dp2fl_ray.report import tables

pytestmark = pytest.mark.ray


def test_table1_holds_each_clients_last_round_accuracy_and_their_mean(run_dirs: list[Path]) -> None:
    run = run_dirs[0]
    clients = read_table(run, "clients")
    last = clients[clients["round"] == clients["round"].max()].set_index("client_id")
    frame = tables.personalised_table({"a": clients}).set_index("metric")
    for cid, row in last.iterrows():
        assert frame.loc["accuracy", f"client {cid}"] == pytest.approx(row["test_acc"])
        assert frame.loc["micro-F1", f"client {cid}"] == pytest.approx(row["test_micro_f1"])
    rounds = read_table(run, "rounds")
    assert frame.loc["accuracy", "avg"] == pytest.approx(rounds["personalized_acc"].iloc[-1])
    assert frame.loc["accuracy", "avg"] == pytest.approx(read_summary(run)["personalized_acc"])


def test_table1_puts_runs_side_by_side_with_one_row_per_run_and_metric(run_dirs: list[Path]) -> None:
    frame = tables.personalised_table({d.name: read_table(d, "clients") for d in run_dirs})
    assert frame[["run", "metric"]].values.tolist() == [
        ["dp2fl", "accuracy"], ["dp2fl", "micro-F1"], ["local", "accuracy"], ["local", "micro-F1"],
    ]  # fmt: skip


def test_table1_gives_min_median_max_instead_of_columns_for_many_clients(run_dirs: list[Path]) -> None:
    clients = read_table(run_dirs[0], "clients")
    last = clients[clients["round"] == clients["round"].max()]
    row = tables.personalised_table({"a": clients}, max_clients=2).iloc[0]
    assert not any(str(c).startswith("client ") for c in row.index)
    assert row["min"] == pytest.approx(last["test_acc"].min())
    assert row["median"] == pytest.approx(last["test_acc"].median())
    assert row["max"] == pytest.approx(last["test_acc"].max())


def test_table2_compares_global_on_held_out_clients_with_personalised(run_dirs: list[Path]) -> None:
    run = run_dirs[0]
    frame = tables.global_vs_personalised_table(
        {"a": read_table(run, "clients")}, {"a": read_table(run, "evals")}
    )
    row = frame.iloc[0]
    summary = read_summary(run)
    assert row["global acc (held-out)"] == pytest.approx(summary["global_acc"])
    assert row["personalised acc"] == pytest.approx(summary["personalized_acc"])
    assert row["delta acc"] == pytest.approx(summary["global_acc"] - summary["personalized_acc"])
    assert row["held-out clients"] == 1


def test_table2_global_is_missing_for_a_run_without_a_global_model(run_dirs: list[Path]) -> None:
    local = run_dirs[1]
    frame = tables.global_vs_personalised_table(
        {"a": read_table(local, "clients")}, {"a": read_table(local, "evals")}
    )
    assert np.isnan(frame.iloc[0]["global acc (held-out)"]) and frame.iloc[0]["held-out clients"] == 0


def test_tables_3_and_4_average_each_start_model_over_the_held_out_clients(run_dirs: list[Path]) -> None:
    evals = read_table(run_dirs[0], "evals")
    held = evals[evals["held_out"] & (evals["round"] == evals["round"].max())]
    for models in (tables.TABLE3_MODELS, tables.TABLE4_MODELS):
        frame = tables.new_client_table({"a": evals}, models)
        assert frame is not None
        for model, column in models.items():
            assert frame.iloc[0][column] == pytest.approx(held[held["model"] == model]["acc"].mean())


def test_new_client_tables_are_absent_when_no_start_model_was_evaluated(run_dirs: list[Path]) -> None:
    evals = read_table(run_dirs[0], "evals")
    only_global = {"a": evals[evals["model"].isin(["personalized", "global"])]}
    assert tables.new_client_table(only_global, tables.TABLE3_MODELS) is None
    assert tables.new_client_table(only_global, tables.TABLE4_MODELS) is None
    local = {"b": read_table(run_dirs[1], "evals")}
    assert tables.new_client_table(local, tables.TABLE3_MODELS) is None


def test_new_client_table_uses_each_models_latest_round_and_only_held_out_rows() -> None:
    evals = pd.DataFrame({
        "client_id": [4, 5, 4, 5, 4, 5, 0],
        "model": ["init", "init", "initglo", "initglo", "global", "global", "init"],
        "held_out": [True, True, True, True, True, True, False],
        "acc": [0.1, 0.3, 0.5, 0.7, 0.6, 0.8, 0.99],
        "micro_f1": [0.0] * 7,
        "round": [2] * 7,
    })  # fmt: skip
    stale = evals.assign(round=1, acc=0.0)  # an earlier round's rows are not counted
    frame = tables.new_client_table({"a": pd.concat([stale, evals])}, tables.TABLE3_MODELS)
    assert frame is not None
    row = frame.iloc[0]
    assert (row["Init"], row["InitGlo"], row["Global"]) == pytest.approx((0.2, 0.6, 0.7))
    assert row["held-out clients"] == 2


def test_headline_table_carries_zero_shot_and_majority_accuracy(run_dirs: list[Path]) -> None:
    summary = read_summary(run_dirs[0])
    frame = tables.headline_table({"a": summary})
    assert frame.loc["zero_shot_acc", "a"] == summary["zero_shot_acc"]
    assert frame.loc["majority_acc", "a"] == summary["majority_acc"]


def test_loss_matrix_and_global_weights_reshape_the_aggregation_rows(run_dirs: list[Path]) -> None:
    agg = read_table(run_dirs[0], "aggregation")
    loss, sets, baselines = tables.loss_matrix(agg)
    last = agg[agg["round"] == agg["round"].max()]
    for _, row in last.iterrows():
        assert loss.loc[row["i"], row["j"]] == pytest.approx(row["loss"])
        assert sets.loc[row["i"], row["j"]] == row["set"]
        assert baselines[row["j"]] == pytest.approx(row["baseline_j"])
    weights = tables.global_weights(agg)
    assert weights.index.tolist() == [1, 2] and np.allclose(weights.sum(axis=1), 1.0)


def test_phase_times_add_up_to_the_round_wall_time(run_dirs: list[Path]) -> None:
    rounds = read_table(run_dirs[0], "rounds")
    times = tables.phase_times(rounds)
    assert np.allclose(times.sum(axis=1).to_numpy(), rounds["wall_s"].to_numpy())
