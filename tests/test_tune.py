"""Ray Tune sweep specs fail fast naming the key, before Tune or Ray start.

The sweep that runs, is interrupted and resumes is in ``test_tune_seeds.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dp2fl_ray.config import ExperimentConfig, config_to_dict
from dp2fl_ray.errors import ConfigError
from dp2fl_ray.tune import load_sweep, sweep_from_dict, trial_bundles

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
