"""A sweep's numbers over seeds: each cell's mean and interval, paired comparisons against a baseline
method, and how many seeds each cell rests on. Pure pandas and ``dp2fl_ray.stats``.

The family of a multiple-comparison correction is one (setting, metric): the methods compared
against the baseline there. Their paired-t p-values are Holm-adjusted and their intervals widened
to the Bonferroni level; the per-client bootstrap of the same family gets the same treatment (its
own Holm adjustment, percentiles at the Bonferroni level).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dp2fl_ray import stats
from dp2fl_ray.report.sweep_data import USED_STATUS, SweepData

BOOTSTRAP_SEED = 0  # the report's only randomness: the same sweep gives the same bootstrap


@dataclass(frozen=True)
class Comparison:
    """One method against the baseline in one setting: paired over seeds, and over (seed, client)."""

    setting: str
    method: str
    metric: str
    test: stats.PairedTest
    bootstrap: stats.Bootstrap | None  # None for metrics without per-client numbers


def seed_values(data: SweepData, metric: str, setting: str, method: str) -> np.ndarray:
    """The metric of each of the sweep's seeds in this cell, in seed order; NaN where none."""
    rows = data.metrics[(data.metrics["setting"] == setting) & (data.metrics["method"] == method)]
    by_seed = rows.groupby("seed")[metric].first()
    return np.array([float(by_seed.get(seed, np.nan)) for seed in data.seeds])


def cell(data: SweepData, metric: str, setting: str, method: str) -> stats.Interval:
    return stats.mean_ci(seed_values(data, metric, setting, method))


def comparisons(data: SweepData, baseline: str, metric: str, *, bootstrap: bool) -> list[Comparison]:
    """Every non-baseline method against ``baseline`` in every setting, corrected per setting."""
    out: list[Comparison] = []
    for setting in data.settings:
        methods = [m for m in data.methods if m != baseline]
        base = seed_values(data, metric, setting, baseline)
        tests = stats.correct(
            [stats.paired_test(seed_values(data, metric, setting, m), base) for m in methods]
        )
        boots: list[stats.Bootstrap | None] = [None] * len(methods)
        if bootstrap:
            boots = _bootstraps(data, setting, baseline, methods)
        out += [Comparison(setting, m, metric, t, b) for m, t, b in zip(methods, tests, boots)]
    return out


def client_pairs(data: SweepData, setting: str, method: str, baseline: str) -> pd.DataFrame:
    """Per-(seed, client) test accuracy of ``method`` and ``baseline`` (same seed = same clients)."""
    rows = data.clients[data.clients["setting"] == setting]
    keys = ["seed", "client_id"]
    a = rows[rows["method"] == method][[*keys, "test_acc"]]
    b = rows[rows["method"] == baseline][[*keys, "test_acc"]]
    return a.merge(b, on=keys, suffixes=("", "_baseline")).sort_values(keys, kind="stable")


def _bootstraps(
    data: SweepData, setting: str, baseline: str, methods: list[str]
) -> list[stats.Bootstrap | None]:
    pairs = [client_pairs(data, setting, m, baseline) for m in methods]
    family = sum(len(p) >= 2 for p in pairs)
    level = stats.bonferroni_level(stats.LEVEL, family)
    boots = [
        stats.paired_bootstrap(
            p["test_acc"] - p["test_acc_baseline"], p["seed"], seed=BOOTSTRAP_SEED, level=level
        )
        for p in pairs
    ]
    adjusted = stats.holm([b.p for b in boots])
    return [
        stats.Bootstrap(b.mean, b.low, b.high, b.p, b.pairs, b.strata, b.resamples, b.level, p_adj)
        for b, p_adj in zip(boots, adjusted)
    ]


def coverage(data: SweepData) -> pd.DataFrame:
    """One row per cell: the seeds its numbers rest on, of the sweep's seeds, and what became of the rest.

    Columns ``setting``, ``method``, ``cell_id``, ``used`` (e.g. ``2 of 3``), ``seeds used`` and
    ``missing`` (``seed 1 failed; seed 2 not run``; empty when none).
    """
    rows = []
    trials = data.trials
    for setting in data.settings:
        for method in data.methods:
            here = trials[(trials["setting"] == setting) & (trials["method"] == method)]
            used = sorted(set(data.metrics.loc[(data.metrics["setting"] == setting)
                                               & (data.metrics["method"] == method), "seed"]))  # fmt: skip
            notes = []
            for seed in data.seeds:
                if seed in used:
                    continue
                status = here.loc[here["seed"] == seed, "status"]
                why = "not run" if status.empty else ", ".join(sorted(set(status)))
                why = "completed but no clients table" if why == USED_STATUS else why
                notes.append(f"seed {seed} {why}")
            cell_ids = sorted(set(here["cell_id"])) if "cell_id" in here else []
            rows.append({
                "setting": setting, "method": method, "cell_id": ", ".join(cell_ids) or "-",
                "used": f"{len(used)} of {len(data.seeds)}", "seeds used": ", ".join(map(str, used)) or "-",
                "missing": "; ".join(notes),
            })  # fmt: skip
    return pd.DataFrame(rows)


def has_global(data: SweepData, method: str) -> bool:
    """Whether any trial of ``method`` evaluated a global model on held-out clients (Local has none)."""
    rows = data.metrics[data.metrics["method"] == method]
    return bool(rows["global_acc"].notna().any())
