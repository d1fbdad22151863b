"""``runtime.keep_workers``: a run reuses the previous run's workers when the backbone is the same,
with the numbers of a cold start, and starts new ones when it is not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import ray

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.metrics import read_table
from dp2fl_ray.runtime import warm_workers
from dp2fl_ray.runtime.simulation import run_experiment

pytestmark = pytest.mark.ray


def _run(config: ExperimentConfig, out: Path, name: str) -> set[str]:
    """Run ``config``; the names of the worker actors alive during its first round."""
    seen: set[str] = set()

    def look(row: dict[str, Any]) -> None:
        if row["round"] == 1:
            seen.update(n for n in ray.util.list_named_actors() if n.startswith("dp2fl:") and ":worker-" in n)

    run_experiment(config, output_dir=out, run_name=name, progress=False, on_round=look)
    return seen


def _numbers(run_dir: Path, table: str) -> pd.DataFrame:
    frame = read_table(run_dir, table)
    frame = frame[[c for c in frame.columns if not c.endswith("_s") and c != "client_updates_per_s"]]
    return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)


def test_a_warm_run_reuses_the_workers_and_computes_what_a_cold_one_does(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path
) -> None:
    warm_workers.release()
    first = tiny_config.with_overrides(["algorithm.name=promptfl", "runtime.keep_workers=true"])
    # a different method, partition and training: none of them is in the backbone key
    second = first.with_overrides(["algorithm.name=dp2fl", "data.partition.alpha=0.3", "train.lr=0.05"])
    names_first = _run(first, tmp_path, "first")
    names_second = _run(second, tmp_path, "second")
    assert len(names_first) == 2 and names_second == names_first  # the same two actors

    # a run without keep_workers releases the kept ones (their CPUs are its) and keeps nothing
    names_cold = _run(second.with_overrides(["runtime.keep_workers=false"]), tmp_path, "cold")
    assert names_cold.isdisjoint(names_first) and warm_workers.release() == 0
    for table in ("rounds", "clients", "evals", "aggregation"):
        pd.testing.assert_frame_equal(
            _numbers(tmp_path / "second", table), _numbers(tmp_path / "cold", table), check_exact=True
        )


def test_another_seed_or_model_starts_new_workers_and_kills_the_kept_ones(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path
) -> None:
    warm_workers.release()
    # one worker a run: what is tested is which actors a run keeps, not how many (three cold
    # starts of two workers each cost this test a minute)
    config = tiny_config.with_overrides(
        ["runtime.keep_workers=true", "runtime.workers=1", "federation.rounds=1"]
    )
    kept = _run(config, tmp_path, "a")
    reseeded = _run(config.with_overrides(["seed=7"]), tmp_path, "b")
    assert reseeded.isdisjoint(kept)  # the seed builds the data: a new backbone key
    reshaped = _run(config.with_overrides(["seed=7", "model.prompt.n_ctx=3"]), tmp_path, "c")
    assert reshaped.isdisjoint(reseeded)
    alive = set(ray.util.list_named_actors())
    assert alive.isdisjoint(kept | reseeded) and reshaped <= alive  # only the last run's are kept
    assert len(kept) == len(reseeded) == len(reshaped) == 1 and warm_workers.release() == 1
