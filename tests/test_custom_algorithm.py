"""A user's own algorithm runs from its own folder, outside the package, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dp2fl_ray.config import config_from_dict
from dp2fl_ray.errors import ConfigError
from dp2fl_ray.metrics import read_table

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "custom_algorithm"
TINY = "model.tiny={hidden: 64, layers: 2, heads: 4, projection: 32, image_size: 16, patch_size: 8}"


def test_the_example_runs_from_its_folder_and_keeps_data_prompts_per_client(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": ".", "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    overrides = [TINY, "federation.rounds=2", "federation.population=4", "federation.cohort=4",
                 "federation.new_clients=1", "train.local_epochs=1", "runtime.clients_per_slice=2",
                 "model.prompt.depth=2"]  # fmt: skip
    cmd = [sys.executable, "-m", "dp2fl_ray.cli", "run", "task_only.yaml", "--output", str(tmp_path),
           "--name", "custom", "--quiet", *(a for o in overrides for a in ("--set", o))]  # fmt: skip
    done = subprocess.run(cmd, cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "custom" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["algorithm"] == "my_fedavg:TaskOnlyFedAvg"
    assert summary["rounds_completed"] == 2 and np.isfinite(summary["global_acc"])
    clients = read_table(tmp_path / "custom", "clients")
    second = clients[clients["round"] == 2]
    assert not second["first_time"].any()  # the store kept every client's own data prompt
    assert (second["data_prompt_shift"] > 0).all()


def test_an_unknown_option_of_a_users_algorithm_names_it_and_its_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    config = config_from_dict({"algorithm": {"name": "my_fedavg:TaskOnlyFedAvg", "server_lr": 0.5}})
    assert config.algorithm.server_lr == 0.5
    with pytest.raises(ConfigError, match=r"algorithm.serverlr.*'my_fedavg:TaskOnlyFedAvg'.*server_lr"):
        config_from_dict({"algorithm": {"name": "my_fedavg:TaskOnlyFedAvg", "serverlr": 0.5}})
    with pytest.raises(ConfigError, match=r"algorithm.server_lr.*\(0, 1\]"):
        config_from_dict({"algorithm": {"name": "my_fedavg:TaskOnlyFedAvg", "server_lr": 2.0}})
