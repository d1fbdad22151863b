"""Every committed experiment config is valid (a typo there would surface only on a GPU box)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dp2fl_ray.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    p for p in sorted((ROOT / "experiments").glob("*.yaml")) if not p.name.startswith(("sweep", "study"))
] + sorted(
    (ROOT / "experiments" / "paper").glob("*.yaml")
)  # sweep*.yaml and study*.yaml are Tune sweeps (tests/test_tune.py, tests/test_sweep.py)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_experiment_config_validates(path: Path) -> None:
    config = load_config(path)
    assert config.federation.cohort <= config.federation.population


def test_the_paper_configs_cover_the_papers_eight_datasets() -> None:
    names = {p.stem for p in (ROOT / "experiments" / "paper").glob("*.yaml")}
    assert names == {
        "caltech101",
        "dtd",
        "eurosat",
        "fgvc_aircraft",
        "food101",
        "oxford_flowers",
        "oxford_pets",
        "ucf101",
    }
    for name in names:
        config = load_config(ROOT / "experiments" / "paper" / f"{name}.yaml")
        assert (config.model.backbone, config.data.source, config.federation.population) == (
            "clip",
            "coop",
            10,
        )
