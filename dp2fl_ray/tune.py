"""Sweeps with Ray Tune: every trial is one ``run_experiment(config)`` with its own overrides.

A sweep YAML names a ``base`` experiment (a path, relative to the sweep file, or an inline
mapping) and a search ``space`` of dotted config keys::

    base: quickstart.yaml
    set: [runtime.workers=1]  # overrides of the base (then the command line's --set)
    space:
      train.lr: {loguniform: [0.005, 0.2]}
      algorithm.alpha: {grid: [1.1, 1.5]}
    num_samples: 2          # repeats of the grid (each with fresh random draws)
    seeds: 3                # or [0, 5, 9]: a grid over the config's seed; trials differing only
                            # in it form one cell (trials.parquet's cell_id), compared paired
    max_concurrent: 2       # 0 = as many trials as the cluster's resources hold
    metric: personalized_acc
    mode: max
    scheduler: {asha: {max_t: 12, grace_period: 4, reduction_factor: 2}}

A trial reserves one placement-group bundle for its driver and one per backbone worker
(``runtime/placement.py`` puts worker i in bundle i + 1 when it starts inside a placement group;
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

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from dp2fl_ray.config import config_from_dict, config_to_dict
from dp2fl_ray.errors import CheckpointError, ConfigError
from dp2fl_ray.metrics import atomic_write, read_summary, read_table, write_json
from dp2fl_ray.runtime.checkpoint import read_checkpoint_folder, write_checkpoint_folder
from dp2fl_ray.sweep import (  # noqa: F401 -- load_sweep and co. are re-exported for callers of tune
    METRICS,
    SEED_KEY,
    STATUS_FILE,
    SweepSpec,
    _set_values,
    cell_id,
    check_trials,
    load_sweep,
    loaded_value,
    stored_value,
    sweep_from_dict,
    trial_bundles,
    trial_config,
)


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
    """Join the base config's cluster (or RAY_ADDRESS, or a new local one); True if Ray started here.

    Workers this process kept warm from an earlier run (``runtime.keep_workers``) are released
    first: they hold resources the trials need."""
    from dp2fl_ray.runtime import warm_workers
    from dp2fl_ray.runtime.simulation import connect_ray

    # Trials checkpoint every round on purpose (a trial resumes where it stopped); with short
    # rounds Tune would warn about frequent experiment snapshots at each of them.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = connect_ray(spec.base["runtime"]["address"])
    warm_workers.release()
    return started


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
                f"one trial's {resource}s (driver_cpus + workers x per-worker) "
                f"<= the cluster's {have.get(resource, 0.0):g}",
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
            run_dir = trial_run_dir(spec.sweep_dir, Path(folder))

    def report(row: dict[str, Any]) -> None:
        metrics = {k: float(row[k]) for k in METRICS} | {"round": int(row["round"])}
        with tempfile.TemporaryDirectory() as folder:
            named = {"run": run_dir.relative_to(spec.sweep_dir).as_posix()}
            write_checkpoint_folder(Path(folder), int(row["round"]), named)  # data, never a pickle
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    if (run_dir / "checkpoints" / "latest.json").is_file():
        if read_summary(run_dir).get("status") != "completed":
            resume_experiment(run_dir, progress=False, on_round=report)
        return
    shutil.rmtree(run_dir, ignore_errors=True)  # cut short before its first checkpoint: start again
    config = trial_config(spec, params)
    run_experiment(config, output_dir=run_dir.parent, run_name=run_dir.name, progress=False, on_round=report)


def trial_run_dir(sweep_dir: Path, folder: Path) -> Path:
    """The run directory a trial checkpoint names (``checkpoint.py``'s format, no pickle).

    Raises:
        CheckpointError: the checkpoint is malformed or names a directory outside ``sweep_dir/runs``.
    """
    run = read_checkpoint_folder(folder).get("run")
    runs = (sweep_dir / "runs").resolve()
    run_dir = (sweep_dir / run).resolve() if isinstance(run, str) else None
    if run_dir is None or run_dir.parent != runs:
        raise CheckpointError(f"trial checkpoint {folder} names run {run!r}, not a folder of {runs}")
    return sweep_dir / str(run)


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
    row |= {key: stored_value((result.config or {}).get(key)) for key in spec.space}
    row.setdefault(SEED_KEY, spec.base[SEED_KEY])  # seeds not swept: every trial runs the base's
    row["cell_id"] = cell_id(spec, result.config or {})  # the trials that differ only in the seed
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
    config = config_from_dict(
        _set_values(spec.base, {key: loaded_value(spec, key, best[key]) for key in spec.space})
    )  # base's output
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
