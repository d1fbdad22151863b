"""Loading a run directory for a report: its summary, its config and whichever tables it wrote."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from dp2fl_ray.config import algorithm_class
from dp2fl_ray.errors import ConfigError, DataError
from dp2fl_ray.metrics import TABLES, read_summary, read_table


@dataclass(frozen=True)
class RunData:
    """One run as a report sees it: labels, headline numbers and its metrics tables.

    ``tables`` holds only the tables the run wrote; a run of an algorithm that logs no
    aggregation has no ``"aggregation"`` key.
    """

    path: Path
    label: str  # "<run directory name> (<algorithm>)": legend entries and table rows
    slug: str  # file-name-safe run name, unique within one report
    algorithm: str
    summary: dict[str, Any]
    config: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)


def load_run(run_dir: str | os.PathLike[str]) -> RunData:
    """Read a run directory written by ``run_experiment``.

    Raises:
        DataError: the path is missing, is not a directory, or holds no ``summary.json``
            or no ``metrics/rounds`` table (not a run directory, or no round finished yet).
    """
    path = Path(run_dir)
    if not path.exists():
        raise DataError(
            f"run directory {str(path)!r} does not exist; pass a directory written by `dp2fl-ray run`"
        )
    if not path.is_dir():
        raise DataError(
            f"{str(path)!r} is a file, not a run directory; pass the directory that holds summary.json"
        )
    if not (path / "summary.json").is_file():
        inside = sorted(p.name for p in path.iterdir() if (p / "summary.json").is_file())
        hint = f"; it holds run directories ({', '.join(inside[:5])}): pass those" if inside else ""
        raise DataError(
            f"{str(path)!r} is not a run directory: no summary.json in it "
            f"(expected <run>/summary.json and <run>/metrics/, as written by `dp2fl-ray run`){hint}"
        )
    if not (path / "metrics" / "rounds").is_dir():
        raise DataError(
            f"run directory {str(path)!r} has no metrics/rounds table: no round has finished yet; "
            "report it once the run has completed a round"
        )
    summary = read_summary(path)
    config = _read_config(path)
    algorithm = str(summary.get("algorithm") or config.get("algorithm", {}).get("name") or "unknown")
    tables = {name: read_table(path, name) for name in TABLES if (path / "metrics" / name).is_dir()}
    # the label names the algorithm unless the run's name already does ("dp2fl-2025...")
    label = path.name if algorithm.lower() in path.name.lower() else f"{path.name} ({algorithm})"
    return RunData(path, label, _slugify(path.name), algorithm, summary, config, tables)


def load_runs(run_dirs: Sequence[str | os.PathLike[str]]) -> list[RunData]:
    """``load_run`` for each directory; slugs made unique (two runs may share a directory name)."""
    if not run_dirs:
        raise DataError("no run directory given; pass at least one directory written by `dp2fl-ray run`")
    runs = [load_run(d) for d in run_dirs]
    seen: dict[str, int] = {}
    unique = []
    for run in runs:
        n = seen.get(run.slug, 0)
        seen[run.slug] = n + 1
        if n:  # a second run named like an earlier one: suffix both slug and label
            run = RunData(run.path, f"{run.label} #{n + 1}", f"{run.slug}-{n + 1}", run.algorithm,
                          run.summary, run.config, run.tables)  # fmt: skip
        unique.append(run)
    return unique


def no_global_reason(run: RunData) -> str:
    """Why a run has no global-model accuracy on held-out clients (for notes in plots and tables)."""
    if not has_global_model(run.algorithm):
        return f"{run.algorithm} has no global model"
    if run.config.get("federation", {}).get("new_clients") == 0:
        return "no held-out clients: federation.new_clients = 0"
    return "no held-out global evaluation in metrics/evals"


def has_global_model(algorithm: str) -> bool:
    """Whether a run's algorithm has one model for everyone (an unresolvable name: assume so)."""
    try:
        return bool(algorithm_class(algorithm).has_global_model)
    except ConfigError:
        return True


def _read_config(path: Path) -> dict[str, Any]:
    """The resolved config as a plain dict (not validated: an older run may predate a field)."""
    config_path = path / "config.yaml"
    if not config_path.is_file():
        return {}
    with open(config_path) as f:
        loaded = yaml.safe_load(f)
    return loaded if isinstance(loaded, dict) else {}


def _slugify(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return slug or "run"
