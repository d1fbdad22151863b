"""``report.md``: the paper-shaped tables as Markdown, the headline numbers and the plot list.

Accuracies and F1 scores are printed in percent with two decimals (the paper's format);
a missing number is printed as ``-``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dp2fl_ray.report import tables
from dp2fl_ray.report.runs import RunData, no_global_reason

MISSING = "-"


@dataclass(frozen=True)
class PlotEntry:
    """A written figure (``file``) or a skipped one (``file`` None, ``reason`` why)."""

    name: str
    description: str
    file: str | None = None
    reason: str = ""


def percent(value: Any) -> str:
    return MISSING if _missing(value) else f"{100 * float(value):.2f}"


def number(value: Any) -> str:
    if _missing(value):
        return MISSING
    if isinstance(value, (bool, str)):
        return str(value)
    if float(value).is_integer() and abs(float(value)) < 1e15:
        return str(int(value))
    return f"{float(value):.3f}" if abs(float(value)) < 100 else f"{float(value):.1f}"


def markdown_table(frame: pd.DataFrame, formats: Mapping[str, Callable[[Any], str]] | None = None,
                   default: Callable[[Any], str] = number) -> str:  # fmt: skip
    """A GitHub-flavoured Markdown table; ``formats`` maps a column to its formatter."""
    formats = formats or {}
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for _, row in frame.iterrows():
        cells = [formats.get(str(c), default)(row[c]) for c in frame.columns]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def render(runs: Sequence[RunData], plots: Sequence[PlotEntry]) -> str:
    """The whole report.md for one run or a comparison of several."""
    clients = tables.runs_with({run.label: run.table("clients") for run in runs})
    evals = tables.runs_with({run.label: run.table("evals") for run in runs})
    title = f"Run report: {runs[0].label}" if len(runs) == 1 else f"Comparison of {len(runs)} runs"
    where = "this run" if len(runs) == 1 else "these runs"
    units = (
        "Accuracies and F1 scores are in percent (the paper's unit); a mean over clients is the "
        "unweighted mean of per-client numbers. Columns are documented in `results/README.md`."
    )
    parts = [f"# {title}", _run_list(runs), units]
    parts += ["## Headline numbers (`summary.json`)", _headline(runs)]
    parts += ["## Table 1: personalised models `(Pt, Pd_k)` on each client's own test split (last round)"]
    parts += [_table1(clients) if clients else f"No clients table in {where}."]
    parts += [
        "## Table 2: global model `(Pt, PD)` on held-out clients vs personalised models",
        _table2(runs, clients, evals),
    ]
    for name, caption, models in (
        ("Table 3", "new clients without training", tables.TABLE3_MODELS),
        ("Table 4", "new clients after one round of local training from each start", tables.TABLE4_MODELS),
    ):
        parts.append(f"## {name}: {caption} (mean accuracy over held-out clients)")
        frame = tables.new_client_table(evals, models)
        if frame is None:
            parts.append(f"Not evaluated in {where} (no held-out `metrics/evals` rows with model "
                         + ", ".join(f"`{m}`" for m in models if m != "global") + ").")  # fmt: skip
        else:
            parts.append(_new_clients(frame, models))
    parts += ["## Plots", plot_list(plots)]
    return "\n\n".join(parts) + "\n"


def _run_list(runs: Sequence[RunData]) -> str:
    lines = []
    for run in runs:
        seed = run.config.get("seed", MISSING)
        status, rounds = run.summary.get("status", MISSING), run.summary.get("rounds_completed", MISSING)
        lines.append(f"- **{run.label}**: `{run.path}` (status {status}, {rounds} rounds, seed {seed})")
    return "\n".join(lines)


def _headline(runs: Sequence[RunData]) -> str:
    frame = tables.headline_table({run.label: run.summary for run in runs}).reset_index()
    rows = []
    for _, row in frame.iterrows():
        field = row["field"]
        fmt = percent if field.endswith(("_acc", "_f1")) else number
        unit = " (%)" if fmt is percent else ""
        rows.append([f"{field}{unit}"] + [fmt(row[run.label]) for run in runs])
    out = pd.DataFrame(rows, columns=["field"] + [run.label for run in runs])
    return markdown_table(out, default=str)


def _table1(clients: Mapping[str, pd.DataFrame]) -> str:
    frame = tables.personalised_table(clients)
    value_columns = [c for c in frame.columns if c not in ("run", "metric", "round")]
    return markdown_table(frame, {c: percent for c in value_columns})


def _table2(
    runs: Sequence[RunData], clients: Mapping[str, pd.DataFrame], evals: Mapping[str, pd.DataFrame]
) -> str:
    frame = tables.global_vs_personalised_table(clients, evals)
    formats = {c: percent for c in frame.columns if "acc" in c or "F1" in c}
    notes = ["`delta acc` = global minus personalised, in percentage points (the paper: -0.33 on average)."]
    without = set(frame.loc[frame["global acc (held-out)"].isna(), "run"])
    notes += [
        f"No global model evaluated for {run.label}: {no_global_reason(run)}."
        for run in runs
        if run.label in without
    ]
    return markdown_table(frame, formats) + "\n\n" + "\n".join(f"- {note}" for note in notes)


def _new_clients(frame: pd.DataFrame, models: Mapping[str, str]) -> str:
    formats = {column: percent for column in models.values()}
    legend = ", ".join(f"{column} = `{model}`" for model, column in models.items())
    return (
        markdown_table(frame, formats)
        + f"\n\nColumns: {legend} (Init `(Pt^0, PD^0)`, InitGlo `(Pt^R, PD^0)`, Global `(Pt^R, PD^R)`)."
    )


def plot_list(plots: Sequence[PlotEntry]) -> str:
    lines, images = [], []
    for plot in plots:
        if plot.file is None:
            lines.append(f"- {plot.name}: skipped ({plot.reason})")
        else:
            lines.append(f"- [`{plot.file}`]({plot.file}): {plot.description}")
            images.append(f"![{plot.description}]({plot.file})")
    return "\n".join(lines) + ("\n\n" + "\n\n".join(images) if images else "")


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # not a scalar
        return False
