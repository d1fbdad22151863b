"""Medians, ratios and the Markdown tables of the throughput benchmark (pure pandas)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

KEYS = ["section", "workload", "arm", "dtype"]
ARM_ORDER = {"dp2fl-ray": 0, "naive": 1, "flower": 2}


def updates_per_s(cohort: int, rounds: int, rounds_s: float) -> float:
    """Client-updates per second: clients trained per round x rounds / wall time of the rounds."""
    return cohort * rounds / rounds_s if rounds_s > 0 else math.nan


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Median over repetitions per (section, workload, arm, dtype), with throughput ratios.

    ``x_flower`` / ``x_naive``: median client-updates/s over the float32 Flower / naive
    arm of the same section and workload (NaN where that arm did not run); ``cpu_x_*``:
    the same ratio of CPU seconds per client-update (the reference's over this arm's).
    """
    med = runs.groupby(KEYS, as_index=False).agg(
        reps=("updates_per_s", "size"),
        updates_per_s=("updates_per_s", "median"),
        round_s=("round_s", "median"),
        startup_s=("startup_s", "median"),
        peak_rss_mb=("peak_rss_mb", "median"),
        final_acc=("final_acc", "median"),
        cpu_s_per_update=("cpu_s_per_update", "median"),
    )
    for ref in ("flower", "naive"):
        base = med[(med["arm"] == ref) & (med["dtype"] == "float32")].set_index(["section", "workload"])["updates_per_s"]
        keys = list(zip(med["section"], med["workload"]))
        med[f"x_{ref}"] = [med["updates_per_s"].iloc[i] / base.get(k, math.nan) for i, k in enumerate(keys)]
        cpu = med[(med["arm"] == ref) & (med["dtype"] == "float32")].set_index(["section", "workload"])["cpu_s_per_update"]
        med[f"cpu_x_{ref}"] = [cpu.get(k, math.nan) / med["cpu_s_per_update"].iloc[i] for i, k in enumerate(keys)]
    order = med["arm"].map(ARM_ORDER).fillna(9)
    return med.assign(_o=order).sort_values(["section", "workload", "_o", "dtype"]).drop(columns="_o").reset_index(drop=True)


def _fmt(value: object, spec: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return format(value, spec)


def markdown_table(frame: pd.DataFrame, columns: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table of ``frame``: ``columns`` are (column, header, format spec)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c], spec) for c, _, spec in columns) + " |")
    return "\n".join(lines)


SUMMARY_COLUMNS = (
    ("section", "round", "s"),
    ("workload", "workload", "s"),
    ("arm", "arm", "s"),
    ("dtype", "dtype", "s"),
    ("updates_per_s", "client-updates/s", ".2f"),
    ("x_flower", "x Flower", ".2f"),
    ("x_naive", "x naive", ".2f"),
    ("cpu_s_per_update", "CPU s / update", ".2f"),
    ("cpu_x_flower", "CPU x Flower", ".2f"),
    ("cpu_x_naive", "CPU x naive", ".2f"),
    ("round_s", "s / round", ".1f"),
    ("startup_s", "start-up s", ".1f"),
    ("peak_rss_mb", "peak RSS MiB", ".0f"),
    ("final_acc", "final acc", ".3f"),
    ("reps", "runs", "d"),
)

UTILISATION_COLUMNS = (
    ("workload", "workload", "s"),
    ("dtype", "dtype", "s"),
    ("phase", "phase", "s"),
    ("gflop", "GFLOP / call", ".1f"),
    ("seconds", "s / call", ".2f"),
    ("gflops", "achieved GFLOP/s", ".1f"),
    ("ceiling_gflops", "dense matmul GFLOP/s", ".1f"),
    ("utilisation", "utilisation", ".0%"),
)
