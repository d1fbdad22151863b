"""``federation.eval_every`` skips evaluations without changing any number of the rounds it keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.metrics import read_table
from dp2fl_ray.runtime.simulation import run_experiment

pytestmark = pytest.mark.ray


def _run(config: ExperimentConfig, out: Path, name: str, every: int) -> dict[str, pd.DataFrame]:
    cfg = config.with_overrides(
        [f"algorithm.name={name}", "federation.rounds=3", f"federation.eval_every={every}"]
    )
    run_experiment(cfg, output_dir=out, run_name=f"{name}-{every}", progress=False)
    return {t: read_table(out / f"{name}-{every}", t) for t in ("rounds", "clients", "evals")}


@pytest.mark.parametrize("name", ["promptfl", "dp2fl"])
def test_skipped_rounds_are_marked_and_kept_rounds_are_identical(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path, name: str
) -> None:
    every = _run(tiny_config, tmp_path, name, 1)
    sparse = _run(tiny_config, tmp_path, name, 2)
    assert every["rounds"]["evaluated"].tolist() == [True, True, True]
    assert sparse["rounds"]["evaluated"].tolist() == [False, True, True]  # round 2, and the last
    skipped = sparse["rounds"].iloc[0]
    assert np.isnan(skipped["personalized_acc"]) and np.isnan(skipped["global_acc"])
    assert sorted(sparse["evals"]["round"].unique()) == [2, 3]
    assert set(sparse["evals"]["model"]) >= {"personalized", "global"}  # a skipped round hides no column
    first = sparse["clients"][sparse["clients"]["round"] == 1]
    assert first["test_acc"].isna().all() and (first["n_test"] == 0).all()
    assert first["val_loss"].notna().all() == (name == "dp2fl")  # DP2FL still measures its baselines
    numbers = ["train_loss", "personalized_acc", "personalized_micro_f1", "global_acc", "val_loss"]
    for r in (2, 3):
        a = every["rounds"][every["rounds"]["round"] == r][numbers].to_numpy()
        b = sparse["rounds"][sparse["rounds"]["round"] == r][numbers].to_numpy()
        np.testing.assert_array_equal(a, b)
        ca = every["clients"][every["clients"]["round"] == r][["client_id", "test_acc", "train_loss"]]
        cb = sparse["clients"][sparse["clients"]["round"] == r][["client_id", "test_acc", "train_loss"]]
        np.testing.assert_array_equal(ca.to_numpy(), cb.to_numpy())
