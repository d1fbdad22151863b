"""Every backbone runs end to end on the shared local Ray cluster (tiny random configs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.metrics import read_table
from dp2fl_ray.runtime.simulation import run_experiment

pytestmark = pytest.mark.ray

BACKBONES = {
    "vit": ["model.backbone=vit", "model.name=vit_base_patch16_224", "data.source=digits"],
    "bert": [
        "model.backbone=bert",
        "data.source=clinc150",
        "data.partition.scheme=domain",
        "data.partition.shots=2",
        "model.max_length=16",
    ],
}


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_backbone_runs_dp2fl_end_to_end(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path, backbone: str
) -> None:
    config = tiny_config.with_overrides([*BACKBONES[backbone], "federation.rounds=1"])
    summary = run_experiment(config, output_dir=tmp_path, run_name=backbone, progress=False)
    assert summary["status"] == "completed"
    clients = read_table(tmp_path / backbone, "clients")
    assert len(clients) == 4 and (clients["status"] == "ok").all()
    assert clients["test_acc"].between(0, 1).all() and clients["n_train"].gt(0).all()
    assert len(read_table(tmp_path / backbone, "aggregation")) == 16  # the 4 x 4 cross-evaluation
