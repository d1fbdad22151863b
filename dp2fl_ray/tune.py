"""Sweeps with Ray Tune: every trial is one ``run_experiment(config)`` with its own overrides.

A sweep YAML names a ``base`` experiment (a path, relative to the sweep file, or an inline
mapping) and a search ``space`` of dotted config keys::

    base: quickstart.yaml
    set: [runtime.workers=1]  # overrides of the base (then the command line's --set)
    space:
      train.lr: {loguniform: [0.005, 0.2]}
      algorithm.alpha: {grid: [1.1, 1.5]}
    num_samples: 2          # repeats of the grid (each with fresh random draws)
    max_concurrent: 2       # 0 = as many trials as the cluster's resources hold
    metric: personalized_acc
    mode: max
    scheduler: {asha: {max_t: 12, grace_period: 4, reduction_factor: 2}}

A trial reserves one placement-group bundle for its driver and one per backbone worker
(``runtime/actors.py`` puts worker i in bundle i + 1 when it starts inside a placement group;
the aggregator needs no CPU and stays on the driver's node), so concurrent trials never
oversubscribe a node. It reports each round to Tune (schedulers stop
bad trials early) with a checkpoint that names its run directory; the run checkpoints every
round (``output.checkpoint_every`` is forced to 1), so ``resume_sweep`` continues an
interrupted sweep where each trial stopped. Outputs under ``<output>/<name>/``: ``runs/<trial
id>/`` (one run directory per trial), ``trials.parquet``, ``rounds.parquet``,
``best_config.yaml``, ``sweep.yaml`` (the resolved spec) and ``tune/`` (Tune's state).

Ray is imported only inside functions, so a bad sweep fails before Ray starts.
"""

from __future__ import annotations

import difflib
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from dp2fl_ray.config import ExperimentConfig, apply_overrides, config_from_dict, config_to_dict, load_config
from dp2fl_ray.errors import ConfigError
from dp2fl_ray.metrics import atomic_write, read_summary, read_table, write_json

DOMAINS = ("grid", "choice", "uniform", "loguniform")
METRICS = ("personalized_acc", "global_acc", "train_loss", "val_loss", "personalized_micro_f1")
KEYS = (
    "base", "set", "space", "num_samples", "max_concurrent", "metric", "mode", "scheduler", "name", "output",
    "driver_cpus", "launch_dir",
)  # fmt: skip
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
    space = _space(data.get("space"))
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
    check_trials(spec)
    return spec


def _name_ok(value: str) -> bool:
    return bool(value) and all(c.isalnum() or c in "_.-" for c in value)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def _check(
    data: Mapping[str, Any], key: str, tp: type, expected: str, ok: Any, default: Any = None, where: str = ""
) -> Any:
    """``data[key]`` (or ``default``) if it has type ``tp`` and ``ok(value)``; else a ConfigError naming ``where + key``."""
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
    """A copy of ``tree`` with ``tree[a][b] = value`` for each ``"a.b": value`` (values kept as given)."""
    result = json.loads(json.dumps(tree))  # a deep copy of plain YAML data
    for key, value in values.items():
        *sections, leaf = key.split(".")
        node = result
        for part in sections:
            if not isinstance(node.get(part), dict):
                raise ConfigError(
                    key, value, "a dotted path to a config field", f"'{part}' is not a config section"
                )
            node = node[part]
        node[leaf] = value.item() if isinstance(value, np.generic) else value
    return result


# --- running on Tune -----------------------------------------------------------------------


def trial_bundles(spec: SweepSpec) -> list[dict[str, float]]:
    """The placement-group bundles of one trial: its driver, then one per backbone worker."""
    rt = spec.base["runtime"]
    worker = {"CPU": float(rt["cpus_per_worker"])}
    if rt["gpus_per_worker"]:
        worker["GPU"] = float(rt["gpus_per_worker"])
    return [{"CPU": spec.driver_cpus}] + [dict(worker) for _ in range(int(rt["workers"]))]


def run_sweep(spec: SweepSpec, *, callbacks: Sequence[Any] = (), verbose: int = 1) -> pd.DataFrame:
    """Run the sweep on Tune (local Ray unless the base config or RAY_ADDRESS names a cluster)
    and write its tables; returns the trials table.

    Raises:
        ConfigError: the sweep directory already holds a sweep, or one trial cannot fit the cluster.
    """
    from ray import tune

    sweep_dir = spec.sweep_dir
    if (sweep_dir / "tune").exists():
        raise ConfigError("name", spec.name, "a new sweep name", f"{sweep_dir} holds a sweep: resume it with "
                          f"dp2fl-ray tune --resume {sweep_dir}, or pass --name")  # fmt: skip
    sweep_dir.mkdir(parents=True, exist_ok=True)
    _write_text(sweep_dir / "sweep.yaml", spec.to_yaml())
    started = _connect(spec)
    try:
        _check_trial_fits(spec)
        tuner = tune.Tuner(
            _trainable(spec), param_space=_param_space(spec),
            tune_config=_tune_config(spec), run_config=_run_config(spec, callbacks, verbose),
        )  # fmt: skip
        return write_tables(spec, tuner.fit())
    finally:
        _shutdown(started)


