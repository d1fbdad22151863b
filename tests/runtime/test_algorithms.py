"""Every algorithm runs on the same engine and runtime and writes what it should."""

from __future__ import annotations

from pathlib import Path

import pytest

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.metrics import read_table
from dp2fl_ray.runtime.simulation import run_experiment

pytestmark = pytest.mark.ray


@pytest.mark.parametrize("name", ["local", "promptfl", "fedprox", "pfedme"])
def test_baseline_runs_end_to_end(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path, name: str
) -> None:
    config = tiny_config.with_overrides(
        [f"algorithm.name={name}", "train.lr=0.05", "federation.new_clients=2"]
    )
    summary = run_experiment(config, output_dir=tmp_path, run_name=name, progress=False)
    run_dir = tmp_path / name
    assert summary["status"] == "completed" and summary["algorithm"] == name
    clients = read_table(run_dir, "clients")
    assert len(clients) == 8 and clients["test_acc"].between(0, 1).all()
    assert not (run_dir / "metrics" / "aggregation").exists()  # the cross-evaluation is DP2FL's alone
    evals = read_table(run_dir, "evals")
    if name == "local":
        assert summary["global_acc"] != summary["global_acc"]  # NaN: Local has no global model
        assert set(evals["model"]) == {"personalized"}
    else:
        assert 0 <= summary["global_acc"] <= 1
        last = evals[evals["round"] == 2]
        assert {"init", "initglo", "global", "init_1round", "initglo_1round", "global_1round"} <= set(
            last["model"]
        )
        assert last[last["model"] != "personalized"]["held_out"].all()
    if name in ("promptfl", "fedprox"):
        # one global model: in round 2 every client starts from the round-1 global and is
        # evaluated with the round-2 global, so every client's data-prompt shift is the same
        shifts = clients[clients["round"] == 2]["data_prompt_shift"].to_numpy()
        assert shifts.max() - shifts.min() < 1e-5 and shifts.max() > 0
