"""Ray Tune sweeps: specs fail fast naming the key; a sweep runs, is interrupted, and resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from dp2fl_ray import cli
from dp2fl_ray.config import ExperimentConfig, config_to_dict, load_config
from dp2fl_ray.errors import ConfigError
from dp2fl_ray.metrics import read_summary, read_table
from dp2fl_ray.tune import load_sweep, run_sweep, sweep_from_dict, trial_bundles

ROOT = Path(__file__).resolve().parents[1]
TUNE_COMMAND = ("dp2fl_ray.commands.tune", "run a Ray Tune sweep of experiments")


def _spec(tiny_config: ExperimentConfig, **sweep: Any) -> dict[str, Any]:
    base = config_to_dict(tiny_config.with_overrides(["runtime.workers=1", "runtime.cpus_per_worker=0.5"]))
    return {"name": "s", "base": base, "space": {"train.lr": {"grid": [0.05, 0.2]}}, **sweep}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"num_sampels": 2}, "num_sampels"),
        ({"space": {"train.lr": {"grid": [0.1, -1.0]}}}, "space.train.lr"),
        ({"space": {"train.lrr": {"choice": [0.1]}}}, "space.train.lrr"),
        ({"space": {"federation.rounds": {"uniform": [1, 3]}}}, "space.federation.rounds"),
        ({"space": {"train.lr": {"loguniform": [0, 0.1]}}}, "space.train.lr.loguniform"),
        ({"space": {"train.lr": {"range": [0, 0.1]}}}, "space.train.lr"),
        (
            {"space": {"federation.cohort": {"grid": [2, 8]}}},
            "space.federation.cohort",
        ),  # cohort > population
        (
            {"scheduler": {"asha": {"grace_period": 3}}},
            "scheduler.asha.grace_period",
        ),  # > max_t = the 2 rounds
        ({"scheduler": {"asha": {"max_t": 2, "reduction_factor": 1}}}, "scheduler.asha.reduction_factor"),
        ({"metric": "accuracy"}, "metric"),
        ({"mode": "maximise"}, "mode"),
    ],
)
def test_a_bad_sweep_fails_before_tune_naming_the_key(
    tiny_config: ExperimentConfig, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        sweep_from_dict(_spec(tiny_config, **change))
    assert info.value.field == field, str(info.value)


def test_the_message_of_a_bad_grid_value_says_which_trial_and_why(tiny_config: ExperimentConfig) -> None:
    with pytest.raises(
        ConfigError, match=r"space\.train\.lr.*train\.lr=-1\.0.*expected a float in \(0, inf\)"
    ):
        sweep_from_dict(_spec(tiny_config, space={"train.lr": {"grid": [0.1, -1.0]}}))


def test_a_trial_reserves_a_bundle_for_its_driver_and_one_per_worker(tiny_config: ExperimentConfig) -> None:
    spec = sweep_from_dict(_spec(tiny_config, driver_cpus=0.25))
    assert trial_bundles(spec) == [{"CPU": 0.25}, {"CPU": 0.5}]
    base = config_to_dict(tiny_config.with_overrides(["runtime.workers=3", "runtime.gpus_per_worker=1"]))
    spec = sweep_from_dict({**_spec(tiny_config), "base": base})
    assert trial_bundles(spec) == [{"CPU": 0.5}] + [{"CPU": 1.0, "GPU": 1.0}] * 3


def test_the_shipped_sweep_is_valid_and_set_overrides_reach_the_base() -> None:
    spec = load_sweep(ROOT / "experiments" / "sweep.yaml", ["federation.rounds=6"])
    assert set(spec.space) == {"train.lr", "algorithm.alpha"}
    assert spec.base["federation"]["rounds"] == 6 and spec.base["data"]["source"] == "digits"
    assert spec.base["runtime"]["workers"] == 1 and spec.scheduler is not None and spec.scheduler.max_t == 6
    assert spec.sweep_dir.is_absolute()


def test_a_bad_sweep_on_the_command_line_exits_2_without_importing_ray(tmp_path: Path) -> None:
    code = (
        "import sys; from dp2fl_ray import cli; "
        f"cli.COMMANDS.setdefault('tune', {TUNE_COMMAND!r}); "
        "rc = cli.main(['tune', 'experiments/sweep.yaml', '--set', 'train.lr=-1']); "
        "print(rc, 'ray' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "train.lr" in done.stderr


def interrupt_once(flag: Path) -> Any:
    """A Tune callback that interrupts the sweep (as Ctrl+C does) when the first trial ends.

    Tune keeps callbacks with its state and restores them on resume: a flag file keeps this
    one from firing again there."""
    from ray import tune

    class Interrupt(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            if not flag.exists():
                flag.touch()
                os.kill(os.getpid(), signal.SIGINT)

    return Interrupt()


@pytest.mark.ray
def test_a_four_trial_sweep_interrupted_after_its_first_trial_resumes_to_the_end(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dp2fl_ray.runtime import actors

    if not hasattr(actors, "worker_placement"):  # else every trial's workers wait forever for CPUs
        pytest.fail(
            "runtime/placement.py must place workers in the Tune trial's placement group (worker_placement)"
        )
    sweep = _spec(
        tiny_config, name="grid", output=str(tmp_path), max_concurrent=2,
        space={"train.lr": {"grid": [0.05, 0.2]}, "algorithm.alpha": {"grid": [1.1, 1.5]}},
    )  # fmt: skip
    spec = sweep_from_dict(sweep)
    t0 = time.perf_counter()
    first = run_sweep(spec, callbacks=[interrupt_once(tmp_path / "interrupted")], verbose=0)
    t_first = time.perf_counter() - t0
    # Tune makes a grid's trials as slots free up: the ones not made yet come on resume
    assert 1 <= (first["status"] == "completed").sum() < 4 and (first["status"] != "failed").all()

    monkeypatch.setitem(cli.COMMANDS, "tune", TUNE_COMMAND)
    assert cli.main(["tune", "--resume", str(spec.sweep_dir), "--quiet"]) == 0
    print(f"\nsweep: {t_first:.1f} s until interrupted, {time.perf_counter() - t0:.1f} s in all")

    trials = pd.read_parquet(spec.sweep_dir / "trials.parquet")
    print(trials[["trial_id", "status", "rounds_completed", "train.lr", "algorithm.alpha", "personalized_acc",
                  "global_acc", "train_loss"]].to_string(index=False))  # fmt: skip
    assert len(trials) == 4 and (trials["status"] == "completed").all()
    assert sorted(zip(trials["train.lr"], trials["algorithm.alpha"])) == [
        (0.05, 1.1),
        (0.05, 1.5),
        (0.2, 1.1),
        (0.2, 1.5),
    ]
    rounds = pd.read_parquet(spec.sweep_dir / "rounds.parquet")
    assert len(rounds) == 8 and rounds.groupby("trial_id")["round"].apply(list).tolist() == [[1, 2]] * 4
    for _, trial in trials.iterrows():  # each run resumed in place: every round written once, config as swept
        run_dir = Path(trial["run_dir"])
        assert read_summary(run_dir)["status"] == "completed"
        assert read_table(run_dir, "rounds")["round"].tolist() == [1, 2]
        config = load_config(run_dir / "config.yaml")
        assert (config.train.lr, config.algorithm.alpha) == (trial["train.lr"], trial["algorithm.alpha"])
        assert trial["personalized_acc"] == pytest.approx(read_summary(run_dir)["personalized_acc"])
    best = trials.loc[trials["personalized_acc"].idxmax()]
    best_config = yaml.safe_load((spec.sweep_dir / "best_config.yaml").read_text())
    assert (
        best_config["train"]["lr"] == best["train.lr"]
        and best_config["algorithm"]["alpha"] == best["algorithm.alpha"]
    )
    assert best_config["output"] == spec.base["output"]  # runnable as is, into the usual results
