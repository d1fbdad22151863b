"""A resume checks what it resumes, before any round runs: the config, and every metrics table."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from dp2fl_ray.config import ExperimentConfig, config_to_dict, load_config
from dp2fl_ray.errors import CheckpointError
from dp2fl_ray.metrics import read_summary, read_table
from dp2fl_ray.runtime.resume_checks import config_diff
from dp2fl_ray.runtime.simulation import resume_experiment, run_experiment

pytestmark = pytest.mark.ray


class _Crash(RuntimeError):
    pass


@pytest.fixture(scope="module")
def crashed(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A 3-round run that died after round 2 was written and checkpointed."""
    config = tiny_config.with_overrides(["federation.rounds=3", "output.checkpoint_every=1"])
    out = tmp_path_factory.mktemp("crashed")

    def crash(row: dict[str, Any]) -> None:
        if row["round"] == 2:
            raise _Crash("the driver died")

    with pytest.raises(_Crash):
        run_experiment(config, output_dir=out, run_name="run", progress=False, on_round=crash)
    return out / "run"


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in (run / "metrics").rglob("*.parquet"))


def test_the_crashed_run_says_how_to_resume_and_resumes_to_the_end(crashed: Path, tmp_path: Path) -> None:
    summary = read_summary(crashed)
    assert summary["status"] == "failed" and "\x1b" not in summary["error"]
    assert summary["resume_with"] == f"dp2fl-ray run --resume {crashed}"
    run = _copy(crashed, tmp_path)
    resumed = resume_experiment(run, progress=False)
    assert resumed["status"] == "completed" and read_table(run, "rounds")["round"].tolist() == [1, 2, 3]


def test_a_resume_after_editing_config_yaml_is_refused_listing_the_changed_fields(
    crashed: Path, tmp_path: Path
) -> None:
    """Finding 2: train.lr edited from 0.035 to 0.5 used to run the remaining rounds with it."""
    run = _copy(crashed, tmp_path)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("lr: 0.035", "lr: 0.5"))
    before = _files(run)
    with pytest.raises(CheckpointError) as info:
        resume_experiment(run, progress=False)
    assert "train.lr: 0.035 -> 0.5" in str(info.value) and "config.yaml" in str(info.value)
    assert _files(run) == before and read_summary(run)["status"] == "failed"  # no round ran


@pytest.mark.parametrize("lost", ["metrics/rounds/round=1", "metrics/evals"])
def test_a_resume_after_a_deleted_metrics_table_is_refused_naming_it(
    crashed: Path, tmp_path: Path, lost: str
) -> None:
    """Finding 3: with rounds/round=1 and evals deleted, a resume used to end 'completed'."""
    run = _copy(crashed, tmp_path)
    shutil.rmtree(run / lost)
    before = _files(run)
    with pytest.raises(CheckpointError) as info:
        resume_experiment(run, progress=False)
    table = lost.split("/")[1]
    assert f"metrics table '{table}'" in str(info.value) and "round 1" in str(info.value)
    assert _files(run) == before and read_summary(run)["status"] == "failed"


def test_a_resume_after_a_truncated_metrics_file_is_refused_before_any_round(
    crashed: Path, tmp_path: Path
) -> None:
    """Finding 4: a truncated Parquet used to fail only at the end, in an ArrowInvalid traceback."""
    run = _copy(crashed, tmp_path)
    part = run / "metrics" / "clients" / "round=2" / "part-0.parquet"
    part.write_bytes(part.read_bytes()[:40])
    with pytest.raises(CheckpointError) as info:
        resume_experiment(run, progress=False)
    assert "metrics table 'clients' round 2 is unreadable" in str(info.value) and str(part) in str(info.value)
    assert read_summary(run)["status"] == "failed"


def test_config_diff_lists_dotted_fields_only_where_they_differ() -> None:
    a = config_to_dict(load_config(None))
    b = config_to_dict(load_config(None, ["train.lr=0.5", "model.tiny.hidden=64"]))
    assert config_diff(a, b) == ["model.tiny.hidden: 128 -> 64", "train.lr: 0.035 -> 0.5"]
    assert config_diff(a, a) == []
