"""Sweep specifications: what ``dp2fl-ray tune`` reads, checked before Ray starts (no Ray here).

A sweep YAML names a ``base`` experiment and a search ``space`` of dotted config keys (see
``dp2fl_ray/tune.py`` for the whole format and what a sweep writes). This module parses and
validates it, checks every trial's config up front where it can, and says which resources a
trial reserves.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dp2fl_ray.config import (
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    switch_algorithm,
)
from dp2fl_ray.errors import ConfigError

DOMAINS = ("grid", "choice", "uniform", "loguniform")
METRICS = ("personalized_acc", "global_acc", "train_loss", "val_loss", "personalized_micro_f1")
KEYS = (
    "base", "set", "space", "num_samples", "max_concurrent", "metric", "mode", "scheduler", "name", "output",
    "driver_cpus", "launch_dir", "seeds",
)  # fmt: skip
SEED_KEY = "seed"  # the config's top-level seed: partition, sampling and initialisation derive from it
STATUS_FILE = "trial_status.json"
_MAX_COMBOS = 512  # corner combinations checked before Tune starts


@dataclass(frozen=True)
class Domain:
    """One key's search domain: ``grid``/``choice`` over values, ``uniform``/``loguniform`` over [lo, hi]."""

    kind: str
    values: tuple[Any, ...]

    def corners(self) -> tuple[Any, ...]:
        """Values every trial config is checked with: all listed values, or the interval's ends as floats."""
        return self.values if self.kind in ("grid", "choice") else tuple(float(v) for v in self.values)


