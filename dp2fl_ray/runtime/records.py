"""Rows of the metrics tables, built from one round's results (pure pandas, no Ray)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dp2fl_ray.algorithms.base import CrossEval
from dp2fl_ray.runtime.aggregation import ServerRound
from dp2fl_ray.runtime.results import EvalResult
from dp2fl_ray.runtime.training import TrainedCohort


@dataclass(frozen=True)
class RoundOutcome:
    """Everything the driver knows of one round, in cohort order (rows k = cohort[k]): ids,
    losses and metrics; the rows stayed with the aggregator and the workers."""

    round_idx: int
    cohort: np.ndarray
    first_time: np.ndarray  # (m,) bool: the client's first round
    n_train: np.ndarray  # (m,)
    baselines: np.ndarray  # (m,) L_k the server step used
    cross: CrossEval | None  # the cross-evaluation, for methods that ask for one
    train_loss: np.ndarray
    start_test_acc: np.ndarray  # clients that joined mid-run, first round: start model test accuracy
    server: ServerRound  # the aggregator's numbers of its step (early clients, shifts, its table)
    personal_val: EvalResult | None  # (Pt^r, Pd_k^r) on k's val: the next baseline (None: not run)
    personal_test: EvalResult | None  # the same model on k's test split (None: round not evaluated)
    held_out: np.ndarray
    global_test: EvalResult | None  # the global model on held-out clients' test
    timings: dict[str, float]
    population: int  # clients that exist this round (joins included)
    failed: int  # cohort clients whose training failed (not in the rows above)
    evaluated: bool = True  # False on rounds that federation.eval_every skips


def _per_client(result: EvalResult | None, m: int) -> dict[str, np.ndarray]:
    """An evaluation's per-client columns; NaN (count 0) where it did not run."""
    if result is None:
        nan = np.full(m, np.nan)
        return {
            "loss": np.full(m, np.nan, np.float32),  # the dtype of a measured loss
            "acc": nan,
            "count": np.zeros(m, np.int64),
            "micro": nan,
            "macro": nan,
            "maj": nan,
        }
    return {
        "loss": result.loss,
        "acc": result.correct / np.maximum(result.count, 1),
        "count": result.count,
        "micro": result.micro_f1,
        "macro": result.macro_f1,
        "maj": result.majority_acc,
    }


def clients_frame(o: RoundOutcome) -> pd.DataFrame:
    """One row per cohort client."""
    m = len(o.cohort)
    v, t = _per_client(o.personal_val, m), _per_client(o.personal_test, m)
    return pd.DataFrame(
        {
            "client_id": o.cohort,
            "status": "ok",
            "error": "",
            "first_time": o.first_time,
            "n_train": o.n_train,
            "n_val": v["count"],
            "n_test": t["count"],
            "train_loss": o.train_loss,
            "baseline_loss": o.baselines,
            "val_loss": v["loss"],
            "test_loss": t["loss"],
            "test_acc": t["acc"],
            "test_micro_f1": t["micro"],
            "test_macro_f1": t["macro"],
            "majority_acc": t["maj"],
            "start_test_acc": o.start_test_acc,
            "data_prompt_shift": o.server.data_prompt_shift,
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
    frames = [] if o.personal_test is None else [eval_rows(o.cohort, "personalized", False, o.personal_test)]
    if o.global_test is not None:
        frames.append(eval_rows(o.held_out, "global", True, o.global_test))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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


def rounds_frame(o: RoundOutcome, moved: dict[str, int] | None = None) -> pd.DataFrame:
    """One row for the round: headline numbers, population, failures, where the time went, and
    ``moved`` (``movement.Ledger.take``: ``moved_bytes``, ``driver_bytes``)."""
    wall = o.timings["wall_s"]
    m = len(o.cohort)
    test, val = _per_client(o.personal_test, m), _per_client(o.personal_val, m)
    row = {
        "population": o.population,
        "cohort_size": len(o.cohort),
        "first_time_clients": int(o.first_time.sum()),
        "failed_clients": o.failed,
        "eval_models_per_client": o.cross.models_per_client if o.cross is not None else 0,
        "early_aggregated_clients": o.server.early_clients,
        "train_loss": float(np.mean(o.train_loss)),
        "evaluated": o.evaluated,
        "val_loss": float(np.mean(val["loss"])),
        "personalized_acc": float(np.mean(test["acc"])),
        "personalized_micro_f1": float("nan") if o.personal_test is None
        else float(np.nanmean(test["micro"])),
        "global_acc": float("nan") if o.global_test is None
        else float(np.mean(o.global_test.correct / np.maximum(o.global_test.count, 1))),
        "client_updates_per_s": len(o.cohort) / wall if wall > 0 else float("nan"),
        **o.timings,
        **(moved or {}),
    }  # fmt: skip
    return pd.DataFrame([row])