def resume_sweep(sweep_dir: str | os.PathLike[str], *, verbose: int = 1) -> pd.DataFrame:
    """Continue an interrupted sweep: unfinished and failed trials go on from their last round,
    trials not yet started start; finished ones are kept. Returns the trials table.

    Raises:
        ConfigError: ``sweep_dir`` holds no sweep that Tune can restore.
    """
    from ray import tune

    sweep_dir = Path(sweep_dir).resolve()
    if not (sweep_dir / "sweep.yaml").is_file() or not tune.Tuner.can_restore(str(sweep_dir / "tune")):
        raise ConfigError("--resume", str(sweep_dir), "a sweep directory (with sweep.yaml and tune/)",
                          "pass the directory a dp2fl-ray tune run printed")  # fmt: skip
    data = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    data |= {"output": str(sweep_dir.parent), "name": sweep_dir.name}  # the sweep may have been moved
    spec = sweep_from_dict(data)
    started = _connect(spec)
    try:
        tuner = tune.Tuner.restore(
            str(sweep_dir / "tune"),
            trainable=_trainable(spec),
            param_space=_param_space(spec),
            resume_errored=True,
        )
        return write_tables(spec, tuner.fit())
    finally:
        _shutdown(started)


def _connect(spec: SweepSpec) -> bool:
    """Join the base config's cluster (or RAY_ADDRESS, or a new local one); True if Ray started here."""
    from dp2fl_ray.runtime.simulation import connect_ray

    # Trials checkpoint every round on purpose (a trial resumes where it stopped); with short
    # rounds Tune would warn about frequent experiment snapshots at each of them.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    return connect_ray(spec.base["runtime"]["address"])


def _shutdown(started: bool) -> None:
    if started:
        import ray

        ray.shutdown()


def _check_trial_fits(spec: SweepSpec) -> None:
    import ray

    have = ray.cluster_resources()
    for resource, knob in (("CPU", "runtime.cpus_per_worker"), ("GPU", "runtime.gpus_per_worker")):
        need = sum(b.get(resource, 0.0) for b in trial_bundles(spec))
        if need > have.get(resource, 0.0):
            raise ConfigError(
                knob, spec.base["runtime"][knob.split(".")[1]],
                f"one trial's {resource}s (driver_cpus + workers x per-worker) <= the cluster's {have.get(resource, 0.0):g}",
                f"a trial needs {need:g}; lower runtime.workers, {knob} or driver_cpus",
            )  # fmt: skip


def _param_space(spec: SweepSpec) -> dict[str, Any]:
    from ray import tune

    make = {"grid": tune.grid_search, "choice": tune.choice}
    return {
        key: make[d.kind](list(d.values)) if d.kind in make else getattr(tune, d.kind)(*d.values)
        for key, d in spec.space.items()
    }


def _trainable(spec: SweepSpec) -> Any:
    from ray import tune

    trainable = tune.with_parameters(_run_trial, spec=spec)
    return tune.with_resources(trainable, tune.PlacementGroupFactory(trial_bundles(spec), strategy="PACK"))


def _tune_config(spec: SweepSpec) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    scheduler = None
    if spec.scheduler is not None:
        a = spec.scheduler
        scheduler = ASHAScheduler(
            time_attr="round", max_t=a.max_t, grace_period=a.grace_period, reduction_factor=a.reduction_factor
        )
    return tune.TuneConfig(
        metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples, scheduler=scheduler,
        max_concurrent_trials=spec.max_concurrent or None,
        reuse_actors=True,  # a finished trial's process (torch imported) runs the next trial
        trial_name_creator=_trial_id, trial_dirname_creator=_trial_id,
    )  # fmt: skip


def _trial_id(trial: Any) -> str:
    return str(trial.trial_id)


def _run_config(spec: SweepSpec, callbacks: Sequence[Any], verbose: int) -> Any:
    from ray import tune

    return tune.RunConfig(
        name="tune", storage_path=str(spec.sweep_dir), verbose=verbose,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[status_callback(str(spec.sweep_dir / STATUS_FILE)), *callbacks],
    )  # fmt: skip


def _run_trial(params: dict[str, Any], spec: SweepSpec) -> None:
    """The function trainable: one run, reporting each round; resumes its run directory if Tune
    restored the trial from a checkpoint (which names that directory)."""
    from ray import tune

    from dp2fl_ray.runtime.simulation import resume_experiment, run_experiment

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not a line per round per checkpoint
    if os.path.isdir(spec.launch_dir):
        os.chdir(spec.launch_dir)  # relative data/model paths mean what they meant where the sweep started
    run_dir = spec.sweep_dir / "runs" / tune.get_context().get_trial_id()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # it names the run directory, relative to the sweep (which may have moved)
        with checkpoint.as_directory() as folder:
            run_dir = spec.sweep_dir / json.loads(Path(folder, "run.json").read_text())["run"]

    def report(row: dict[str, Any]) -> None:
        metrics = {k: float(row[k]) for k in METRICS} | {"round": int(row["round"])}
        with tempfile.TemporaryDirectory() as folder:
            named = {"run": run_dir.relative_to(spec.sweep_dir).as_posix(), "round": int(row["round"])}
            Path(folder, "run.json").write_text(json.dumps(named))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    if (run_dir / "checkpoints" / "latest.json").is_file():
        if read_summary(run_dir).get("status") != "completed":
            resume_experiment(run_dir, progress=False, on_round=report)
        return
    shutil.rmtree(run_dir, ignore_errors=True)  # cut short before its first checkpoint: start again
    config = trial_config(spec, params)
    run_experiment(config, output_dir=run_dir.parent, run_name=run_dir.name, progress=False, on_round=report)