@dataclass(frozen=True)
class Asha:
    """Ray Tune's ASHA scheduler, on the ``round`` a trial reports (not Tune's iteration count)."""

    max_t: int
    grace_period: int = 1
    reduction_factor: float = 2.0


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep; ``base`` is the fully resolved experiment config as a dict."""

    name: str
    base: dict[str, Any]
    space: dict[str, Domain]
    output: str = "results/sweeps"
    num_samples: int = 1
    max_concurrent: int = 0
    metric: str = "personalized_acc"
    mode: str = "max"
    scheduler: Asha | None = None
    driver_cpus: float = 0.5
    launch_dir: str = field(default_factory=os.getcwd)

    @property
    def sweep_dir(self) -> Path:
        return Path(self.output) / self.name

    def to_yaml(self) -> str:
        """The resolved spec (base inline, overrides applied) that ``resume_sweep`` reads back."""
        data = asdict(self)
        data["space"] = {k: {d.kind: list(d.values)} for k, d in self.space.items()}
        data["scheduler"] = {"asha": asdict(self.scheduler)} if self.scheduler else None
        return yaml.safe_dump(data, sort_keys=False)


# --- the spec: parse and validate, no Ray --------------------------------------------------


def load_sweep(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    name: str | None = None,
    output: str | None = None,
) -> SweepSpec:
    """Read and validate a sweep YAML; ``overrides`` (``--set``) apply to the base experiment.

    Raises:
        ConfigError: a key is unknown or malformed, or some trial's config would be invalid;
            the message names the sweep key (e.g. ``space.train.lr``) and the fix.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(
            "file", str(path), "a readable sweep YAML", exc.strerror or type(exc).__name__
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError("file", str(path), "valid YAML", str(exc).splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError("file", str(path), "a mapping at the top level", f"found {type(data).__name__}")
    data = {**data, "name": name or data.get("name") or f"{path.stem}-{_stamp()}"}
    if output:
        data["output"] = output
    return sweep_from_dict(data, overrides, relative_to=path.parent)


def sweep_from_dict(
    data: Mapping[str, Any], overrides: Sequence[str] = (), *, relative_to: Path = Path(".")
) -> SweepSpec:
    """Build a SweepSpec from a parsed sweep mapping (see ``load_sweep``)."""
    for key in data:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "valid: " + ", ".join(KEYS)
            raise ConfigError(str(key), data[key], "a sweep key", hint)
    in_file = data.get("set") or []
    if not isinstance(in_file, list) or not all(isinstance(o, str) for o in in_file):
        raise ConfigError("set", in_file, "a list of 'key.sub=value' overrides of the base experiment")
    base = _base_config(data.get("base"), [*in_file, *overrides], relative_to)
    space = _with_seeds(_space(data.get("space")), data.get("seeds"))
    rounds = base.federation.rounds
    launch_dir = str(data.get("launch_dir") or os.getcwd())
    output = _check(data, "output", str, "a directory", bool, "results/sweeps")
    spec = SweepSpec(
        name=_check(data, "name", str, "a name of letters, digits, '_', '.', '-'", lambda v: _name_ok(v)),
        base=config_to_dict(base),
        space=space,
        output=str((Path(launch_dir) / output).resolve()),  # trials run elsewhere: fix it now
        num_samples=_check(data, "num_samples", int, "an int >= 1", lambda v: v >= 1, 1),
        max_concurrent=_check(
            data, "max_concurrent", int, "an int >= 0 (0 = as many as fit)", lambda v: v >= 0, 0
        ),
        metric=_check(
            data, "metric", str, "one of " + ", ".join(METRICS), lambda v: v in METRICS, "personalized_acc"
        ),
        mode=_check(data, "mode", str, "'max' or 'min'", lambda v: v in ("max", "min"), "max"),
        scheduler=_scheduler(data.get("scheduler"), rounds),
        driver_cpus=float(_check(data, "driver_cpus", float, "a number > 0", lambda v: v > 0, 0.5)),
        launch_dir=launch_dir,
    )
    if SEED_KEY in space and spec.num_samples > 1 and all(d.kind == "grid" for d in space.values()):
        raise ConfigError("num_samples", spec.num_samples, "1 when every key is a grid and seeds are swept",
                          "repeats of a grid would rerun identical trials; add seeds instead")  # fmt: skip
    check_trials(spec)
    return spec


def _name_ok(value: str) -> bool:
    return bool(value) and all(c.isalnum() or c in "_.-" for c in value)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def _check(
    data: Mapping[str, Any], key: str, tp: type, expected: str, ok: Any, default: Any = None, where: str = ""
) -> Any:
    """``data[key]`` (or ``default``) if it has type ``tp`` and ``ok(value)``; else a ConfigError
    naming ``where + key``."""
    value = data.get(key, default)
    is_type = isinstance(value, (int, float)) if tp is float else isinstance(value, tp)
    if isinstance(value, bool) or not is_type or not ok(value):
        raise ConfigError(where + key, value, expected)
    return value


def _base_config(base: Any, overrides: Sequence[str], relative_to: Path) -> ExperimentConfig:
    if isinstance(base, str):
        path = Path(base) if Path(base).is_absolute() else relative_to / base
        return load_config(path, overrides)
    if isinstance(base, Mapping):
        return config_from_dict(apply_overrides(dict(base), overrides))
    raise ConfigError(
        "base", base, "an experiment YAML path (relative to the sweep file) or an inline mapping"
    )


def _space(space: Any) -> dict[str, Domain]:
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(
            "space", space, "a mapping of dotted config keys to {grid|choice|uniform|loguniform: ...}"
        )
    domains = {}
    for key, spec in space.items():
        where = f"space.{key}"
        if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in DOMAINS:
            raise ConfigError(
                where,
                spec,
                "one of {grid: [...]}, {choice: [...]}, {uniform: [lo, hi]}, {loguniform: [lo, hi]}",
            )
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{kind}", values, "a non-empty list")
        if kind in ("uniform", "loguniform"):
            numbers = len(values) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
            )
            if not numbers or not values[0] < values[1] or (kind == "loguniform" and values[0] <= 0):
                low = "0 < lo < hi" if kind == "loguniform" else "lo < hi"
                raise ConfigError(f"{where}.{kind}", values, f"[lo, hi] with {low}")
        domains[str(key)] = Domain(kind, tuple(values))
    return domains


def _with_seeds(space: dict[str, Domain], seeds: Any) -> dict[str, Domain]:
    """``seeds: N`` (seeds 0 .. N-1) or ``seeds: [s, ...]`` as a grid over the config's ``seed``, last
    in the space; the trials that differ only in it form one cell (``cell_id``)."""
    if seeds is None:
        return space
    if SEED_KEY in space:
        raise ConfigError("seeds", seeds, "either seeds or space.seed, not both", "drop one of them")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError("seeds", seeds, "an int >= 1 (seeds 0 .. N-1) or a list of distinct ints >= 0")
        values: tuple[Any, ...] = tuple(range(seeds))
    elif isinstance(seeds, list) and seeds:
        values = tuple(seeds)
        ints = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
        if not ints or len(set(values)) != len(values):
            raise ConfigError("seeds", seeds, "a list of distinct ints >= 0", "e.g. seeds: [0, 1, 2]")
    else:
        raise ConfigError("seeds", seeds, "an int >= 1 (seeds 0 .. N-1) or a list of distinct ints >= 0")
    return {**space, SEED_KEY: Domain("grid", values)}


def _scheduler(value: Any, rounds: int) -> Asha | None:
    if value is None:
        return None
    if (
        not isinstance(value, Mapping)
        or set(value) != {"asha"}
        or not isinstance(value["asha"] or {}, Mapping)
    ):
        raise ConfigError("scheduler", value, "null or {asha: {max_t, grace_period, reduction_factor}}")
    asha = dict(value["asha"] or {})
    unknown = set(asha) - {"max_t", "grace_period", "reduction_factor"}
    if unknown:
        key = min(unknown)
        raise ConfigError(f"scheduler.asha.{key}", asha[key], "max_t, grace_period or reduction_factor")
    where = "scheduler.asha."
    max_t = _check(asha, "max_t", int, "an int >= 1 (default: the rounds)", lambda v: v >= 1, rounds, where)
    grace = _check(
        asha, "grace_period", int, f"an int in [1, max_t={max_t}]", lambda v: 1 <= v <= max_t, 1, where
    )
    factor = _check(asha, "reduction_factor", float, "a number > 1", lambda v: v > 1, 2.0, where)
    return Asha(max_t, grace, float(factor))


def check_trials(spec: SweepSpec) -> None:
    """Build the config of every combination of the space's corner values (all grid and choice
    values, both ends of each interval), so an invalid trial fails before Tune starts.

    When the combinations are too many, each key's values are checked alone instead.
    """
    keys = list(spec.space)
    corners = [spec.space[k].corners() for k in keys]
    if int(np.prod([len(c) for c in corners])) <= _MAX_COMBOS:
        combos: Any = itertools.product(*corners)
    else:  # one key at a time, the others at their base values
        combos = ({k: v} for k, values in zip(keys, corners) for v in values)
    for combo in combos:
        values = combo if isinstance(combo, dict) else dict(zip(keys, combo))
        try:
            trial_config(spec, values)
        except ConfigError as exc:
            key = exc.field if exc.field in values else next(iter(values))
            hint = f"with {', '.join(f'{k}={v!r}' for k, v in values.items())}: {exc}"
            if spec.space.get(key) and spec.space[key].kind in ("uniform", "loguniform"):
                hint += "; uniform/loguniform draw floats: use grid or choice for int or string fields"
            raise ConfigError(
                f"space.{key}", values.get(key), "values that give a valid experiment config", hint
            ) from None


def trial_config(spec: SweepSpec, values: Mapping[str, Any]) -> ExperimentConfig:
    """The experiment config of one trial: base, then the trial's values, then the sweep's output
    settings (run directories under ``runs/``, a checkpoint every round so a trial can resume)."""
    data = _set_values(spec.base, values)
    data = _set_values(data, {"output.dir": str(spec.sweep_dir / "runs"), "output.checkpoint_every": 1})
    return config_from_dict(data)


def _set_values(tree: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``tree`` with ``tree[a][b] = value`` for each ``"a.b": value`` (values kept as given).

    A value for ``algorithm.name`` switches method first (``config.switch_algorithm``): the base's
    options for another method are dropped (the trial's own values then apply). A mapping value
    set on a config section merges into it: ``data.partition: {scheme: dirichlet, alpha: 0.1}``
    changes those two fields and keeps the base's others (shots, fractions), so one grid can
    walk a joint axis such as the partition scheme with its alpha.
    """
    result = json.loads(json.dumps(tree))  # a deep copy of plain YAML data
    if isinstance(values.get("algorithm.name"), str):  # first: the base's other-method options go
        result = switch_algorithm(result, str(values["algorithm.name"]))
    for key, value in values.items():
        if key == "algorithm.name":
            continue
        *sections, leaf = key.split(".")
        node = result
        for part in sections:
            if not isinstance(node.get(part), dict):
                raise ConfigError(
                    key, value, "a dotted path to a config field", f"'{part}' is not a config section"
                )
            node = node[part]
        value = value.item() if isinstance(value, np.generic) else value
        if isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
            value = _set_values(node[leaf], {str(k): v for k, v in value.items()})
        node[leaf] = value
    return result


# --- cells: the trials that differ only in the seed ----------------------------------------


def stored_value(value: Any) -> Any:
    """A swept value as ``trials.parquet`` stores it: scalars as they are, a mapping or list as
    canonical JSON (one column type for every row)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def loaded_value(spec: SweepSpec, key: str, stored: Any) -> Any:
    """The inverse of ``stored_value`` for ``key`` of ``spec``'s space (JSON back to a mapping or list)."""
    structured = any(isinstance(v, (Mapping, list)) for v in spec.space[key].values)
    return json.loads(stored) if structured and isinstance(stored, str) else stored


def cell_key(spec: SweepSpec, values: Mapping[str, Any]) -> str:
    """Canonical JSON of a trial's swept values without the seed: equal exactly for one cell."""
    cell = {key: stored_value(values.get(key)) for key in sorted(spec.space) if key != SEED_KEY}
    return json.dumps(cell, sort_keys=True, separators=(",", ":"), default=str)


def cell_id(spec: SweepSpec, values: Mapping[str, Any]) -> str:
    """A short stable id of a trial's cell (``cell-`` and 8 hex digits of ``cell_key``'s SHA-1)."""
    return "cell-" + hashlib.sha1(cell_key(spec, values).encode()).hexdigest()[:8]


# --- running on Tune -----------------------------------------------------------------------


def trial_bundles(spec: SweepSpec) -> list[dict[str, float]]:
    """The placement-group bundles of one trial: its driver, then one per backbone worker."""
    rt = spec.base["runtime"]
    worker = {"CPU": float(rt["cpus_per_worker"])}
    if rt["gpus_per_worker"]:
        worker["GPU"] = float(rt["gpus_per_worker"])
    return [{"CPU": spec.driver_cpus}] + [dict(worker) for _ in range(int(rt["workers"]))]
