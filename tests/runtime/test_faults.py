"""Nothing lost: dead workers, a dead aggregator, killed drivers, and bit-for-bit determinism."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import ray
from cli_driver import checkpointed_round, resume, start_driver, wait_for_first_checkpoint
from ray.exceptions import RayActorError

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.errors import CheckpointError
from dp2fl_ray.metrics import read_summary, read_table
from dp2fl_ray.runtime.simulation import resume_experiment, run_experiment
from dp2fl_ray.runtime.work import WorkerCore

pytestmark = pytest.mark.ray


def _is_timing(column: str) -> bool:
    """Wall-clock columns (``*_s`` seconds and the rates derived from them) differ run to run, and
    so does the movement count (``*_bytes`` of the rounds table): it depends on the slicing and
    counts a re-run slice again."""
    return (
        column.endswith("_s") or column == "client_updates_per_s" or column in ("moved_bytes", "driver_bytes")
    )


def _numbers(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Every table's numbers, minus wall-clock timings, in a canonical row order."""
    out = {}
    for table in ("rounds", "clients", "evals", "aggregation"):
        frame = read_table(run_dir, table)
        frame = frame[[c for c in frame.columns if not _is_timing(c)]]
        out[table] = frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)
    return out


def _assert_same_numbers(a: Path, b: Path, ignore: tuple[str, ...] = ()) -> None:
    for table, frame in _numbers(a).items():
        other = _numbers(b)[table]
        pd.testing.assert_frame_equal(
            frame.drop(columns=list(ignore), errors="ignore"),
            other.drop(columns=list(ignore), errors="ignore"),
            check_exact=True, obj=table,
        )  # fmt: skip


@pytest.fixture(scope="module")
def base(checkpointed_base: ExperimentConfig) -> ExperimentConfig:
    return checkpointed_base


@pytest.fixture(scope="module")
def reference(undisturbed_run: Path) -> Path:
    return undisturbed_run


@pytest.mark.parametrize(("workers", "cpus", "per_slice"), [(1, 1.0, 8), (3, 0.5, 1), (2, 1.0, 3)])
def test_same_numbers_with_any_worker_count_and_slice_size(
    reference: Path, base: ExperimentConfig, tmp_path: Path, workers: int, cpus: float, per_slice: int
) -> None:
    config = base.with_overrides(
        [
            f"runtime.workers={workers}",
            f"runtime.cpus_per_worker={cpus}",
            f"runtime.clients_per_slice={per_slice}",
        ]
    )
    run_experiment(config, output_dir=tmp_path, run_name="other", progress=False)
    _assert_same_numbers(reference, tmp_path / "other")


def test_slices_sized_from_memory_and_no_overlap_change_no_number(
    reference: Path, base: ExperimentConfig, tmp_path: Path
) -> None:
    """A memory budget of 2.5 clients' measured steps gives slices of 2 (not the configured 8);
    aggregating after the whole cross-evaluation instead of block by block: same numbers."""
    per_client = WorkerCore(base).slice_capacity()["bytes_per_client"]  # what each worker measures
    config = base.with_overrides(
        [
            "runtime.clients_per_slice=8",
            f"runtime.slice_memory_mib={2.5 * per_client / 2**20!r}",
            "runtime.overlap_aggregation=false",
        ]
    )
    summary = run_experiment(config, output_dir=tmp_path, run_name="sized", progress=False)
    assert summary["clients_per_slice"] == 2
    cohort = read_table(reference, "rounds")["cohort_size"]
    assert read_table(reference, "rounds")["early_aggregated_clients"].tolist() == cohort.tolist()
    assert read_table(tmp_path / "sized", "rounds")["early_aggregated_clients"].tolist() == [0] * len(cohort)
    _assert_same_numbers(reference, tmp_path / "sized", ignore=("early_aggregated_clients",))


def _kill_after(round_idx: int, kill: Any) -> Any:
    def on_round(row: dict[str, Any]) -> None:
        if row["round"] == round_idx:
            kill(row)

    return on_round


def _actor(run_dir: str, suffix: str) -> Any:
    name = Path(run_dir).name
    for actor in ray.util.list_named_actors(all_namespaces=False):
        if actor.startswith(f"dp2fl:{name}-") and actor.endswith(suffix):
            return ray.get_actor(actor)
    raise LookupError(f"no actor {suffix} for {run_dir}")


@pytest.mark.parametrize("restart", [True, False])
def test_a_dead_worker_costs_nothing(
    reference: Path, base: ExperimentConfig, tmp_path: Path, restart: bool
) -> None:
    """ray.kill a worker after round 1: its next slices run on a restarted worker (or, with no
    restart, on the survivor), and every number equals the undisturbed run's."""
    kill = _kill_after(1, lambda row: ray.kill(_actor(row["run_dir"], "worker-0"), no_restart=not restart))
    summary = run_experiment(base, output_dir=tmp_path, run_name="killed", progress=False, on_round=kill)
    assert summary["status"] == "completed" and summary["slice_retries"] >= 1
    _assert_same_numbers(reference, tmp_path / "killed")


def test_a_dead_aggregator_fails_the_run_with_how_to_resume_and_resume_finishes_it(
    reference: Path, base: ExperimentConfig, tmp_path: Path
) -> None:
    kill = _kill_after(2, lambda row: ray.kill(_actor(row["run_dir"], "aggregator"), no_restart=True))
    with pytest.raises(RayActorError):  # the driver's next call to the killed aggregator
        run_experiment(base, output_dir=tmp_path, run_name="agg", progress=False, on_round=kill)
    summary = read_summary(tmp_path / "agg")
    assert (
        summary["status"] == "failed"
        and summary["resume_with"] == f"dp2fl-ray run --resume {tmp_path / 'agg'}"
    )
    resumed = resume_experiment(tmp_path / "agg", progress=False)
    assert resumed["status"] == "completed" and resumed["rounds_completed"] == 3
    _assert_same_numbers(reference, tmp_path / "agg")


def test_a_sigkilled_driver_resumes_to_the_uninterrupted_numbers(
    reference: Path, base: ExperimentConfig, tmp_path: Path
) -> None:
    """A real driver process (the CLI) on the session cluster, SIGKILLed once round 1 is
    checkpointed; ``dp2fl-ray run --resume`` then finishes the run."""
    from dp2fl_ray.config import save_config

    config_path = tmp_path / "config.yaml"
    save_config(base, config_path)
    driver = start_driver(config_path, tmp_path, "victim")
    manifest = wait_for_first_checkpoint(driver, tmp_path / "victim")
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert checkpointed_round(manifest) >= 1
    assert read_summary(tmp_path / "victim")["status"] == "running"  # killed: nobody wrote an end
    done = resume(tmp_path / "victim")
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_summary(tmp_path / "victim")["status"] == "completed"
    assert not list((tmp_path / "victim").rglob("*.tmp"))
    _assert_same_numbers(reference, tmp_path / "victim")


def test_a_truncated_checkpoint_is_a_clear_error(reference: Path, tmp_path: Path) -> None:
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(reference, run_dir)
    (run_dir / "summary.json").write_text(json.dumps({"status": "failed"}))
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    for name in latest["files"]:  # each file of the checkpoint is covered by the manifest
        ckpt = run_dir / "checkpoints" / name
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        resume_experiment(run_dir, progress=False)


def test_resuming_a_completed_run_is_refused(reference: Path) -> None:
    with pytest.raises(CheckpointError, match="already completed"):
        resume_experiment(reference, progress=False)
