"""Rows of the metrics tables, built from one round's results (pure pandas, no Ray)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dp2fl_ray.algorithms.dp2fl import PeerSet, SparseRoundAggregation
from dp2fl_ray.runtime.aggregation import RoundStart, RoundUpdate
from dp2fl_ray.runtime.crosseval import CrossEval
from dp2fl_ray.runtime.training import TrainedCohort
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
    start_test_acc: (
        np.ndarray
    )  # clients that joined mid-run, first round: start model test accuracy (NaN otherwise)
    cross: CrossEval | None  # the cross-evaluation (dp2fl only)
    update: RoundUpdate
    personal_val: EvalResult  # (Pt^r, Pd_k^r) on k's val: the next baseline
    personal_test: EvalResult  # the same model on k's test split
    held_out: np.ndarray
    global_test: EvalResult | None  # (Pt^r, PD^r) on held-out clients' test
    timings: dict[str, float]
    population: int  # clients that exist this round (joins included)
    failed: int  # cohort clients whose training failed (not in the rows above)


def clients_frame(o: RoundOutcome) -> pd.DataFrame:
    """One row per cohort client."""
    t = o.personal_test
    return pd.DataFrame(
        {
            "client_id": o.cohort,
            "status": "ok",
            "error": "",
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
            "start_test_acc": o.start_test_acc,
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


def failed_clients_frame(cohort: np.ndarray, trained: TrainedCohort) -> pd.DataFrame:
    """Rows of the clients table for cohort clients whose training failed (kept out of the round)."""
    bad = np.flatnonzero(~trained.ok)
    return pd.DataFrame(
        {
            "client_id": cohort[bad],
            "status": trained.status[bad].astype(str),
            "error": [trained.reason[k] for k in bad],
            "train_loss": trained.train_loss[bad].astype(np.float64),
        }
    )


def aggregation_frame(o: RoundOutcome) -> pd.DataFrame | None:
    """One row per evaluated (model i, validation set j): enough to recompute the round's DP2FL maths.

    The set, distance and weights are those of peer i for client k = j. None for the
    algorithms without a cross-evaluation.
    """
    a, cross = o.update.dp2fl, o.cross
    if a is None or cross is None:
        return None
    i, j = cross.pair_i, cross.pair_j
    if isinstance(a, SparseRoundAggregation):
        sets, distances, raw, weights = a.sets, a.distances, a.raw_weights, a.weights
    else:
        sets, distances, raw, weights = a.sets[i, j], a.distances[i, j], a.raw_weights[i, j], a.weights[i, j]
    frame = pd.DataFrame(
        {
            "i": o.cohort[i],
            "j": o.cohort[j],
            "loss": cross.loss,
            "baseline_j": o.baselines[j],
            "set": [SET_NAMES[int(x)] for x in sets],
            "distance": distances,
            "raw_weight": raw,
            "weight": weights,
            "global_weight_i": a.global_weights[i],
        }
    )
    return frame.sort_values(["i", "j"], kind="stable").reset_index(drop=True)


def rounds_frame(o: RoundOutcome) -> pd.DataFrame:
    """One row for the round: headline numbers, population, failures, where the time went."""
    wall = o.timings["wall_s"]
    test = o.personal_test
    row = {
        "population": o.population,
        "cohort_size": len(o.cohort),
        "first_time_clients": int(o.start.first_time.sum()),
        "failed_clients": o.failed,
        "eval_models_per_client": o.cross.models_per_client if o.cross is not None else 0,
        "early_aggregated_clients": o.update.early_clients,
        "train_loss": float(np.mean(o.train_loss)),
        "val_loss": float(np.mean(o.personal_val.loss)),
        "personalized_acc": float(np.mean(test.correct / np.maximum(test.count, 1))),
        "personalized_micro_f1": float(np.nanmean(test.micro_f1)),
        "global_acc": float("nan") if o.global_test is None
        else float(np.mean(o.global_test.correct / np.maximum(o.global_test.count, 1))),
        "client_updates_per_s": len(o.cohort) / wall if wall > 0 else float("nan"),
        **o.timings,
    }  # fmt: skip
    return pd.DataFrame([row])
