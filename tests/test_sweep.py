"""Seeds as a sweep dimension and cells (``dp2fl_ray/sweep.py``, no Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dp2fl_ray.config import ExperimentConfig, config_to_dict
from dp2fl_ray.errors import ConfigError
from dp2fl_ray.sweep import cell_id, loaded_value, stored_value, sweep_from_dict, trial_config

PARTITIONS = [{"scheme": "paper"}, {"scheme": "dirichlet", "alpha": 0.1}]


def _spec(tiny_config: ExperimentConfig, **sweep: Any) -> dict[str, Any]:
    base = config_to_dict(tiny_config.with_overrides(["runtime.workers=1", "data.partition.shots=5"]))
    return {"name": "s", "base": base, "space": {"algorithm.name": {"grid": ["dp2fl", "local"]}}, **sweep}


@pytest.mark.parametrize(("seeds", "grid"), [(3, (0, 1, 2)), ([4, 0], (4, 0)), (1, (0,))])
def test_seeds_become_a_grid_over_the_config_seed(
    tiny_config: ExperimentConfig, seeds: Any, grid: tuple[int, ...]
) -> None:
    spec = sweep_from_dict(_spec(tiny_config, seeds=seeds))
    assert list(spec.space) == ["algorithm.name", "seed"] and spec.space["seed"].values == grid
    assert trial_config(spec, {"algorithm.name": "local", "seed": grid[-1]}).seed == grid[-1]
    again = sweep_from_dict({**yaml.safe_load(spec.to_yaml()), "name": "s"})  # as resume reads it
    assert again.space == spec.space


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seeds": 0}, "seeds"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"seeds": [-1]}, "seeds"),
        ({"seeds": "3"}, "seeds"),
        ({"seeds": 2, "space": {"seed": {"grid": [0, 1]}}}, "seeds"),
        ({"seeds": 2, "num_samples": 2}, "num_samples"),
    ],
)
def test_bad_seeds_fail_naming_the_key(
    tiny_config: ExperimentConfig, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        sweep_from_dict(_spec(tiny_config, **change))
    assert info.value.field == field, str(info.value)


def test_a_mapping_value_merges_into_its_section(tiny_config: ExperimentConfig) -> None:
    spec = sweep_from_dict(_spec(tiny_config, space={"data.partition": {"grid": PARTITIONS}}))
    partition = trial_config(spec, {"data.partition": PARTITIONS[1]}).data.partition
    assert (partition.scheme, partition.alpha, partition.shots) == ("dirichlet", 0.1, 5)  # shots kept
    stored = stored_value(PARTITIONS[1])
    assert (
        stored == '{"alpha":0.1,"scheme":"dirichlet"}'
        and loaded_value(spec, "data.partition", stored) == PARTITIONS[1]
    )
    with pytest.raises(ConfigError, match="data.partition"):
        sweep_from_dict(_spec(tiny_config, space={"data.partition": {"grid": [{"sheme": "iid"}]}}))


def test_trials_differing_only_in_the_seed_share_a_cell(tiny_config: ExperimentConfig) -> None:
    spec = sweep_from_dict(_spec(tiny_config, seeds=2))
    dp2fl = [cell_id(spec, {"algorithm.name": "dp2fl", "seed": s}) for s in (0, 1)]
    assert dp2fl[0] == dp2fl[1] != cell_id(spec, {"algorithm.name": "local", "seed": 0})
    assert dp2fl[0].startswith("cell-") and len(dp2fl[0]) == 13


def test_the_study_sweep_file_is_valid() -> None:
    """experiments/study_clinc150.yaml: 5 methods x 4 partitions x 3 seeds, each a valid trial config."""
    path = Path(__file__).resolve().parents[1] / "experiments" / "study_clinc150.yaml"
    spec = sweep_from_dict(yaml.safe_load(path.read_text()), relative_to=path.parent)
    assert spec.space["algorithm.name"].values == ("promptfl", "dp2fl", "local", "fedprox", "fedpgp")
    assert spec.base["federation"]["eval_every"] == 2
    assert spec.space["seed"].values == (0, 1, 2) and len(spec.space["data.partition"].values) == 4
    config = trial_config(spec, {"data.partition": {"scheme": "dirichlet", "alpha": 0.1}, "seed": 2})
    assert (config.model.path, config.data.source, config.model.dtype) == ("minilm", "clinc150", "bfloat16")
    assert (config.data.partition.scheme, config.data.partition.alpha, config.seed) == ("dirichlet", 0.1, 2)


def test_the_reduced_study_is_the_full_ones_federation_on_fewer_cells() -> None:
    """experiments/study_clinc150_small.yaml (the study that ran): 3 methods x 2 partitions x 3 seeds."""
    root = Path(__file__).resolve().parents[1] / "experiments"
    small, full = (
        sweep_from_dict(yaml.safe_load((root / name).read_text()), relative_to=root)
        for name in ("study_clinc150_small.yaml", "study_clinc150.yaml")
    )
    assert small.space["algorithm.name"].values == ("promptfl", "dp2fl", "local")
    assert len(small.space["data.partition"].values) == 2 and small.space["seed"].values == (0, 1, 2)
    assert small.base == full.base  # the same federation, model and data
