"""Tests for dp2fl_ray.config: defaults, layering, round trips and every kind of error."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dp2fl_ray.config import (
    ExperimentConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from dp2fl_ray.errors import ConfigError

SCHEMA_DEFAULTS: dict[str, Any] = {
    "name": "quickstart",
    "seed": 0,
    "model": {
        "backbone": "clip",
        "path": None,
        "prompt": {"n_ctx": 2, "depth": 3, "init": "a photo of a"},
        "tiny": {
            "hidden": 128,
            "layers": 4,
            "heads": 4,
            "projection": 64,
            "image_size": 32,
            "patch_size": 8,
            "initializer_factor": 3.0,
        },
        "device": "auto",
        "dtype": "float32",
        "name": None,
        "max_length": 32,
        "compile": False,
    },
    "data": {
        "source": "digits",
        "path": None,
        "image_size": 224,
        "partition": {
            "scheme": "paper",
            "alpha": 0.5,
            "shots": 16,
            "drop_class_fraction": 0.2,
            "keep_fraction": 0.25,
            "dominant_fraction": 0.75,
            "val_fraction": 0.5,
            "test_fraction": 1.0,
            "samples_per_client": 40,
        },
    },
    "federation": {
        "population": 10,
        "cohort": 10,
        "rounds": 10,
        "new_clients": 2,
        "eval_every": 1,
        "max_eval_models": 0,
        "joins": "",
    },
    "algorithm": {
        "name": "dp2fl",
        "alpha": 1.2,
        "beta": 0.2,
        "global_weights": "fomo_sum",
        "tau": 1.0,
        "rnc_direction": "toward",
        "baseline": "last",
        "eps": 1e-8,
    },
    "train": {
        "local_epochs": 5,
        "batch_size": 4,
        "lr": 0.035,
        "optimizer": "sgd",
        "momentum": 0.9,
        "weight_decay": 0.0,
        "eval_batch_size": 256,
    },
    "runtime": {
        "workers": 2,
        "cpus_per_worker": 1.0,
        "gpus_per_worker": 0.0,
        "clients_per_slice": 8,
        "overlap_aggregation": True,
        "slice_memory_mib": 0.0,
        "address": None,
        "max_retries": 2,
        "max_failures": 0,
        "keep_workers": False,
    },
    "store": {
        "backend": "memory",
        "uri": None,
        "shard_size": 4096,
        "cache_shards": 16,
        "cache_mib": 256.0,
        "dtype": "float32",
    },
    "output": {"dir": "results/runs", "checkpoint_every": 5},
}


def nested(dotted: str, value: Any) -> dict[str, Any]:
    """{"a": {"b": value}} for "a.b"."""
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return dict(out)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and layering ----------------------------------------------------------------


def test_defaults_equal_the_schema() -> None:
    assert config_to_dict(ExperimentConfig()) == SCHEMA_DEFAULTS
    assert load_config(None) == ExperimentConfig()


def test_partial_sections_keep_the_other_defaults() -> None:
    config = config_from_dict({"train": {"lr": 0.1}, "model": {"prompt": {"depth": 9}}})
    assert config.train.lr == 0.1
    assert config.train.batch_size == 4
    assert config.model.prompt.depth == 9
    assert config.model.prompt.n_ctx == 2


def test_empty_section_and_empty_file_mean_defaults(tmp_path: Path) -> None:
    assert config_from_dict({"train": None}) == ExperimentConfig()
    assert load_config(write(tmp_path / "empty.yaml", "")) == ExperimentConfig()


def test_yaml_then_overrides_later_layer_wins(tmp_path: Path) -> None:
    path = write(
        tmp_path / "exp.yaml",
        "name: run-1\ntrain: {lr: 0.1, batch_size: 8}\nfederation: {population: 100, cohort: 5}\n",
    )
    config = load_config(path, ["train.lr=0.2", "federation.rounds=3", "model.path=null"])
    assert config.name == "run-1"
    assert config.train.lr == 0.2  # override beats YAML
    assert config.train.batch_size == 8  # YAML beats default
    assert config.federation.population == 100
    assert config.federation.rounds == 3
    assert config.model.path is None
    assert config.train.momentum == 0.9  # untouched default


def test_override_values_are_parsed_as_yaml() -> None:
    out = apply_overrides(
        {},
        [
            "a.int=3",
            "a.float=0.1",
            "a.none=null",
            "a.flag=true",
            "a.list=[1,2]",
            "a.text='007'",
            "a.empty=",
        ],
    )
    assert out == {
        "a": {
            "int": 3,
            "float": 0.1,
            "none": None,
            "flag": True,
            "list": [1, 2],
            "text": "007",
            "empty": None,
        }
    }


def test_override_value_may_contain_equals_sign() -> None:
    assert apply_overrides({}, ["model.path=hub/id=x"]) == {"model": {"path": "hub/id=x"}}


def test_overrides_never_mutate_their_input() -> None:
    data = {"train": {"lr": 0.1}, "model": {"prompt": {"depth": 2}}}
    before = copy.deepcopy(data)
    out = apply_overrides(data, ["train.lr=0.5", "model.prompt.depth=4", "runtime.workers=3"])
    assert data == before
    assert out["train"]["lr"] == 0.5 and out["model"]["prompt"]["depth"] == 4
    assert out["runtime"] == {"workers": 3}


def test_with_overrides_returns_a_new_config_and_keeps_the_old() -> None:
    base = ExperimentConfig()
    changed = base.with_overrides(["seed=7", "algorithm.name=fedprox"])
    assert (changed.seed, changed.algorithm.name) == (7, "fedprox")
    assert base == ExperimentConfig()


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ExperimentConfig().seed = 3  # type: ignore[misc]


def test_float_fields_accept_ints_and_store_floats() -> None:
    config = config_from_dict({"train": {"lr": 1}, "runtime": {"gpus_per_worker": 0}})
    assert config.train.lr == 1.0 and type(config.train.lr) is float
    assert type(config.runtime.gpus_per_worker) is float


def test_numpy_numbers_are_accepted_as_plain_python_numbers() -> None:
    # Sweeps (Ray Tune) may hand over numpy scalars; the config must still dump as plain YAML.
    config = config_from_dict({"seed": np.int64(3), "train": {"lr": np.float32(0.5)}})
    assert type(config.seed) is int and type(config.train.lr) is float
    assert yaml.safe_load(yaml.safe_dump(config_to_dict(config)))["seed"] == 3


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(lr=-1.0)
    assert info.value.field == "train.lr"


# --- round trips --------------------------------------------------------------------------


def test_dict_to_config_to_dict_round_trip() -> None:
    data = copy.deepcopy(SCHEMA_DEFAULTS)
    data["model"]["tiny"].update(hidden=64, heads=8)
    data["federation"].update(population=1_000_000, cohort=32)
    data["algorithm"]["global_weights"] = "softmin"
    data["runtime"]["address"] = "auto"
    config = config_from_dict(data)
    assert config_to_dict(config) == data
    assert config_from_dict(config_to_dict(config)) == config


def test_save_then_load_round_trip(tmp_path: Path) -> None:
    config = ExperimentConfig().with_overrides(["name=exp.2", "train.lr=0.01", "data.path=/d"])
    target = tmp_path / "deep" / "dir" / "config.yaml"
    save_config(config, target)
    assert load_config(target) == config
    assert yaml.safe_load(target.read_text())["train"]["lr"] == 0.01  # plain YAML, no tags


def test_save_leaves_no_temp_file_behind(tmp_path: Path) -> None:
    save_config(ExperimentConfig(), tmp_path / "config.yaml")
    save_config(ExperimentConfig(seed=1), tmp_path / "config.yaml")  # overwrite
    assert os.listdir(tmp_path) == ["config.yaml"]
    assert load_config(tmp_path / "config.yaml").seed == 1


def test_failed_save_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "config.yaml"
    save_config(ExperimentConfig(seed=1), target)

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk vanished"):
        save_config(ExperimentConfig(seed=2), target)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["config.yaml"]
    assert load_config(target).seed == 1


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "needles"),
    [
        # unknown keys, with the nearest valid one
        ({"train": {"lrr": 0.1}}, "train.lrr", ["did you mean 'train.lr'?"]),
        ({"modle": {}}, "modle", ["did you mean 'model'?"]),
        ({"model": {"prompt": {"nctx": 4}}}, "model.prompt.nctx", ["'model.prompt.n_ctx'"]),
        ({"zzz": 1}, "zzz", ["valid:", "federation"]),
        # a section that is not a mapping
        ({"train": 3}, "train", ["mapping"]),
        ({"model": {"tiny": [1, 2]}}, "model.tiny", ["mapping"]),
        # wrong types
        ({"seed": "3"}, "seed", ["'3'", "an int"]),
        ({"seed": 3.0}, "seed", ["3.0", "whole number"]),
        ({"train": {"batch_size": True}}, "train.batch_size", ["True"]),
        ({"train": {"lr": "fast"}}, "train.lr", ["'fast'", "a float"]),
        ({"algorithm": {"beta": None}}, "algorithm.beta", ["None"]),
        ({"model": {"path": 3}}, "model.path", ["string or null"]),
        ({"name": 12}, "name", ["12"]),
        # out of range
        ({"model": {"prompt": {"n_ctx": 65}}}, "model.prompt.n_ctx", ["65", "[1, 64]"]),
        ({"seed": -1}, "seed", ["-1", "[0, inf)"]),
        ({"train": {"momentum": 1.0}}, "train.momentum", ["[0, 1)"]),
        ({"train": {"lr": 0}}, "train.lr", ["(0, inf)"]),
        (
            {"data": {"partition": {"keep_fraction": 0.0}}},
            "data.partition.keep_fraction",
            ["(0, 1]"],
        ),
        (
            {"federation": {"population": 10**10 + 1, "cohort": 1}},
            "federation.population",
            ["10000000001"],
        ),
        ({"output": {"checkpoint_every": -1}}, "output.checkpoint_every", ["-1"]),
        ({"output": {"dir": ""}}, "output.dir", ["''"]),
        ({"name": "a/b"}, "name", ["'a/b'", "[A-Za-z0-9_.-]+"]),
        # bad choices list the allowed values
        ({"model": {"backbone": "gpt"}}, "model.backbone", ["'gpt'", "'clip'", "'bert'"]),
        ({"algorithm": {"global_weights": "max"}}, "algorithm.global_weights", ["'softmin'"]),
        ({"data": {"source": 1}}, "data.source", ["'digits'"]),
        # cross-field rules
        (
            {"federation": {"population": 5, "cohort": 6}},
            "federation.cohort",
            ["federation.population (5)"],
        ),
        ({"model": {"tiny": {"heads": 5}}}, "model.tiny.heads", ["model.tiny.hidden (128)"]),
        (
            {"model": {"tiny": {"patch_size": 5}}},
            "model.tiny.patch_size",
            ["model.tiny.image_size (32)"],
        ),
        # alpha below 1 explains why
        ({"algorithm": {"alpha": 0.9}}, "algorithm.alpha", ["0.9", "overlap"]),
    ],
)
def test_invalid_config_names_the_field(data: dict[str, Any], field: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert info.value.field == field
    message = str(info.value)
    assert f"'{field}'" in message
    for needle in needles:
        assert needle in message


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError):
        config_from_dict([1, 2])  # type: ignore[arg-type]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_config(missing)


@pytest.mark.parametrize("text", ["train: {lr: [0.1\n", "- 1\n- 2\n", "just a string\n"])
def test_bad_yaml_or_non_mapping_names_the_path(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "broken.yaml", text)
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        load_config(path)


def test_unknown_key_from_an_override_is_suggested() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'train\.lr'"):
        load_config(None, ["train.lrr=0.1"])


@pytest.mark.parametrize("override", ["train.lr", "=0.1", "train..lr=1", ".lr=1", "lr.=1"])
def test_malformed_override_names_the_override(override: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides({}, [override])
    assert repr(override) in str(info.value)


def test_override_into_a_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match="'seed'"):
        apply_overrides({"seed": 0}, ["seed.x=1"])


def test_unparsable_override_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match="'name'"):
        apply_overrides({}, ["name=[oops"])


# --- property: any invalid numeric value gives a ConfigError naming that field -----------

# dotted field -> (type, interval it must lie in, with the other fields at their defaults)
NUMERIC_FIELDS: dict[str, tuple[type, str]] = {
    "seed": (int, "[0, inf)"),
    "model.prompt.n_ctx": (int, "[1, 64]"),
    "model.prompt.depth": (int, "[1, 64]"),
    "model.tiny.hidden": (int, "[8, inf)"),
    "model.tiny.layers": (int, "[1, inf)"),
    "model.tiny.heads": (int, "[1, inf)"),
    "model.tiny.projection": (int, "[1, inf)"),
    "model.tiny.image_size": (int, "[4, inf)"),
    "model.tiny.patch_size": (int, "[1, inf)"),
    "model.tiny.initializer_factor": (float, "(0, inf)"),
    "data.partition.alpha": (float, "(0, inf)"),
    "data.partition.shots": (int, "[1, inf)"),
    "data.partition.drop_class_fraction": (float, "[0, 1)"),
    "data.partition.keep_fraction": (float, "(0, 1]"),
    "data.partition.dominant_fraction": (float, "[0, 1]"),
    "data.partition.val_fraction": (float, "(0, inf)"),
    "data.partition.test_fraction": (float, "(0, inf)"),
    "data.partition.samples_per_client": (int, "[1, inf)"),
    "federation.population": (int, "[1, 10000000000]"),
    "federation.cohort": (int, "[1, 10]"),  # at most the default population
    "federation.rounds": (int, "[1, inf)"),
    "federation.new_clients": (int, "[0, inf)"),
    "algorithm.alpha": (float, "[1, inf)"),
    "algorithm.beta": (float, "[0, 1]"),
    "algorithm.tau": (float, "(0, inf)"),
    "algorithm.eps": (float, "(0, inf)"),
    "algorithm.mu": (float, "[0, inf)"),
    "train.local_epochs": (int, "[1, inf)"),
    "train.batch_size": (int, "[1, inf)"),
    "train.lr": (float, "(0, inf)"),
    "train.momentum": (float, "[0, 1)"),
    "train.weight_decay": (float, "[0, inf)"),
    "train.eval_batch_size": (int, "[1, inf)"),
    "runtime.workers": (int, "[1, inf)"),
    "runtime.cpus_per_worker": (float, "(0, inf)"),
    "runtime.gpus_per_worker": (float, "[0, inf)"),
    "runtime.clients_per_slice": (int, "[1, inf)"),
    "runtime.slice_memory_mib": (float, "[0, inf)"),
    "output.checkpoint_every": (int, "[0, inf)"),
}

NOT_A_NUMBER = st.one_of(
    st.booleans(),
    st.none(),
    st.text(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def invalid_values(kind: type, interval: str) -> st.SearchStrategy[Any]:
    """Values that are the wrong type or outside ``interval`` (open/closed ends respected)."""
    low, high = (float(part) for part in interval[1:-1].split(","))
    low_open, high_open = interval[0] == "(", interval[-1] == ")"
    if kind is int:
        options = [st.integers(max_value=int(low) - 1), st.floats(), NOT_A_NUMBER]
        if math.isfinite(high):
            options.append(st.integers(min_value=int(high) + 1))
        return st.one_of(options)
    below = low if low_open else math.nextafter(low, -math.inf)
    options = [
        st.floats(max_value=below),
        st.just(math.nan),
        st.just(math.inf),
        st.integers(max_value=math.ceil(low) - 1),
        st.just(-(10**400)),
        NOT_A_NUMBER,
    ]
    if math.isfinite(high):
        above = high if high_open else math.nextafter(high, math.inf)
        options.append(st.floats(min_value=above))
    return st.one_of(options)


@st.composite
def field_and_invalid_value(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(NUMERIC_FIELDS)))
    return name, draw(invalid_values(*NUMERIC_FIELDS[name]))


@settings(max_examples=1000, deadline=None)  # CI runs the full 1,000 (the default is 100)
@given(field_and_invalid_value())
def test_any_invalid_numeric_value_raises_config_error_naming_the_field(
    case: tuple[str, Any],
) -> None:
    name, value = case
    with pytest.raises(ConfigError) as info:
        config_from_dict(nested(name, value))
    assert info.value.field == name
    assert f"'{name}'" in str(info.value)


def test_pfedme_step_sizes_that_would_diverge_are_refused() -> None:
    with pytest.raises(ConfigError, match="algorithm.lam"):
        config_from_dict({"algorithm": {"name": "pfedme", "lam": 15.0}, "train": {"lr": 0.1}})
    assert (
        config_from_dict({"algorithm": {"name": "pfedme", "lam": 15.0}, "train": {"lr": 0.035}}).algorithm.lam
        == 15.0
    )


def test_scientific_notation_floats_are_numbers_even_where_yaml_reads_strings() -> None:
    config = load_config(None, ["train.lr=1e-3", "algorithm.eps=1.0e12"])
    assert config.train.lr == 0.001 and config.algorithm.eps == 1e12
    with pytest.raises(ConfigError, match="federation.rounds"):
        load_config(None, ["federation.rounds=1e3"])  # counts stay whole numbers


def test_joins_and_new_clients_past_the_population_cap_are_refused_at_config_time() -> None:
    """Finding 8: federation.joins past the cap used to fail inside Ray with OverflowError."""
    cap = 10_000_000_000
    with pytest.raises(ConfigError, match="federation.joins"):
        config_from_dict({"federation": {"population": 10, "cohort": 10, "joins": f"{cap}@2"}})
    with pytest.raises(ConfigError, match="federation.new_clients"):
        config_from_dict({"federation": {"population": cap, "cohort": 10, "new_clients": 1}})
    ok = config_from_dict(
        {"federation": {"population": 10, "cohort": 10, "joins": "5@2,5@3", "new_clients": 2}}
    )
    assert ok.federation.joins == "5@2,5@3"


def test_switching_method_drops_an_option_of_the_same_name_that_means_something_else() -> None:
    """DP2FL's ``eps`` (a log guard, 1e-8) must not become FedOTP's entropic weight (0.01)."""
    from dp2fl_ray.config import apply_overrides, config_from_dict, switch_algorithm

    base = {"name": "t", "algorithm": {"name": "dp2fl", "alpha": 1.2, "eps": 1e-8}}
    switched = switch_algorithm(base, "fedotp")
    assert switched["algorithm"] == {"name": "fedotp"}
    options = config_from_dict(switched).algorithm.options
    assert options.eps == 0.01  # type: ignore[union-attr]
    again = apply_overrides(base, ["algorithm.eps=0.05", "algorithm.name=fedotp"])
    assert again["algorithm"] == {"name": "fedotp", "eps": 0.05}  # a later --set still applies
    assert switch_algorithm(base, "dp2fl")["algorithm"]["eps"] == 1e-8  # no switch: kept
