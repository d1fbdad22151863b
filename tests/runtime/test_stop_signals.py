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

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def base(checkpointed_base: ExperimentConfig) -> ExperimentConfig:
    return checkpointed_base


@pytest.fixture(scope="module")
def undisturbed(undisturbed_run: Path) -> Path:
    return undisturbed_run


def _numbers(run_dir: Path, table: str) -> pd.DataFrame:
    frame = read_table(run_dir, table)
    frame = frame[[c for c in frame.columns if not c.endswith("_s")]]
    return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)


def _stop_by_signal(base: ExperimentConfig, tmp_path: Path, signum: int, code: int) -> Path:
    """Start a driver, send ``signum`` once its first checkpoint lands, and check it stopped cleanly."""
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
    return run_dir


def test_sigint_stops_the_driver_between_rounds_cleanly(
    ray_cluster: None, base: ExperimentConfig, tmp_path: Path
) -> None:
    _stop_by_signal(base, tmp_path, signal.SIGINT, 130)


def test_sigterm_stops_the_driver_between_rounds_and_a_resume_gives_the_undisturbed_numbers(
    undisturbed: Path, base: ExperimentConfig, tmp_path: Path
) -> None:
    """SIGTERM is what ``ray job stop`` and Kubernetes send. Both signals reach the same handler, so
    one resume proves the stopped run's state is whole; the SIGKILL tests resume the other way."""
    run_dir = _stop_by_signal(base, tmp_path, signal.SIGTERM, 143)
    done = resume(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_summary(run_dir)["status"] == "completed"
    for table in ("rounds", "clients", "evals", "aggregation"):
        pd.testing.assert_frame_equal(
            _numbers(run_dir, table), _numbers(undisturbed, table), check_exact=True
        )
