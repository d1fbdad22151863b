"""Reports on finished (or running) runs: paper-shaped tables in ``report.md`` and PNG plots.

``write_report([run_dir])`` writes ``<run_dir>/report/``; several run directories without
``out_dir`` get one report each; with ``out_dir`` they are compared in one report there.
``write_sweep_report(sweep_dir)`` writes ``<sweep_dir>/report/``: the same tables with every
cell as mean ± 95% CI over seeds, and paired comparisons against a baseline method.
Every file is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from dp2fl_ray.errors import ConfigError
from dp2fl_ray.report import sweep_markdown
from dp2fl_ray.report.files import write_text
from dp2fl_ray.report.markdown import PlotEntry, render
from dp2fl_ray.report.plots import (
    plot_accuracy,
    plot_client_accuracy,
    plot_crosseval,
    plot_global_weights,
    plot_timing,
    save_png,
)
from dp2fl_ray.report.runs import RunData, load_run, load_runs
from dp2fl_ray.report.sweep_data import SweepData, is_sweep_dir, load_sweep_dir
from dp2fl_ray.report.sweep_plots import plot_client_distributions, plot_heterogeneity

__all__ = [
    "RunData",
    "SweepData",
    "is_sweep_dir",
    "load_run",
    "load_runs",
    "write_report",
    "write_sweep_report",
]

PathLike = str | os.PathLike[str]


def write_report(run_dirs: PathLike | Sequence[PathLike], out_dir: PathLike | None = None) -> list[Path]:
    """Write ``report.md`` and the PNG plots; return every written file's path.

    Args:
        run_dirs: one run directory or several (as written by ``run_experiment``).
        out_dir: where to write one report comparing all runs; None writes one report per
            run into ``<run_dir>/report/``.

    Raises:
        DataError: a path is missing or is not a run directory (checked for every run
            before anything is written).
    """
    dirs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
    runs = load_runs(dirs)
    if out_dir is not None:
        return _write(runs, Path(out_dir))
    return [path for run in runs for path in _write([run], run.path / "report")]


def _write(runs: list[RunData], out: Path) -> list[Path]:
    written: list[Path] = []
    entries: list[PlotEntry] = []

    def add(name: str, description: str, fig: Figure | None, reason: str = "") -> None:
        if fig is None:
            entries.append(PlotEntry(name, description, None, reason))
            return
        written.append(save_png(fig, out / name))
        entries.append(PlotEntry(name, description, name))

    add("accuracy.png", "personalised and global (held-out) accuracy per round", plot_accuracy(runs))
    add("client_accuracy.png", "distribution of per-client accuracy in the last round",
        plot_client_accuracy(runs), "no run has a metrics/clients table")  # fmt: skip
    for run in runs:
        suffix = "" if len(runs) == 1 else f"-{run.slug}"
        missing = f"{run.label} has no metrics/aggregation table; algorithm {run.algorithm} logs none"
        add(f"crosseval{suffix}.png",
            f"{run.label}: last round's cross-evaluation loss matrix with PC/RNC/DNC sets",
            plot_crosseval(run), missing)  # fmt: skip
        add(f"global_weights{suffix}.png", f"{run.label}: global aggregation weight of each client per round",
            plot_global_weights(run), missing)  # fmt: skip
    add("timing.png", "throughput (client updates/s) and seconds per phase per round", plot_timing(runs))
    return written + [write_text(out / "report.md", render(runs, entries))]


def write_sweep_report(
    sweep_dir: PathLike, out_dir: PathLike | None = None, *, baseline: str | None = None
) -> list[Path]:
    """Write a sweep's ``report.md`` and its two plots; return every written file's path.

    Args:
        sweep_dir: a directory written by ``dp2fl-ray tune`` (``trials.parquet``, ``sweep.yaml``).
        out_dir: where to write (default ``<sweep_dir>/report/``).
        baseline: the method the others are compared against (default: the sweep's first).

    Raises:
        DataError: ``sweep_dir`` is not a sweep directory.
        ConfigError: ``baseline`` is not one of the sweep's methods.
    """
    data = load_sweep_dir(sweep_dir)
    baseline = baseline or data.methods[0]
    if baseline not in data.methods:
        raise ConfigError("--baseline", baseline, "one of the sweep's methods: " + ", ".join(data.methods))
    out = Path(out_dir) if out_dir is not None else data.path / "report"
    written: list[Path] = []
    entries: list[PlotEntry] = []
    for name, description, fig in (
        ("accuracy_vs_heterogeneity.png", "mean accuracy per setting, error bars the 95% CI over seeds",
         plot_heterogeneity(data)),
        ("client_accuracy_by_method.png", "per-method distribution of per-client accuracy, pooled over seeds",
         plot_client_distributions(data)),
    ):  # fmt: skip
        if fig is None:
            entries.append(PlotEntry(name, description, None, "no completed trial"))
        else:
            written.append(save_png(fig, out / name))
            entries.append(PlotEntry(name, description, name))
    return written + [write_text(out / "report.md", sweep_markdown.render(data, baseline, entries))]
