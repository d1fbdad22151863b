"""Medians, ratios and the Markdown tables of the throughput benchmark (pure pandas)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

KEYS = ["section", "workload", "arm", "dtype", "baseline"]
ARM_ORDER = {"dp2fl-ray": 0, "dp2fl-ray+compile": 0.5, "naive": 1, "flower": 2}
BASELINE_ORDER = {"-": 0, "transformers": 1, "reference": 2, "package": 3}


def updates_per_s(cohort: int, rounds: int, rounds_s: float) -> float:
    """Client-updates per second: clients trained per round x rounds / wall time of the rounds."""
    return cohort * rounds / rounds_s if rounds_s > 0 else math.nan


def with_baseline_column(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs saved before the baseline arms had two backbones ran the package's model."""
    if "baseline" in runs:
        return runs
    return runs.assign(baseline=["-" if arm == "dp2fl-ray" else "package" for arm in runs["arm"]])


PHASE_COLUMNS = ("train_s", "crosseval_s", "aggregate_s", "eval_s")  # seconds per round of each phase
HEADLINE = (
    "transformers",
    "reference",
    "package",
)  # the baseline backbone the plain ratios use, first present


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Median over repetitions per (section, workload, arm, dtype, baseline), with ratios.

    ``x_flower`` / ``x_naive``: median client-updates/s over the float32 Flower / naive arm
    of the same section and workload running the headline backbone: ``transformers`` (the
    transformers model as is, dynamic padding) where that arm ran it, else ``reference``,
    else ``package``. ``x_*_ref`` / ``x_*_pkg``: the same against the arms running the padded
    ``reference`` / the package's own backbone (the engine-only comparison).
    ``x_naive_train`` (``_ref``): the naive arm's training-phase seconds per round over this
    arm's. ``cpu_x_*``: the ratio of CPU seconds per client-update (the headline's over this
    arm's). NaN where that arm did not run.
    """
    runs = with_baseline_column(runs)
    if "measured" not in runs:
        runs = runs.assign(measured="-")
    runs = runs.assign(**{c: runs.get(c, math.nan) for c in PHASE_COLUMNS})
    med = runs.groupby(KEYS, as_index=False).agg(
        measured=("measured", "max"),
        reps=("updates_per_s", "size"),
        updates_per_s=("updates_per_s", "median"),
        round_s=("round_s", "median"),
        startup_s=("startup_s", "median"),
        peak_rss_mb=("peak_rss_mb", "median"),
        final_acc=("final_acc", "median"),
        cpu_s_per_update=("cpu_s_per_update", "median"),
        **{c: (c, "median") for c in PHASE_COLUMNS},
    )
    keys = list(zip(med["section"], med["workload"]))
    for ref in ("flower", "naive"):
        base = med[(med["arm"] == ref) & (med["dtype"] == "float32")].set_index(
            ["section", "workload", "baseline"]
        )
        present = set(base.index)
        for suffix, kinds in (("", HEADLINE), ("_ref", ("reference",)), ("_pkg", ("package",))):
            pick = [next(((*k, b) for b in kinds if (*k, b) in present), None) for k in keys]
            speed = pd.Series([base["updates_per_s"].get(p, math.nan) for p in pick], dtype=float)
            train = pd.Series([base["train_s"].get(p, math.nan) for p in pick], dtype=float)
            cpu = pd.Series([base["cpu_s_per_update"].get(p, math.nan) for p in pick], dtype=float)
            med[f"x_{ref}{suffix}"] = med["updates_per_s"] / speed
            med[f"x_{ref}_train{suffix}"] = train / med["train_s"]
            med[f"cpu_x_{ref}{suffix}"] = cpu / med["cpu_s_per_update"]
    order = med["arm"].map(ARM_ORDER).fillna(9) * 10 + med["baseline"].map(BASELINE_ORDER).fillna(9)
    return (
        med.assign(_o=order)
        .sort_values(["section", "workload", "_o", "dtype"])
        .drop(columns="_o")
        .reset_index(drop=True)
    )


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
    ("baseline", "backbone code", "s"),
    ("updates_per_s", "client-updates/s", ".2f"),
    ("x_naive", "x naive", ".2f"),
    ("x_naive_ref", "x naive (reference)", ".2f"),
    ("x_naive_pkg", "x naive (package backbone)", ".2f"),
    ("x_naive_train", "x naive, training", ".2f"),
    ("x_naive_train_ref", "x naive (reference), training", ".2f"),
    ("x_flower", "x Flower", ".2f"),
    ("x_flower_pkg", "x Flower (package backbone)", ".2f"),
    ("cpu_s_per_update", "CPU s / update", ".2f"),
    ("cpu_x_naive", "CPU x naive", ".2f"),
    ("round_s", "s / round", ".1f"),
    ("train_s", "train s / round", ".1f"),
    ("crosseval_s", "cross-eval s / round", ".1f"),
    ("eval_s", "eval s / round", ".1f"),
    ("startup_s", "start-up s", ".1f"),
    ("peak_rss_mb", "peak RSS MiB", ".0f"),
    ("final_acc", "final acc", ".3f"),
    ("reps", "runs", "d"),
    ("measured", "measured", "s"),
)

UTILISATION_COLUMNS = (
    ("workload", "workload", "s"),
    ("dtype", "dtype", "s"),
    ("backbone", "backbone code", "s"),
    ("phase", "phase", "s"),
    ("gflop", "GFLOP / call", ".1f"),
    ("seconds", "s / call", ".2f"),
    ("gflops", "achieved GFLOP/s", ".1f"),
    ("ceiling_gflops", "dense matmul GFLOP/s", ".1f"),
    ("utilisation", "utilisation", ".0%"),
)
