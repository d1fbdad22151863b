"""Finding 6: SIGINT and SIGTERM stop a real CLI driver between rounds, cleanly, and it resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import ray

from dp2fl_ray.config import ExperimentConfig, save_config
from dp2fl_ray.metrics import read_summary, read_table
from dp2fl_ray.runtime.simulation import run_experiment

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def base(tiny_config: ExperimentConfig) -> ExperimentConfig:
    return tiny_config.with_overrides(["federation.rounds=4", "output.checkpoint_every=1"])


@pytest.fixture(scope="module")
def undisturbed(ray_cluster: None, base: ExperimentConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("undisturbed")
    run_experiment(base, output_dir=out, run_name="ref", progress=False)
    return out / "ref"


def _numbers(run_dir: Path, table: str) -> pd.DataFrame:
    frame = read_table(run_dir, table)
    frame = frame[[c for c in frame.columns if not c.endswith("_s")]]
    return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_driver_between_rounds_and_a_resume_gives_the_undisturbed_numbers(
    undisturbed: Path, base: ExperimentConfig, tmp_path: Path, signum: int, code: int
) -> None:
    save_config(base, tmp_path / "config.yaml")
    address = ray.get_runtime_context().gcs_address  # the session cluster: no second Ray to start
    cmd = [sys.executable, "-m", "dp2fl_ray.cli", "run", str(tmp_path / "config.yaml"), "--quiet",
           "--name", "run", "--output", str(tmp_path), "--address", address]  # fmt: skip
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = tmp_path / "run" / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 300
    while not manifest.exists() and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    os.kill(driver.pid, signum)  # during round 2: the run stops once it is written
    _, stderr = driver.communicate(timeout=300)
    run_dir = tmp_path / "run"
    summary = read_summary(run_dir)

    assert driver.returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr and f"dp2fl-ray: stopped by {signal.Signals(signum).name}" in stderr
    assert (
        summary["status"] == "interrupted" and summary["resume_with"] == f"dp2fl-ray run --resume {run_dir}"
    )
    stopped_after = json.loads(manifest.read_text())["round"]
    assert read_table(run_dir, "rounds")["round"].max() == stopped_after < base.federation.rounds
    assert not (run_dir / "run.lock").exists()

    done = subprocess.run([sys.executable, "-m", "dp2fl_ray.cli", "run", "--resume", str(run_dir), "--quiet"],
                          check=False, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_summary(run_dir)["status"] == "completed"
    for table in ("rounds", "clients", "evals", "aggregation"):
        pd.testing.assert_frame_equal(
            _numbers(run_dir, table), _numbers(undisturbed, table), check_exact=True
        )
