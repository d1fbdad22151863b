"""Report figures, drawn with matplotlib's Agg canvas (no pyplot, no display, no global state).

Each ``plot_*`` function returns a ``Figure`` (or None when the run lacks the table it
needs); ``save_png`` writes one atomically. Accuracies are drawn in percent, as the paper
reports them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from dp2fl_ray.report.files import write_file
from dp2fl_ray.report.runs import RunData, no_global_reason
from dp2fl_ray.report.tables import global_weights, last_round, loss_matrix, phase_times

DPI = 110
PHASES = {"train_s": "local training", "crosseval_s": "cross-evaluation", "aggregate_s": "aggregation",
          "eval_s": "evaluation", "other_s": "other"}  # fmt: skip
SET_LETTERS = {"PC": "P", "RNC": "R", "DNC": "D"}
MAX_LINES = 12  # more clients than this: draw a min-median-max band instead of one line each
MAX_ANNOTATED = 12  # cross-eval cells get letter + loss up to this cohort, letters only up to 2x
MAX_MARKED = 150  # above this cohort the cells are too small for set markers


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _color(index: int) -> str:
    return f"C{index % 10}"


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG under a temporary name, then rename it to ``path``."""
    return write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def plot_accuracy(runs: Sequence[RunData]) -> Figure:
    """Personalised (left) and global-on-held-out (right) accuracy per round, one line per run.

    Dashed and dotted lines in a run's colour are its zero-shot and majority-class accuracy.
    """
    fig = _figure(11, 4.4)
    left, right = fig.subplots(1, 2, sharex=True, sharey=True)
    missing = []
    for index, run in enumerate(runs):
        rounds = run.tables["rounds"]
        x, color = rounds["round"], _color(index)
        left.plot(x, 100 * rounds["personalized_acc"], marker="o", color=color, label=run.label)
        for key, style in (("zero_shot_acc", "--"), ("majority_acc", ":")):
            if run.summary.get(key) is not None:
                left.axhline(100 * run.summary[key], color=color, linestyle=style, linewidth=1.2, alpha=0.8)
        if rounds["global_acc"].notna().any():
            right.plot(x, 100 * rounds["global_acc"], marker="o", color=color, label=run.label)
        else:
            missing.append(
                f"{run.label}: {no_global_reason(run)}" if len(runs) > 1 else no_global_reason(run)
            )
    left.set_title("personalised models on their clients' test splits")
    right.set_title("global model on held-out clients")
    if len(missing) == len(runs):
        right.text(0.5, 0.5, "not shown:\n" + "\n".join(missing), ha="center", va="center",
                   transform=right.transAxes, color="0.35")  # fmt: skip
    elif missing:  # a note in the title keeps clear of the other runs' lines
        right.set_title(
            "global model on held-out clients\n(not shown: " + "; ".join(missing) + ")", fontsize="medium"
        )
    for ax in (left, right):
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    left.set_ylabel("mean accuracy over clients (%)")
    handles = [Line2D([], [], color=_color(i), marker="o", label=run.label) for i, run in enumerate(runs)]
    handles += [Line2D([], [], color="0.3", linestyle="--", label="zero-shot (untrained start model)"),
                Line2D([], [], color="0.3", linestyle=":", label="majority class")]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize="small")
    return fig


def plot_client_accuracy(runs: Sequence[RunData]) -> Figure | None:
    """Distribution of per-client personalised test accuracy in each run's last round."""
    colors = {run.label: _color(index) for index, run in enumerate(runs)}  # as in the other figures
    runs = [run for run in runs if run.table("clients") is not None and not run.tables["clients"].empty]
    if not runs:
        return None
    fig = _figure(max(6.5, 1.8 * len(runs) + 3), 4.6)
    ax = fig.subplots()
    data = [100 * last_round(run.tables["clients"])["test_acc"].to_numpy() for run in runs]
    ax.boxplot(data, widths=0.5, showmeans=True, showfliers=False, medianprops={"color": "black"},
               meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black"})  # fmt: skip
    for index, values in enumerate(data):
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
        ax.scatter(index + 1 + offsets, values, color=colors[runs[index].label], alpha=0.8, zorder=3, s=22)
    rounds = [int(last_round(run.tables["clients"])["round"].max()) for run in runs]
    ax.set_xticks(range(1, len(runs) + 1), [f"{run.label}\nround {r}, {len(v)} clients"
                                            for run, r, v in zip(runs, rounds, data)])  # fmt: skip
    ax.set_ylabel("personalised test accuracy (%)")
    ax.set_title(
        "per-client accuracy in the last round\n"
        "(one dot per client; box: quartiles, line: median, diamond: mean)",
        fontsize="medium",
    )
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_crosseval(run: RunData) -> Figure | None:
    """The last round's validation-loss matrix loss[i, j] with each cell's PC/RNC/DNC set."""
    aggregation = run.table("aggregation")
    if aggregation is None or aggregation.empty:
        return None
    loss, sets, baselines = loss_matrix(aggregation)
    m = len(loss)
    side = min(14.0, max(5.5, 0.55 * m + 3))
    fig = _figure(side + 1.2, side)
    ax = fig.subplots()
    values = loss.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="viridis", aspect="equal")
    fig.colorbar(image, ax=ax, shrink=0.8, label="validation loss")
    # typed as the abstract Norm; imshow with a colormap and no norm= made a linear Normalize
    _mark_sets(ax, values, sets.to_numpy(dtype=object), cast(Normalize, image.norm))
    step = max(1, math.ceil(m / 30))  # at most ~30 tick labels per axis
    ticks = list(range(0, m, step))
    ax.set_yticks(ticks, [str(loss.index[t]) for t in ticks])
    xlabels = [f"{loss.columns[t]}\nL={baselines.iloc[t]:.2f}" if m <= 2 * MAX_ANNOTATED
               else str(loss.columns[t])
               for t in ticks]  # fmt: skip
    ax.set_xticks(ticks, xlabels, fontsize="small")
    ax.set_xlabel(
        "validation set of client j" + (" (L = its baseline L_j)" if m <= 2 * MAX_ANNOTATED else "")
    )
    ax.set_ylabel("model of client i")
    alpha = run.config.get("algorithm", {}).get("alpha", "alpha")
    round_idx = int(aggregation["round"].max())
    ax.set_title(f"{run.label}: cross-evaluation, round {round_idx}\n{_set_key(m, alpha)}", fontsize="medium")
    return fig


