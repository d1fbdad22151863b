"""One undisturbed, checkpointed run that the fault and signal tests compare their resumed runs to."""

from __future__ import annotations

from pathlib import Path

import pytest

from dp2fl_ray.config import ExperimentConfig


@pytest.fixture(scope="session")
def checkpointed_base(tiny_config: ExperimentConfig) -> ExperimentConfig:
    """3 rounds, a checkpoint after each, and retries for the slices of a killed worker; cold
    workers, so the runs compared with it start from nothing and can kill theirs by name."""
    return tiny_config.with_overrides(
        [
            "federation.rounds=3",
            "output.checkpoint_every=1",
            "runtime.max_retries=2",
            "runtime.keep_workers=false",
        ]
    )


@pytest.fixture(scope="session")
def undisturbed_run(
    ray_cluster: None, checkpointed_base: ExperimentConfig, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``checkpointed_base`` run straight through: the numbers every interrupted run must end with."""
    from dp2fl_ray.runtime.simulation import run_experiment

    out = tmp_path_factory.mktemp("undisturbed")
    run_experiment(checkpointed_base, output_dir=out, run_name="ref", progress=False)
    return out / "ref"
