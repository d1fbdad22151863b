"""Finding 6: SIGINT and SIGTERM stop a real CLI driver between rounds, cleanly, and it resumes exactly."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pandas as pd
import pytest
from cli_driver import checkpointed_round, resume, start_driver, wait_for_first_checkpoint

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
    driver = start_driver(tmp_path / "config.yaml", tmp_path, "run", capture=True)
    manifest = wait_for_first_checkpoint(driver, tmp_path / "run")
    os.kill(driver.pid, signum)  # during round 2: the run stops once it is written
    _, stderr = driver.communicate(timeout=300)
    run_dir = tmp_path / "run"
    summary = read_summary(run_dir)

    assert driver.returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr and f"dp2fl-ray: stopped by {signal.Signals(signum).name}" in stderr
    assert (
        summary["status"] == "interrupted" and summary["resume_with"] == f"dp2fl-ray run --resume {run_dir}"
    )
    stopped_after = checkpointed_round(manifest)
    assert read_table(run_dir, "rounds")["round"].max() == stopped_after < base.federation.rounds
    assert not (run_dir / "run.lock").exists()

    done = resume(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_summary(run_dir)["status"] == "completed"
    for table in ("rounds", "clients", "evals", "aggregation"):
        pd.testing.assert_frame_equal(
            _numbers(run_dir, table), _numbers(undisturbed, table), check_exact=True
        )
