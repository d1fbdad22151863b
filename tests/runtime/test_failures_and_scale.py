"""Failed clients, numerical faults, large-cohort cross-evaluation, joins and the sharded store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.errors import RunError
from dp2fl_ray.metrics import read_summary, read_table
from dp2fl_ray.runtime.simulation import resume_experiment, run_experiment
from dp2fl_ray.runtime.work import FAULT_ENV

pytestmark = pytest.mark.ray


def test_a_client_whose_training_raises_is_recorded_and_the_round_goes_on(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, "2")  # workers inherit DP2FL_* variables
    config = tiny_config.with_overrides(["runtime.max_failures=1"])
    summary = run_experiment(config, output_dir=tmp_path, run_name="fault", progress=False)
    clients = read_table(tmp_path / "fault", "clients")
    bad = clients[clients["client_id"] == 2]
    assert (bad["status"] == "error").all() and bad["error"].str.contains("injected fault").all()
    good = clients[clients["client_id"] != 2]
    assert (good["status"] == "ok").all() and len(good) == 6  # its slice-mates trained normally
    assert summary["failed_clients"] == 2  # once per round
    agg = read_table(tmp_path / "fault", "aggregation")
    assert 2 not in set(agg["i"]) | set(agg["j"])  # kept out of the aggregate


def test_past_the_threshold_the_run_fails_naming_round_and_client(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, "1")
    with pytest.raises(RunError, match=r"round 1: 1 of 4 clients failed.*client 1"):
        run_experiment(tiny_config, output_dir=tmp_path, run_name="strict", progress=False)
    assert read_summary(tmp_path / "strict")["status"] == "failed"


def test_a_huge_learning_rate_is_a_counted_numerical_fault(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path
) -> None:
    config = tiny_config.with_overrides(["train.lr=1.0e12", "train.momentum=0.0"])
    with pytest.raises(RunError, match="not finite"):
        run_experiment(config, output_dir=tmp_path, run_name="nan", progress=False)
    summary = read_summary(tmp_path / "nan")
    assert summary["status"] == "failed" and "round 1" in summary["error"]


def test_large_cohorts_evaluate_each_client_on_n_candidate_models(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path
) -> None:
    config = tiny_config.with_overrides(
        [
            "federation.population=1000000",
            "federation.cohort=6",
            "federation.max_eval_models=3",
            "federation.rounds=1",
            "federation.new_clients=0",
        ]
    )
    summary = run_experiment(config, output_dir=tmp_path, run_name="limited", progress=False)
    agg = read_table(tmp_path / "limited", "aggregation")
    assert len(agg) == 6 * 3 and (agg.groupby("j").size() == 3).all()
    assert all((agg["i"] == agg["j"]).groupby(agg["j"]).any())  # each client evaluates itself
    assert summary["eval_models_per_client"] == 3 and summary["population"] == 1_000_000
    assert summary["clients_stored"] == 6  # only sampled clients have a row


def test_joining_clients_start_from_the_global_model_and_are_evaluated_before_and_after(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path
) -> None:
    config = tiny_config.with_overrides(
        ["federation.joins=3@2", "federation.cohort=4", "federation.new_clients=1"]
    )
    run_experiment(config, output_dir=tmp_path, run_name="joins", progress=False)
    rounds = read_table(tmp_path / "joins", "rounds")
    assert rounds["population"].tolist() == [4, 7]
    clients = read_table(tmp_path / "joins", "clients")
    joiners = clients[clients["client_id"] >= 4]
    assert joiners["first_time"].all()
    assert joiners["start_test_acc"].notna().all() and joiners["test_acc"].notna().all()  # before and after
    assert clients[clients["client_id"] < 4]["start_test_acc"].isna().all()  # nobody else pays for it
    evals = read_table(tmp_path / "joins", "evals")
    assert set(evals[evals["held_out"]]["client_id"]) == {7}  # held-out ids come after every joiner


def test_sharded_store_run_resumes_to_the_same_numbers(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path
) -> None:
    config = tiny_config.with_overrides(
        [
            "store.backend=sharded",
            "store.shard_size=2",
            "store.cache_shards=1",
            "federation.rounds=3",
            "output.checkpoint_every=1",
        ]
    )
    full = run_experiment(config, output_dir=tmp_path, run_name="full", progress=False)
    assert full["store_bytes"] == 4 * full["bytes_per_client"] and (tmp_path / "full" / "store").is_dir()

    def crash(row: dict) -> None:
        if row["round"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, output_dir=tmp_path, run_name="cut", progress=False, on_round=crash)
    resume_experiment(tmp_path / "cut", progress=False)
    a, b = read_table(tmp_path / "full", "clients"), read_table(tmp_path / "cut", "clients")
    cols = ["round", "client_id", "train_loss", "val_loss", "test_acc", "data_prompt_shift"]
    assert np.array_equal(a[cols].to_numpy(), b[cols].to_numpy())