def status_callback(path: str) -> Any:
    """A Tune callback that records, in a JSON file beside the sweep, how each trial ended
    (Tune restores it with the sweep; the class is made here so Ray is imported lazily)."""
    from ray import tune

    class TrialStatus(tune.Callback):
        def __init__(self, path: str) -> None:
            self.path = path

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._set(trial.trial_id, "terminated")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._set(trial.trial_id, "error")

        def _set(self, trial_id: str, status: str) -> None:
            file = Path(self.path)
            statuses = json.loads(file.read_text()) if file.is_file() else {}
            write_json(file, {**statuses, trial_id: status})

    return TrialStatus(path)


# --- tables --------------------------------------------------------------------------------


def write_tables(spec: SweepSpec, results: Any) -> pd.DataFrame:
    """``trials.parquet`` (a row per trial), ``rounds.parquet`` (a row per trial per round) and
    ``best_config.yaml`` from the result grid and the trials' run directories."""
    path = spec.sweep_dir / STATUS_FILE
    statuses = json.loads(path.read_text()) if path.is_file() else {}
    rows, frames = [], []
    for result in results:
        trial_id = Path(result.path).name
        run_dir = spec.sweep_dir / "runs" / trial_id
        rounds = (
            read_table(run_dir, "rounds") if (run_dir / "metrics" / "rounds").is_dir() else pd.DataFrame()
        )
        rows.append(_trial_row(spec, trial_id, result, run_dir, rounds, statuses.get(trial_id)))
        if len(rounds):
            frames.append(rounds.assign(trial_id=trial_id))
    trials = pd.DataFrame(rows).sort_values("trial_id", kind="stable").reset_index(drop=True)
    _write_parquet(spec.sweep_dir / "trials.parquet", trials)
    if frames:
        per_round = pd.concat(frames, ignore_index=True)
        per_round = per_round[
            ["trial_id", "round", *[c for c in per_round.columns if c not in ("trial_id", "round")]]
        ]
        _write_parquet(
            spec.sweep_dir / "rounds.parquet", per_round.sort_values(["trial_id", "round"], kind="stable")
        )
    _write_best(spec, trials)
    return trials


def _trial_row(
    spec: SweepSpec, trial_id: str, result: Any, run_dir: Path, rounds: pd.DataFrame, tune_status: str | None
) -> dict[str, Any]:
    """status: completed (all rounds), stopped (early, by the scheduler), failed, or unfinished
    (interrupted or not started: ``dp2fl-ray tune --resume`` goes on)."""
    total = (
        trial_config(spec, result.config).federation.rounds
        if result.config
        else spec.base["federation"]["rounds"]
    )
    done = int(rounds["round"].max()) if len(rounds) else 0
    if tune_status == "error" or result.error is not None:
        status = "failed"
    elif tune_status == "terminated":
        status = "completed" if done >= total else "stopped"
    else:
        status = "unfinished"
    last = rounds.iloc[-1] if len(rounds) else {}
    row: dict[str, Any] = {"trial_id": trial_id, "status": status, "rounds_completed": done}
    row |= {key: (result.config or {}).get(key) for key in spec.space}
    row |= {m: float(last[m]) if len(rounds) else float("nan") for m in METRICS}
    summary = read_summary(run_dir) if (run_dir / "summary.json").is_file() else {}
    row |= {k: summary.get(k, float("nan")) for k in ("majority_acc", "zero_shot_acc", "wall_s")}
    row |= {"run_dir": str(run_dir), "error": str(result.error) if result.error is not None else None}
    return row


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _write_best(spec: SweepSpec, trials: pd.DataFrame) -> None:
    """The best trial's resolved config (by ``metric`` at its last round) as ``best_config.yaml``."""
    ranked = trials[trials["status"].isin(["completed", "stopped"]) & trials[spec.metric].notna()]
    if ranked.empty:
        return
    best = ranked.loc[ranked[spec.metric].idxmax() if spec.mode == "max" else ranked[spec.metric].idxmin()]
    config = config_from_dict(_set_values(spec.base, {key: best[key] for key in spec.space}))  # base's output
    header = (
        f"# best of sweep {spec.name}: trial {best['trial_id']} ({best['run_dir']}), "
        f"{spec.metric} = {best[spec.metric]:.4f} after round {best['rounds_completed']}\n"
    )
    text = header + yaml.safe_dump(config_to_dict(config), sort_keys=False)
    _write_text(spec.sweep_dir / "best_config.yaml", text)


def _write_text(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    atomic_write(path, write)
