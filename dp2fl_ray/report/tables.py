"""Paper-shaped tables (ALGORITHM.md section 6, Tables 1-4) from a run's Parquet tables.

Pure pandas: every function takes ``{run label: DataFrame}`` as ``read_table`` returns it
and gives back a DataFrame with one row per run (runs side by side, as the paper puts
methods side by side). Accuracies stay fractions in [0, 1]; ``markdown.py`` formats them as
percentages. A mean over clients is the unweighted mean of per-client numbers, as
``results/README.md`` defines it, so Table 1's average equals the round's
``personalized_acc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

# metrics/evals `model` values of the new-client tables, and their column names in the paper
TABLE3_MODELS = {"init": "Init", "initglo": "InitGlo", "global": "Global"}
TABLE4_MODELS = {"init_1round": "Init", "initglo_1round": "InitGlo", "global_1round": "Global"}

HEADLINE_FIELDS = (
    "status", "rounds_completed", "personalized_acc", "personalized_micro_f1", "global_acc", "zero_shot_acc",
    "majority_acc", "client_updates_per_s", "startup_s", "wall_s", "population", "cohort", "workers",
    "clients_stored", "bytes_per_client", "task_prompt_size", "data_prompt_size", "backbone_params",
)  # fmt: skip


def last_round(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the latest round in ``frame`` (empty in, empty out)."""
    if frame.empty:
        return frame
    return frame[frame["round"] == frame["round"].max()]


def personalised_table(clients: Mapping[str, pd.DataFrame], max_clients: int = 16) -> pd.DataFrame:
    """Table 1: each cohort client's personalised model on its own test split, last round.

    One row per (run, metric in accuracy / micro-F1); columns ``client <id>`` then ``avg``.
    With more than ``max_clients`` distinct clients over all runs, the per-client columns
    give way to ``min``, ``median`` and ``max``.
    """
    lasts = {label: last_round(frame) for label, frame in clients.items()}
    ids = sorted(set().union(*(set(f["client_id"].tolist()) for f in lasts.values()))) if lasts else []
    per_client = len(ids) <= max_clients
    rows = []
    for label, frame in lasts.items():
        for metric, column in (("accuracy", "test_acc"), ("micro-F1", "test_micro_f1")):
            values = frame.set_index("client_id")[column]
            row: dict[str, Any] = {"run": label, "metric": metric, "round": _round_of(frame)}
            if per_client:
                row.update({f"client {cid}": values.get(cid, np.nan) for cid in ids})
            else:
                row.update({"min": values.min(), "median": values.median(), "max": values.max()})
            row["avg"] = values.mean() if len(values) else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def global_vs_personalised_table(
    clients: Mapping[str, pd.DataFrame], evals: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """Table 2: the global model ``(Pt, PD)`` on held-out clients vs the personalised models.

    Personalised: mean over the last round's cohort. Global: mean over the held-out clients'
    ``global`` rows of the latest round that has them (NaN when the run held out no client).
    ``delta acc`` is global minus personalised, as a fraction.
    """
    rows = []
    for label, frame in clients.items():
        last = last_round(frame)
        held = _held_out_rows(evals.get(label), "global")
        rows.append({
            "run": label,
            "round": _round_of(last),
            "personalised acc": last["test_acc"].mean() if len(last) else np.nan,
            "global acc (held-out)": held["acc"].mean() if len(held) else np.nan,
            "delta acc": (
                (held["acc"].mean() - last["test_acc"].mean()) if len(held) and len(last) else np.nan
            ),
            "personalised micro-F1": last["test_micro_f1"].mean() if len(last) else np.nan,
            "global micro-F1 (held-out)": held["micro_f1"].mean() if len(held) else np.nan,
            "held-out clients": int(held["client_id"].nunique()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def new_client_table(evals: Mapping[str, pd.DataFrame], models: Mapping[str, str]) -> pd.DataFrame | None:
    """Tables 3 and 4: new (held-out) clients under each start model, mean accuracy.

    ``models`` maps ``metrics/evals`` model values to column names (``TABLE3_MODELS``,
    ``TABLE4_MODELS``). Each model's number comes from the latest round that evaluated it.
    Returns None when no run evaluated any of the table's models other than plain
    ``global`` (which every run with held-out clients has, for Table 2): the table was not
    evaluated.
    """
    distinctive = [m for m in models if m != "global"]
    if not any(len(_held_out_rows(frame, m)) for frame in evals.values() for m in distinctive):
        return None
    rows = []
    for label, frame in evals.items():
        row: dict[str, Any] = {"run": label}
        clients: set[int] = set()
        for model, column in models.items():
            held = _held_out_rows(frame, model)
            row[column] = held["acc"].mean() if len(held) else np.nan
            clients |= set(held["client_id"].tolist())
        row["held-out clients"] = len(clients)
        rows.append(row)
    return pd.DataFrame(rows)


def headline_table(summaries: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """``summary.json`` headline numbers: one row per field, one column per run."""
    data = {label: [summary.get(name) for name in HEADLINE_FIELDS] for label, summary in summaries.items()}
    return pd.DataFrame(data, index=pd.Index(HEADLINE_FIELDS, name="field"))


def global_weights(aggregation: pd.DataFrame) -> pd.DataFrame:
    """Each round's global aggregation weights: index round, one column per client (NaN if absent)."""
    per_model = aggregation.groupby(["round", "i"])["global_weight_i"].first()
    return per_model.unstack("i").sort_index()


def loss_matrix(
    aggregation: pd.DataFrame, round_idx: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """One round's cross-evaluation (default: the last): losses, PC/RNC/DNC sets, baselines.

    Returns ``(loss, sets, baselines)``: ``loss`` and ``sets`` have rows i (model) and
    columns j (validation set) over the round's cohort, sorted; ``baselines[j]`` is ``L_j``.
    """
    rows = last_round(aggregation) if round_idx is None else aggregation[aggregation["round"] == round_idx]
    ids = sorted(set(rows["i"].tolist()) | set(rows["j"].tolist()))
    loss = rows.pivot(index="i", columns="j", values="loss").reindex(index=ids, columns=ids)
    sets = rows.pivot(index="i", columns="j", values="set").reindex(index=ids, columns=ids)
    baselines = rows.groupby("j")["baseline_j"].first().reindex(ids)
    return loss, sets, baselines


def phase_times(rounds: pd.DataFrame) -> pd.DataFrame:
    """Seconds per phase per round (index round); ``other`` is the round's wall time left over."""
    phases = ["train_s", "crosseval_s", "aggregate_s", "eval_s"]
    frame = rounds.set_index("round")[phases].copy()
    frame["other_s"] = (rounds.set_index("round")["wall_s"] - frame.sum(axis=1)).clip(lower=0.0)
    return frame


def _held_out_rows(evals: pd.DataFrame | None, model: str) -> pd.DataFrame:
    """Held-out clients' rows for ``model`` in the latest round that has any."""
    if evals is None or evals.empty:
        return pd.DataFrame(columns=["client_id", "acc", "micro_f1", "round"])
    rows = evals[(evals["model"] == model) & evals["held_out"].astype(bool)]
    return last_round(rows)


def _round_of(frame: pd.DataFrame) -> int | None:
    return int(frame["round"].max()) if len(frame) else None


def runs_with(frames: Mapping[str, pd.DataFrame | None]) -> dict[str, pd.DataFrame]:
    """Drop the runs whose table is missing (e.g. no aggregation table for a non-DP2FL run)."""
    return {label: frame for label, frame in frames.items() if frame is not None}
