"""A sweep's ``report.md``: the paper's tables with each cell as mean ± 95% CI over seeds, paired
differences against a baseline method, the per-client bootstrap and the seeds each cell rests on.

Only deterministic inputs reach the text (no clock, no unseeded draw), so rendering the same sweep
twice gives the same bytes. Accuracies and differences are in percent / percentage points.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dp2fl_ray import stats
from dp2fl_ray.report import tables
from dp2fl_ray.report.markdown import MISSING, PlotEntry, markdown_table, plot_list
from dp2fl_ray.report.sweep_data import SweepData
from dp2fl_ray.report.sweep_tables import Comparison, cell, comparisons, coverage, has_global, seed_values

READING = (
    "**How to read the intervals.** A cell is `mean ± h (n=k)`: the mean over the k seeds it rests on "
    "and the half-width h of its 95% Student-t confidence interval (t quantile with k - 1 degrees of "
    "freedom times the standard error over seeds). `(n=1)` has no interval: one seed says nothing "
    "about seed-to-seed spread. Two cells whose intervals overlap may still differ: the paired "
    "differences below compare methods on the same seeds (same partition, same cohorts), which "
    "removes the seed-to-seed variation the methods share. A difference is `+d [lo, hi]` in "
    "percentage points (method minus baseline)."
)


def interval(ci: stats.Interval) -> str:
    """``82.13 ± 0.90 (n=3)``, ``82.13 (n=1)`` (no interval), or ``-`` (no seed)."""
    if ci.n == 0:
        return MISSING
    if ci.half_width is None:
        return f"{100 * ci.mean:.2f} (n={ci.n})"
    return f"{100 * ci.mean:.2f} ± {100 * ci.half_width:.2f} (n={ci.n})"


def difference(mean: float, low: float | None, high: float | None) -> str:
    if pd.isna(mean):
        return MISSING
    text = f"{100 * mean:+.2f}"
    return text if low is None or high is None else f"{text} [{100 * low:+.2f}, {100 * high:+.2f}]"


def p_value(p: float | None) -> str:
    if p is None:
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def render(data: SweepData, baseline: str, plots: Sequence[PlotEntry]) -> str:
    parts = [f"# Sweep report: {data.name}", _overview(data, baseline), READING]
    parts += [
        "## Table 1: personalised models `(Pt, Pd_k)` on each client's own test split (last round)",
        "Accuracy (%), mean over the cohort's clients, then over seeds:",
        _by_setting(data, "personalized_acc", data.methods),
        "Micro-F1 (%):",
        _by_setting(data, "personalized_micro_f1", data.methods),
    ]
    with_global = [m for m in data.methods if has_global(data, m)]
    without = [m for m in data.methods if m not in with_global]
    note = f"\n\nNo global model for {', '.join(without)}: not shown." if without else ""
    parts += ["## Table 2: global model `(Pt, PD)` on held-out (new) clients"]
    parts += [_by_setting(data, "global_acc", with_global) + note if with_global else "No method has one."]
    if with_global:
        parts += ["`delta acc` = global on held-out minus personalised, per seed (percentage points):",
                  _by_setting(data, "delta_acc", with_global)]  # fmt: skip
    for name, caption, prefix, models in (
        ("Table 3", "new clients without training", "t3_", tables.TABLE3_MODELS),
        ("Table 4", "new clients after one round of local training from each start", "t4_",
         tables.TABLE4_MODELS),
    ):  # fmt: skip
        parts += [
            f"## {name}: {caption} (mean accuracy over held-out clients, %)",
            _new_clients(data, prefix, models),
        ]
        if prefix == "t3_" and not data.metrics[["t3_init", "t3_initglo"]].isna().all().all():
            parts += [
                "### Table 3's ordering (the paper: Init < InitGlo < Global), paired over seeds",
                _ordering(data),
            ]
    parts += _comparison_sections(data, baseline)
    parts += ["## Seeds per cell", _coverage(data)]
    parts += ["## Plots", plot_list(plots)]
    return "\n\n".join(parts) + "\n"


def _overview(data: SweepData, baseline: str) -> str:
    counts = data.trials["status"].value_counts()
    status = ", ".join(f"{int(counts[s])} {s}" for s in sorted(counts.index))
    return "\n".join([
        f"- sweep directory: `{data.path}`",
        f"- trials: {len(data.trials)} ({status}); only completed trials enter the numbers",
        (f"- seeds: {', '.join(map(str, data.seeds))}; methods: {', '.join(data.methods)}; "
        f"settings: {', '.join(data.settings)}"),
        f"- baseline of the paired comparisons: `{baseline}`",
    ])  # fmt: skip


def _by_setting(data: SweepData, metric: str, methods: Sequence[str]) -> str:
    """Rows methods, columns settings (the paper's methods x datasets)."""
    rows = [[m] + [interval(cell(data, metric, s, m)) for s in data.settings] for m in methods]
    return markdown_table(pd.DataFrame(rows, columns=["method", *data.settings]), default=str)


def _new_clients(data: SweepData, prefix: str, models: dict[str, str]) -> str:
    columns = {f"{prefix}{m}": c for m, c in models.items()}
    if data.metrics[list(columns)].isna().all().all():
        return "Not evaluated in this sweep (no held-out `metrics/evals` rows with these models)."
    rows = []
    for setting in data.settings:
        for method in data.methods:
            shown = has_global(data, method)
            rows.append([setting, method] + [
                interval(cell(data, key, setting, method)) if shown or column != "Global" else "n/a"
                for key, column in columns.items()
            ])  # fmt: skip
    legend = ", ".join(f"{c} = `{m}`" for m, c in models.items())
    return (
        markdown_table(pd.DataFrame(rows, columns=["setting", "method", *columns.values()]), default=str)
        + f"\n\nColumns: {legend} (Init `(Pt^0, PD^0)`, InitGlo `(Pt^R, PD^0)`, Global `(Pt^R, PD^R)`); "
        "`n/a`: the method has no global model."
    )


def _ordering(data: SweepData) -> str:
    """Within each method, InitGlo minus Init and Global minus InitGlo on the same seeds (no correction:
    each row is its own question)."""
    steps = (("InitGlo - Init", "t3_initglo", "t3_init"), ("Global - InitGlo", "t3_global", "t3_initglo"))
    rows = []
    for setting in data.settings:
        for method in data.methods:
            row = [setting, method]
            for _, upper, lower in steps:
                if upper == "t3_global" and not has_global(data, method):
                    row += ["n/a", MISSING]
                    continue
                test = stats.paired_test(seed_values(data, upper, setting, method),
                                         seed_values(data, lower, setting, method))  # fmt: skip
                row += [difference(test.diff.mean, test.diff.low, test.diff.high), p_value(test.p)]
            rows.append(row)
    columns = ["setting", "method"] + [
        f"{name} {part}" for name, *_ in steps for part in ("(pp) [95% CI]", "p")
    ]
    return markdown_table(pd.DataFrame(rows, columns=columns), default=str)


def _comparison_sections(data: SweepData, baseline: str) -> list[str]:
    others = [m for m in data.methods if m != baseline]
    if not others:
        return ["## Paired differences", f"Only one method (`{baseline}`) in this sweep: nothing to compare."]
    family = len(others)
    correction = (
        f"Correction for up to {family} methods compared at once in each setting: p-values "
        f"Holm-adjusted (step-down), intervals Bonferroni-widened to "
        f"{100 * stats.bonferroni_level(stats.LEVEL, family):.2f}% "
        "each (simultaneous 95% coverage), for the paired t-test and the bootstrap alike. A "
        "comparison whose per-seed differences are all equal has no t-test (`p` is `-`) and "
        "leaves the t-test's family, so a setting with one has a smaller family: the `CI level` "
        "column gives each row's level."
        if family > 1
        else "One method compared: no correction needed (adjusted = raw)."
    )
    parts = [f"## Paired differences against `{baseline}` (over seeds)", correction]
    for metric, title in (
        ("personalized_acc", "personalised accuracy"),
        ("global_acc", "global accuracy on held-out clients"),
    ):
        found = comparisons(data, baseline, metric, bootstrap=False)
        if metric == "global_acc":
            if not has_global(data, baseline):
                parts.append(f"Global accuracy: `{baseline}` has no global model; no paired comparison.")
                continue
            found = [c for c in found if has_global(data, c.method)]
        parts += [
            f"### {title.capitalize()}: method minus `{baseline}`, paired t-test over seeds",
            _tests(found),
        ]
    boot = comparisons(data, baseline, "personalized_acc", bootstrap=True)
    parts += [
        f"## Per-client paired bootstrap against `{baseline}` (personalised accuracy)",
        (
            "Each pair is one client under one seed (same seed: same client data in both methods); "
            f"clients are resampled with replacement within each seed, {stats.RESAMPLES} times "
            "(seeded: the same sweep gives the same numbers). Interval: bootstrap percentiles; "
            "p: two-sided, the share of resampled means at least as far from the observed mean "
            "as it is from 0."
        ),
        _bootstraps(boot),
    ]
    return parts


def _tests(found: Sequence[Comparison]) -> str:
    rows = []
    for c in found:
        d = c.test.diff
        level = f"{100 * d.level:.2f}%" if d.half_width is not None else MISSING
        rows.append([c.setting, c.method, difference(d.mean, d.low, d.high), level, p_value(c.test.p),
                     p_value(c.test.p_adjusted), str(d.n)])  # fmt: skip
    columns = [
        "setting",
        "method",
        "difference (pp) [CI]",
        "CI level",
        "p (paired t)",
        "p (Holm)",
        "seeds paired",
    ]
    return markdown_table(pd.DataFrame(rows, columns=columns), default=str)


def _bootstraps(found: Sequence[Comparison]) -> str:
    rows = []
    for c in found:
        b = c.bootstrap
        if b is None:
            continue
        level = f"{100 * b.level:.2f}%" if b.low is not None else MISSING
        rows.append([c.setting, c.method, difference(b.mean, b.low, b.high), level, p_value(b.p),
                     p_value(b.p_adjusted), str(b.pairs), str(b.strata)])  # fmt: skip
    columns = ["setting", "method", "difference (pp) [CI]", "CI level", "p (bootstrap)", "p (Holm)",
               "client pairs", "seeds"]  # fmt: skip
    return markdown_table(pd.DataFrame(rows, columns=columns), default=str)


def _coverage(data: SweepData) -> str:
    frame = coverage(data)
    short = frame[frame["missing"] != ""]
    note = (
        "Every cell rests on all of the sweep's seeds."
        if short.empty
        else f"{len(short)} cell(s) rest on fewer seeds than the sweep ran; "
        "their numbers use only the seeds listed."
    )
    frame = frame.assign(missing=frame["missing"].replace("", MISSING))
    return markdown_table(frame, default=str) + "\n\n" + note