def _set_key(m: int, alpha: object) -> str:
    """The title line explaining how ``_mark_sets`` marked a cohort of ``m``."""
    if m > MAX_MARKED:
        return f"PC/RNC/DNC sets not marked (cohort above {MAX_MARKED})"
    if m > 2 * MAX_ANNOTATED:
        return f"no mark: loss < L_j (positive)   dot: < {alpha} L_j (retained)   x: discarded"
    return f"P: loss < L_j (positive)   R: < {alpha} L_j (retained)   D: discarded"


def _mark_sets(ax: Axes, values: np.ndarray, sets: np.ndarray, norm: Normalize) -> None:
    """Letter (and loss) per cell for small cohorts, markers for large ones (see ``_set_key``)."""
    m = len(values)
    dark = norm(values) < 0.5  # viridis is dark at the low end: white marks there
    if m > MAX_MARKED:
        return
    if m > 2 * MAX_ANNOTATED:
        for name, marker in (("RNC", "."), ("DNC", "x")):
            rows, cols = np.nonzero(sets == name)  # (n,) cell coordinates of that set
            colors = np.where(dark[rows, cols], "white", "black")
            ax.scatter(cols, rows, marker=marker, c=colors, s=9, linewidths=0.8)
        return
    for i, j in zip(*np.nonzero(np.isin(sets, list(SET_LETTERS)))):
        letter = SET_LETTERS[sets[i, j]]
        text = f"{letter}\n{values[i, j]:.2f}" if m <= MAX_ANNOTATED else letter
        ax.text(j, i, text, ha="center", va="center", color="white" if dark[i, j] else "black",
                fontsize=8 if m <= MAX_ANNOTATED else 7, fontweight="bold")  # fmt: skip


def plot_global_weights(run: RunData) -> Figure | None:
    """Each client's weight w_i in the global task and data prompts, per round, against 1/m."""
    aggregation = run.table("aggregation")
    if aggregation is None or aggregation.empty:
        return None
    weights = global_weights(aggregation)
    fig = _figure(8, 4.6)
    ax = fig.subplots()
    x = weights.index.to_numpy()
    if weights.shape[1] <= MAX_LINES:
        for index, client in enumerate(weights.columns):
            ax.plot(x, weights[client], marker="o", color=_color(index), label=f"client {client}")
    else:
        ax.fill_between(
            x, weights.min(axis=1), weights.max(axis=1), alpha=0.3, label="min to max over clients"
        )
        ax.plot(x, weights.median(axis=1), marker="o", label="median")
    uniform = 1.0 / weights.notna().sum(axis=1)
    ax.plot(x, uniform, color="black", linestyle="--", linewidth=1, label="uniform 1/m")
    ax.set_xlabel("round")
    ax.set_ylabel("global aggregation weight w_i")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{run.label}: global aggregation weights per round")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return fig


def plot_timing(runs: Sequence[RunData]) -> Figure:
    """Throughput (client updates/s) per round for every run, then each run's seconds per phase."""
    panels = 1 + len(runs)
    ncols = 2
    nrows = math.ceil(panels / ncols)
    fig = _figure(11, 3.8 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    ax = axes[0]
    for index, run in enumerate(runs):
        rounds = run.tables["rounds"]
        ax.plot(
            rounds["round"], rounds["client_updates_per_s"], marker="o", color=_color(index), label=run.label
        )
    ax.set_title("throughput")
    ax.set_ylabel("client updates / s")
    ax.legend(fontsize="small")
    for index, run in enumerate(runs):
        ax = axes[index + 1]
        times = phase_times(run.tables["rounds"])
        bottom = np.zeros(len(times))
        for phase, name in PHASES.items():
            ax.bar(
                times.index, times[phase], bottom=bottom, label=name, color=f"C{list(PHASES).index(phase)}"
            )
            bottom += times[phase].to_numpy()
        ax.set_title(f"{run.label}: seconds per phase")
        ax.set_ylabel("seconds")
        ax.legend(fontsize="x-small")
    for ax in axes[:panels]:
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig
