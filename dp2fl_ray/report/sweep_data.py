"""Loading a sweep directory for a report: its spec, its trials and each completed trial's numbers.

A sweep's swept keys split into three roles: the *method* (``algorithm.name``), the *seed* and the
*setting* (every other key; the partition keys are the heterogeneity axis of the plots). A cell is a
(setting, method) pair; its trials differ only in the seed. Numbers come from the trials' run
directories (``runs/<trial id>/``, found beside ``trials.parquet`` even if the sweep was moved), read
with the single-run report's table functions, so a sweep cell's number over one seed equals that
run's own report.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dp2fl_ray.errors import DataError
from dp2fl_ray.metrics import read_table
from dp2fl_ray.report import tables

METHOD_KEY = "algorithm.name"
SEED_KEY = "seed"
USED_STATUS = "completed"  # stopped (early, by a scheduler) and failed trials do not enter a mean

# per-trial metric columns: (name in the report, column of the single-run table)
TRIAL_METRICS = {
    "personalized_acc": "personalised acc",
    "personalized_micro_f1": "personalised micro-F1",
    "global_acc": "global acc (held-out)",
    "delta_acc": "delta acc",
}
NEW_CLIENT_METRICS = {
    **{f"t3_{m}": column for m, column in tables.TABLE3_MODELS.items()},
    **{f"t4_{m}": column for m, column in tables.TABLE4_MODELS.items()},
}


@dataclass(frozen=True)
class SweepData:
    """A sweep as a report sees it.

    ``trials`` has a row per trial (``trials.parquet`` plus ``method``, ``setting`` and ``seed``);
    ``metrics`` a row per completed trial with the per-trial numbers (fractions); ``clients`` a row
    per (completed trial, cohort client) of the last evaluated round (``test_acc``).
    """

    path: Path
    name: str
    methods: list[str]
    settings: list[str]
    heterogeneity: list[str]  # the swept partition keys, if any
    seeds: list[int]
    trials: pd.DataFrame
    metrics: pd.DataFrame
    clients: pd.DataFrame


def is_sweep_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "trials.parquet").is_file() and (Path(path) / "sweep.yaml").is_file()


def load_sweep_dir(path: str | os.PathLike[str]) -> SweepData:
    """Read ``trials.parquet``, ``sweep.yaml`` and the completed trials' run directories.

    Raises:
        DataError: ``path`` holds no ``trials.parquet`` and ``sweep.yaml`` (not a sweep directory,
            or a sweep that has not written its tables yet).
    """
    path = Path(path)
    if not is_sweep_dir(path):
        raise DataError(
            f"{str(path)!r} is not a sweep directory: expected trials.parquet and sweep.yaml in it "
            "(written by `dp2fl-ray tune`; an interrupted sweep writes them on `dp2fl-ray tune --resume`)"
        )
    spec = yaml.safe_load((path / "sweep.yaml").read_text(encoding="utf-8")) or {}
    space: dict[str, Any] = spec.get("space") or {}
    base: dict[str, Any] = spec.get("base") or {}
    trials = pd.read_parquet(path / "trials.parquet")
    setting_keys = [k for k in space if k not in (METHOD_KEY, SEED_KEY)]
    seeds = _grid(space, SEED_KEY) or [int(base.get(SEED_KEY, 0))]
    method_grid = _grid(space, METHOD_KEY) or [str(base.get("algorithm", {}).get("name", "unknown"))]
    trials = trials.assign(
        method=[str(v) for v in trials[METHOD_KEY]] if METHOD_KEY in trials else method_grid[0],
        setting=[setting_label(row, setting_keys) for _, row in trials.iterrows()],
        seed=trials[SEED_KEY].astype(int) if SEED_KEY in trials else seeds[0],
    )
    methods = _ordered(method_grid, trials["method"])
    settings = _ordered(_expected_settings(space, setting_keys), trials["setting"])
    metrics, clients = _trial_numbers(path, trials[trials["status"] == USED_STATUS])
    heterogeneity = [k for k in setting_keys if k.startswith("data.partition")]
    name = str(spec.get("name") or path.name)
    return SweepData(path, name, methods, settings, heterogeneity, seeds, trials, metrics, clients)


def setting_label(values: Mapping[str, Any], keys: list[str]) -> str:
    """A readable name of a setting: ``paper``, ``dirichlet alpha=0.1``, ``train.lr=0.05``, joined by ``; ``.

    A partition mapping reads as its scheme and the fields it sets; a partition field as its value
    (``scheme``) or ``field=value``; any other key as ``key=value``. No keys: ``all``.
    """
    parts = []
    for key in keys:
        value = values.get(key)
        if isinstance(value, str) and value.startswith("{"):
            value = json.loads(value)  # a mapping, stored as JSON
        if isinstance(value, Mapping):
            scheme = value.get("scheme")
            rest = " ".join(f"{k}={_value(v)}" for k, v in sorted(value.items()) if k != "scheme")
            parts.append(" ".join(p for p in (str(scheme) if scheme else "", rest) if p))
        elif key == "data.partition.scheme":
            parts.append(str(value))
        elif key.startswith("data.partition."):
            parts.append(f"{key.rsplit('.', 1)[1]}={_value(value)}")
        else:
            parts.append(f"{key}={_value(value)}")
    return "; ".join(parts) if parts else "all"


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _grid(space: Mapping[str, Any], key: str) -> list[Any]:
    domain = space.get(key) or {}
    return list(domain.get("grid") or []) if isinstance(domain, Mapping) else []


def _expected_settings(space: Mapping[str, Any], keys: list[str]) -> list[str]:
    """Every setting of an all-grid space, in grid order (so a setting no trial reached still shows)."""
    grids = [_grid(space, k) for k in keys]
    if not all(grids):
        return []
    return [setting_label(dict(zip(keys, combo)), keys) for combo in itertools.product(*grids)]


def _ordered(expected: list[Any], seen: pd.Series) -> list[str]:
    out = [str(v) for v in expected]
    return out + sorted({str(v) for v in seen} - set(out))


def _trial_numbers(sweep_dir: Path, done: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, frames = [], []
    for _, trial in done.sort_values("trial_id").iterrows():
        run_dir = sweep_dir / "runs" / str(trial["trial_id"])
        if not (run_dir / "metrics" / "clients").is_dir():
            continue
        clients = read_table(run_dir, "clients")
        clients = clients[clients["test_acc"].notna()]  # rounds not evaluated (eval_every) have none
        evals = read_table(run_dir, "evals") if (run_dir / "metrics" / "evals").is_dir() else pd.DataFrame()
        key = str(trial["trial_id"])
        row: dict[str, Any] = {"trial_id": key, "method": trial["method"], "setting": trial["setting"]}
        row["seed"] = int(trial["seed"])
        table2 = tables.global_vs_personalised_table({key: clients}, {key: evals}).iloc[0]
        row |= {name: float(table2[column]) for name, column in TRIAL_METRICS.items()}
        for models, prefix in ((tables.TABLE3_MODELS, "t3_"), (tables.TABLE4_MODELS, "t4_")):
            frame = tables.new_client_table({key: evals}, models)
            row |= {f"{prefix}{m}": float(frame.iloc[0][c]) if frame is not None else np.nan
                    for m, c in models.items()}  # fmt: skip
        rows.append(row)
        last = tables.last_round(clients)
        frames.append(last[["client_id", "test_acc"]].assign(
            **{k: row[k] for k in ("trial_id", "method", "setting", "seed")}
        ))  # fmt: skip
    columns = ["trial_id", "method", "setting", "seed", *TRIAL_METRICS, *NEW_CLIENT_METRICS]
    metrics = pd.DataFrame(rows, columns=columns)
    clients = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["client_id", "test_acc", "trial_id", "method", "setting", "seed"])
    )
    return metrics, clients
