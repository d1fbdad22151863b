"""Seeds as a sweep dimension on real Ray Tune, end to end into the sweep report: 2 methods x 2 seeds,
once straight through and once interrupted and resumed in place, give the same tables.

This is the suite's one interrupted-and-resumed sweep: it also checks that every trial's run
resumed in place (each round written once) and that ``best_config.yaml`` is runnable."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from dp2fl_ray import cli
from dp2fl_ray.config import ExperimentConfig, config_to_dict, load_config
from dp2fl_ray.metrics import read_summary, read_table
from dp2fl_ray.report import write_sweep_report
from dp2fl_ray.tune import run_sweep, sweep_from_dict

pytestmark = pytest.mark.ray


def _spec(tiny_config: ExperimentConfig, output: Path) -> dict[str, Any]:
    base = config_to_dict(tiny_config.with_overrides(["runtime.workers=1", "runtime.cpus_per_worker=0.5"]))
    return {"name": "seeds", "base": base, "output": str(output), "max_concurrent": 2, "seeds": 2,
            "space": {"algorithm.name": {"grid": ["promptfl", "dp2fl"]}}}  # fmt: skip


def interrupt_after_first_trial(flag: Path) -> Any:
    """A Tune callback that sends SIGINT (Ctrl+C) once, when the first trial ends (a flag file keeps
    the restored copy of it from firing again on resume)."""
    from ray import tune

    class Interrupt(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            if not flag.exists():
                flag.touch()
                os.kill(os.getpid(), signal.SIGINT)

    return Interrupt()


def _tables(report: str) -> str:
    """report.md without the line naming the sweep directory (the two sweeps live in different ones)."""
    return "\n".join(line for line in report.splitlines() if not line.startswith("- sweep directory:"))


@pytest.fixture(scope="module")
def straight(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    spec = sweep_from_dict(_spec(tiny_config, tmp_path_factory.mktemp("straight")))
    t0 = time.perf_counter()
    run_sweep(spec, verbose=0)
    print(f"\n2 x 2 sweep straight through: {time.perf_counter() - t0:.1f} s")
    return spec.sweep_dir


def test_each_seed_is_a_trial_and_trials_differing_only_in_it_share_a_cell(straight: Path) -> None:
    trials = pd.read_parquet(straight / "trials.parquet")
    assert len(trials) == 4 and (trials["status"] == "completed").all()
    assert sorted(zip(trials["algorithm.name"], trials["seed"])) == [
        ("dp2fl", 0), ("dp2fl", 1), ("promptfl", 0), ("promptfl", 1),
    ]  # fmt: skip
    cells = trials.groupby("algorithm.name")["cell_id"].unique()
    assert all(len(ids) == 1 for ids in cells) and cells["dp2fl"][0] != cells["promptfl"][0]
    for _, trial in trials.iterrows():
        assert load_config(Path(trial["run_dir"]) / "config.yaml").seed == trial["seed"]
    # the same seed gives the same clients under both methods: the comparison is paired
    sizes = {}
    for _, trial in trials.iterrows():
        clients = pd.read_parquet(Path(trial["run_dir"]) / "metrics" / "clients")
        sizes[(trial["algorithm.name"], trial["seed"])] = sorted(
            zip(clients["client_id"], clients["n_train"])
        )
    assert sizes[("dp2fl", 0)] == sizes[("promptfl", 0)] and sizes[("dp2fl", 1)] == sizes[("promptfl", 1)]


def test_the_sweep_report_has_every_cell_over_two_seeds_and_is_deterministic(straight: Path) -> None:
    assert cli.main(["report", str(straight)]) == 0
    report = (straight / "report" / "report.md").read_bytes()
    print("\n" + report.decode())
    text = report.decode()
    assert "# Sweep report: seeds" in text and "(n=2)" in text and "(n=1) |" not in text
    assert "Paired differences against `promptfl`" in text and "Every cell rests on all" in text
    assert cli.main(["report", str(straight)]) == 0
    assert (straight / "report" / "report.md").read_bytes() == report


def test_an_interrupted_and_resumed_sweep_gives_the_same_tables(
    straight: Path, tiny_config: ExperimentConfig, tmp_path: Path
) -> None:
    spec = sweep_from_dict(_spec(tiny_config, tmp_path))
    first = run_sweep(spec, callbacks=[interrupt_after_first_trial(tmp_path / "interrupted")], verbose=0)
    # Tune makes a grid's trials as slots free up: the ones not made yet come on resume
    assert 1 <= (first["status"] == "completed").sum() < 4 and (first["status"] != "failed").all()
    assert cli.main(["tune", "--resume", str(spec.sweep_dir), "--quiet"]) == 0

    trials = pd.read_parquet(spec.sweep_dir / "trials.parquet")
    assert len(trials) == 4 and (trials["status"] == "completed").all()
    rounds = pd.read_parquet(spec.sweep_dir / "rounds.parquet")
    assert len(rounds) == 8 and rounds.groupby("trial_id")["round"].apply(list).tolist() == [[1, 2]] * 4
    for _, trial in trials.iterrows():  # each run resumed in place: every round written once, config as swept
        run_dir = Path(trial["run_dir"])
        assert read_summary(run_dir)["status"] == "completed"
        assert read_table(run_dir, "rounds")["round"].tolist() == [1, 2]
        config = load_config(run_dir / "config.yaml")
        assert (config.algorithm.name, config.seed) == (trial["algorithm.name"], trial["seed"])
        assert trial["personalized_acc"] == pytest.approx(read_summary(run_dir)["personalized_acc"])
    best = trials.loc[trials["personalized_acc"].idxmax()]
    best_config = yaml.safe_load((spec.sweep_dir / "best_config.yaml").read_text())
    assert best_config["algorithm"]["name"] == best["algorithm.name"] and best_config["seed"] == best["seed"]
    assert best_config["output"] == spec.base["output"]  # runnable as is, into the usual results

    write_sweep_report(spec.sweep_dir)
    write_sweep_report(straight)
    resumed = (spec.sweep_dir / "report" / "report.md").read_text()
    assert _tables(resumed) == _tables((straight / "report" / "report.md").read_text())
