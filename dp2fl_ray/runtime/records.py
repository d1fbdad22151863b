"""Rows of the metrics tables, built from one round's results (pure pandas, no Ray)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dp2fl_ray.algorithms.dp2fl import PeerSet
from dp2fl_ray.runtime.aggregation import RoundStart, RoundUpdate
from dp2fl_ray.runtime.work import EvalResult

SET_NAMES = {int(s): s.name for s in PeerSet}


@dataclass(frozen=True)
class RoundOutcome:
    """Everything one round produced, in cohort order (rows k = cohort[k])."""

    round_idx: int
    cohort: np.ndarray
    start: RoundStart
    baselines: np.ndarray  # L_k used by the aggregation
    train_loss: np.ndarray
    n_train: np.ndarray
    loss: np.ndarray | None  # (m, m) cross-evaluation, [model i, val set j] (dp2fl only)
    update: RoundUpdate
    personal_val: EvalResult  # (Pt^r, Pd_k^r) on k's val: the next baseline
    personal_test: EvalResult  # the same model on k's test split
    held_out: np.ndarray
    global_test: EvalResult | None  # (Pt^r, PD^r) on held-out clients' test
    timings: dict[str, float]


def clients_frame(o: RoundOutcome) -> pd.DataFrame:
    """One row per cohort client."""
    t = o.personal_test
    return pd.DataFrame(
        {
            "client_id": o.cohort,
            "first_time": o.start.first_time,
            "n_train": o.n_train,
            "n_val": o.personal_val.count,
            "n_test": t.count,
            "train_loss": o.train_loss,
            "baseline_loss": o.baselines,
            "val_loss": o.personal_val.loss,
            "test_loss": t.loss,
            "test_acc": t.correct / np.maximum(t.count, 1),
            "test_micro_f1": t.micro_f1,
            "test_macro_f1": t.macro_f1,
            "majority_acc": t.majority_acc,
            "data_prompt_shift": np.linalg.norm(o.update.personal_data - o.start.data, axis=1),
        }
    )


def eval_rows(client_ids: np.ndarray, model: str, held_out: bool, result: EvalResult) -> pd.DataFrame:
    """Rows of the evals table for one model evaluated on each client's test split."""
    return pd.DataFrame(
        {
            "client_id": client_ids,
            "model": model,
            "held_out": held_out,
            "loss": result.loss,
            "acc": result.correct / np.maximum(result.count, 1),
            "micro_f1": result.micro_f1,
            "n": result.count,
        }
    )


def evals_frame(o: RoundOutcome) -> pd.DataFrame:
    """One row per (client, model) evaluation on a test split."""
    frames = [eval_rows(o.cohort, "personalized", False, o.personal_test)]
    if o.global_test is not None:
        frames.append(eval_rows(o.held_out, "global", True, o.global_test))
    return pd.concat(frames, ignore_index=True)


def aggregation_frame(o: RoundOutcome) -> pd.DataFrame | None:
    """One row per (model i, validation set j): enough to recompute the round's DP2FL maths.

    The set, distance and weights are those of peer i for client k = j. None for the
    algorithms without a cross-evaluation.
    """
    m = len(o.cohort)
    a = o.update.dp2fl
    if a is None or o.loss is None:
        return None
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    i, j = i.ravel(), j.ravel()
    return pd.DataFrame(
        {
            "i": o.cohort[i],
            "j": o.cohort[j],
            "loss": o.loss[i, j],
            "baseline_j": o.baselines[j],
            "set": [SET_NAMES[int(s)] for s in a.sets[i, j]],
            "distance": a.distances[i, j],
            "raw_weight": a.raw_weights[i, j],
            "weight": a.weights[i, j],
            "global_weight_i": a.global_weights[i],
        }
    )


def rounds_frame(o: RoundOutcome, personalized_acc: float, global_acc: float, micro_f1: float) -> pd.DataFrame:
    """One row for the round: headline numbers and where the time went."""
    wall = o.timings["wall_s"]
    row = {
        "cohort_size": len(o.cohort),
        "first_time_clients": int(o.start.first_time.sum()),
        "train_loss": float(np.mean(o.train_loss)),
        "val_loss": float(np.mean(o.personal_val.loss)),
        "personalized_acc": personalized_acc,
        "personalized_micro_f1": micro_f1,
        "global_acc": global_acc,
        "client_updates_per_s": len(o.cohort) / wall if wall > 0 else float("nan"),
        **o.timings,
    }
    return pd.DataFrame([row])
