"""A sweep's figures: accuracy against heterogeneity with 95% CI error bars, and per-method
distributions of per-client accuracy (pooled over seeds), one panel per setting.

Drawn like ``plots.py`` (Agg canvas, no pyplot); each function returns a Figure or None when the
sweep has nothing to draw.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from dp2fl_ray.report.plots import _color, _figure
from dp2fl_ray.report.sweep_data import SweepData
from dp2fl_ray.report.sweep_tables import cell, has_global

PANELS = (("personalized_acc", "personalised models on their clients"),
          ("global_acc", "global model on held-out clients"))  # fmt: skip


def plot_heterogeneity(data: SweepData) -> Figure | None:
    """Mean accuracy per setting (x: the sweep's settings, its partition axis in sweep order), one
    line per method, error bars the 95% Student-t interval over seeds (none where n = 1)."""
    if data.metrics.empty:
        return None
    fig = _figure(max(7.0, 1.6 * len(data.settings) + 4), 4.6)
    axes = fig.subplots(1, 2, sharey=True)
    x = np.arange(len(data.settings))
    width = 0.25 / max(1, len(data.methods) - 1)
    for ax, (metric, title) in zip(axes, PANELS):
        for index, method in enumerate(data.methods):
            if metric == "global_acc" and not has_global(data, method):
                continue
            cis = [cell(data, metric, s, method) for s in data.settings]
            means = np.array([100 * c.mean if c.n else np.nan for c in cis])
            errors = np.array([100 * c.half_width if c.half_width is not None else 0.0 for c in cis])
            shift = (index - (len(data.methods) - 1) / 2) * width  # keep bars of methods apart
            ax.errorbar(
                x + shift, means, yerr=errors, marker="o", capsize=4, color=_color(index), label=method
            )
        ax.set_xticks(x, data.settings, rotation=20 if len(data.settings) > 3 else 0)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(", ".join(data.heterogeneity) or "setting")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean accuracy over clients (%), mean ± 95% CI over seeds")
    axes[0].legend(fontsize="small")
    return fig


def plot_client_distributions(data: SweepData) -> Figure | None:
    """Per-client personalised test accuracy of each method (every client of every used seed)."""
    if data.clients.empty:
        return None
    ncols = min(2, len(data.settings))
    nrows = math.ceil(len(data.settings) / ncols)
    fig = _figure(max(6.5, 1.4 * len(data.methods) + 3) * ncols / 1.4, 4.0 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, setting in zip(axes, data.settings):
        rows = data.clients[data.clients["setting"] == setting]
        values = [100 * rows.loc[rows["method"] == m, "test_acc"].to_numpy() for m in data.methods]
        shown = [i for i, v in enumerate(values) if len(v)]
        if shown:
            ax.boxplot([values[i] for i in shown], positions=[i + 1 for i in shown], widths=0.5,
                       showmeans=True, showfliers=False, medianprops={"color": "black"},
                       meanprops={"marker": "D", "markerfacecolor": "white",
                                  "markeredgecolor": "black"})  # fmt: skip
        for i in shown:
            offsets = np.linspace(-0.15, 0.15, len(values[i])) if len(values[i]) > 1 else np.zeros(1)
            ax.scatter(i + 1 + offsets, values[i], color=_color(i), alpha=0.6, s=14, zorder=3)
        labels = [f"{m}\n{len(v)} client-seeds" for m, v in zip(data.methods, values)]
        ax.set_xticks(range(1, len(data.methods) + 1), labels, fontsize="small")
        ax.set_title(setting, fontsize="medium")
        ax.set_ylabel("personalised test accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(data.settings) :]:
        ax.set_visible(False)
    fig.suptitle("per-client accuracy in the last round, pooled over seeds (box: quartiles, diamond: mean)",
                 fontsize="medium")  # fmt: skip
    return fig
