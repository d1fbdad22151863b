"""DP2FL end to end on the shared local Ray cluster: learning, files, and the logged maths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dp2fl_ray.algorithms.dp2fl import global_weights
from dp2fl_ray.config import ExperimentConfig, load_config
from dp2fl_ray.errors import ConfigError
from dp2fl_ray.metrics import TABLES, read_summary, read_table
from dp2fl_ray.runtime.simulation import check_pool_fits, run_experiment

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def learning_run(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    config = tiny_config.with_overrides(
        ["data.source=synthetic", "train.lr=0.2", "train.local_epochs=10", "output.checkpoint_every=1"]
    )
    out = tmp_path_factory.mktemp("runs")
    summary = run_experiment(config, output_dir=out, run_name="e2e", progress=False)
    return out / "e2e", summary


def test_personalised_accuracy_beats_both_honest_baselines(learning_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, summary = learning_run
    rounds = read_table(run_dir, "rounds")
    final = rounds[rounds["round"] == 2]["personalized_acc"].item()
    assert summary["status"] == "completed" and summary["rounds_completed"] == 2
    assert final == pytest.approx(summary["personalized_acc"])
    assert final > summary["majority_acc"] + 0.05
    assert final > summary["zero_shot_acc"] + 0.05


def test_run_directory_has_every_table_summary_config_and_checkpoint(
    learning_run: tuple[Path, dict[str, Any]],
) -> None:
    run_dir, _ = learning_run
    for table in TABLES:
        assert sorted(read_table(run_dir, table)["round"].unique().tolist()) == [1, 2]
    summary = read_summary(run_dir)
    for key in ("rounds_completed", "personalized_acc", "personalized_micro_f1", "global_acc",
                "client_updates_per_s", "wall_s", "population", "store_bytes", "status", "zero_shot_acc",
                "majority_acc"):  # fmt: skip
        assert key in summary, key
    assert summary["store_bytes"] == 4 * summary["bytes_per_client"]
    assert summary["store_dtype"] == "float32"
    paper = summary["paper_clip_bytes_per_client"]  # 9 x Linear(512 -> 768) + bias, from the shapes
    assert paper["float32"] > 14_000_000 and paper["bfloat16"] < paper["float32"] * 0.51
    assert load_config(run_dir / "config.yaml").train.lr == 0.2
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "latest.json",
        "round-00001.json",
        "round-00001.safetensors",
        "round-00002.json",
        "round-00002.safetensors",
    ]
    assert not list(run_dir.rglob("*.tmp"))


def test_clients_table_has_one_row_per_client_per_round(learning_run: tuple[Path, dict[str, Any]]) -> None:
    clients = read_table(learning_run[0], "clients")
    assert len(clients) == 8 and sorted(clients["client_id"].unique().tolist()) == [0, 1, 2, 3]
    assert (
        clients[clients["round"] == 1]["first_time"].all()
        and not clients[clients["round"] == 2]["first_time"].any()
    )
    assert (clients["test_micro_f1"] == clients["test_acc"]).all()  # single-label: micro-F1 = accuracy
    evals = read_table(learning_run[0], "evals")
    assert set(evals[evals["model"] == "global"]["client_id"]) == {4}  # the held-out client


def test_aggregation_table_recomputes_the_rounds_dp2fl_maths(
    learning_run: tuple[Path, dict[str, Any]],
) -> None:
    run_dir, _ = learning_run
    agg = read_table(run_dir, "aggregation")
    clients = read_table(run_dir, "clients")
    config = load_config(run_dir / "config.yaml").algorithm
    for r in (1, 2):
        rows = agg[agg["round"] == r]
        ids = sorted(rows["i"].unique())
        m = len(ids)
        loss = rows.pivot(index="i", columns="j", values="loss").loc[ids, ids].to_numpy()
        want = rows.groupby("i")["global_weight_i"].first().loc[ids].to_numpy()
        assert np.allclose(global_weights(loss, config.global_weights), want)
        baselines = rows.groupby("j")["baseline_j"].first().loc[ids].to_numpy()
        this_round = clients[clients["round"] == r].set_index("client_id").loc[ids]
        assert np.allclose(baselines, this_round["baseline_loss"].to_numpy())
        if r == 2:  # baseline L_k = the client's val loss at the end of its previous round
            previous = clients[clients["round"] == 1].set_index("client_id").loc[ids]
            assert np.allclose(baselines, previous["val_loss"].to_numpy())
        for k in range(m):
            col = rows[rows["j"] == ids[k]].set_index("i").loc[ids]
            distances = col["distance"].to_numpy()
            # raw weight (L_k - loss) / (distance + eps) and the sets follow from the logged columns alone
            assert np.allclose(col["raw_weight"], (baselines[k] - loss[:, k]) / (distances + config.eps))
            pc = loss[:, k] < baselines[k]
            assert ((col["set"] == "PC").to_numpy() == pc).all()
            if pc.any():
                assert col["weight"][col["set"] != "DNC"].sum() == pytest.approx(1.0)


def test_pool_that_cannot_fit_fails_naming_the_knob() -> None:
    with pytest.raises(ConfigError, match="runtime.workers"):
        check_pool_fits({"CPU": 2.0}, workers=3, cpus=1.0, gpus=0.0)
    with pytest.raises(ConfigError, match="runtime.gpus_per_worker"):
        check_pool_fits({"CPU": 8.0}, workers=1, cpus=1.0, gpus=1.0)


def test_second_run_into_the_same_directory_is_refused(
    learning_run: tuple[Path, dict[str, Any]], tiny_config: ExperimentConfig
) -> None:
    run_dir, _ = learning_run
    with pytest.raises(ConfigError, match="already holds a run"):
        run_experiment(tiny_config, output_dir=run_dir.parent, run_name=run_dir.name, progress=False)
