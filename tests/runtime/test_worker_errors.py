"""A worker's ModelError (files that differ from what preflight saw) reaches the user as one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.numpy import save

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.errors import ModelError
from dp2fl_ray.metrics import read_summary
from dp2fl_ray.runtime.simulation import run_experiment
from dp2fl_ray.runtime.user_errors import user_error

pytestmark = pytest.mark.ray


def test_a_model_that_passes_preflight_but_fails_in_the_workers_is_its_own_one_line_error(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{not json")  # preflight sees a config and weights; loading fails
    (model / "model.safetensors").write_bytes(save({}))
    config = tiny_config.with_overrides([f"model.path={model}"])
    with pytest.raises(ModelError) as info:
        run_experiment(config, output_dir=tmp_path / "out", run_name="bad", progress=False)
    assert type(info.value) is ModelError and str(model) in str(info.value)
    summary = read_summary(tmp_path / "out" / "bad")
    assert summary["status"] == "failed" and summary["error"].startswith("ModelError: ")
    assert "\x1b" not in summary["error"] and "Traceback" not in summary["error"]
    assert "resume_with" not in summary  # nothing was checkpointed


def test_the_user_error_is_found_in_the_text_of_an_actor_death() -> None:
    text = (
        "ActorDiedError: The actor died ... \x1b[36mTraceback ...\n"
        "dp2fl_ray.errors.DataError: no such file x.csv\n"
    )
    found = user_error(RuntimeError(text))
    assert isinstance(found, Exception) and type(found).__name__ == "DataError"
    assert str(found) == "no such file x.csv"
    assert user_error(RuntimeError("something else")) is None
