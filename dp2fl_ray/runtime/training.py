"""The training phase of a round: slices on the pool, failures isolated to the client.

A slice whose work raises is re-run client by client, so one bad client cannot take its
slice-mates down; a client whose training raises, or whose loss or prompts are not finite,
is marked failed and kept out of the aggregate. Past ``runtime.max_failures`` failed
clients the round stops with the round and the clients named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dp2fl_ray.errors import RunError
from dp2fl_ray.runtime.pool import WorkerPool
from dp2fl_ray.runtime.work import TrainResult


@dataclass(frozen=True)
class TrainedCohort:
    """Per cohort client (cohort order); rows of failed clients are NaN."""

    task: np.ndarray  # (m, Dt)
    data: np.ndarray  # (m, Dd)
    train_loss: np.ndarray  # (m,)
    start_val_loss: np.ndarray  # (m,)
    start_test_acc: np.ndarray  # (m,)
    n_train: np.ndarray  # (m,)
    personal_task: np.ndarray | None  # (m, Dt) pFedMe's theta
    personal_data: np.ndarray | None
    status: np.ndarray  # (m,) "ok" | "error" | "non_finite"
    reason: list[str]

    @property
    def ok(self) -> np.ndarray:
        return self.status == "ok"


def train_cohort(
    pool: WorkerPool,
    submit: Callable[[Any, slice], Any],
    m: int,
    slices: list[slice],
    round_idx: int,
    cohort: np.ndarray,
    max_failures: int,
) -> TrainedCohort:
    """Train every slice; isolate errors to single clients; check every result is finite."""
    results: list[TrainResult | None] = [None] * m  # per client, as 1-row results
    reason = [""] * m
    for s, res in zip(slices, pool.map(submit, slices, return_exceptions=True)):
        if not isinstance(res, BaseException):
            for k in range(s.start, s.stop):
                results[k] = _row(res, k - s.start)
            continue
        singles = [slice(k, k + 1) for k in range(s.start, s.stop)]
        for single, one in zip(singles, pool.map(submit, singles, return_exceptions=True)):
            if isinstance(one, BaseException):
                reason[single.start] = f"{type(one).__name__}: {str(one).strip().splitlines()[-1][:300]}"
            else:
                results[single.start] = _row(one, 0)
    status = np.array(["ok" if r is not None else "error" for r in results], dtype=object)
    for k, r in enumerate(results):
        if r is not None and not (
            np.isfinite(r.train_loss).all() and np.isfinite(r.task).all() and np.isfinite(r.data).all()
        ):
            status[k], reason[k] = (
                "non_finite",
                f"training loss {float(r.train_loss[0]):.4g} or prompts not finite",
            )
    failed = np.flatnonzero(status != "ok")
    if len(failed) > max_failures or len(failed) == m:
        named = ", ".join(f"client {cohort[k]} ({reason[k]})" for k in failed[:5])
        raise RunError(
            f"round {round_idx}: {len(failed)} of {m} clients failed, more than runtime.max_failures="
            f"{max_failures}: {named}. Lower train.lr for non-finite losses, or raise runtime.max_failures"
        )
    template = next(r for r in results if r is not None)
    return TrainedCohort(
        task=_stack([r.task if r else None for r in results], template.task),
        data=_stack([r.data if r else None for r in results], template.data),
        train_loss=_stack([r.train_loss if r else None for r in results], template.train_loss),
        start_val_loss=_stack([r.start_val_loss if r else None for r in results], template.start_val_loss),
        start_test_acc=_stack([r.start_test_acc if r else None for r in results], template.start_test_acc),
        n_train=np.array([int(r.n_train[0]) if r else 0 for r in results]),
        personal_task=None if template.personal_task is None
        else _stack([r.personal_task if r else None for r in results], template.personal_task),
        personal_data=None if template.personal_data is None
        else _stack([r.personal_data if r else None for r in results], template.personal_data),
        status=status,
        reason=reason,
    )  # fmt: skip


def _row(result: TrainResult, k: int) -> TrainResult:
    """Client k of a slice's result, as a one-row result."""
    pick = slice(k, k + 1)
    return TrainResult(
        client_ids=result.client_ids[pick],
        task=result.task[pick],
        data=result.data[pick],
        train_loss=result.train_loss[pick],
        start_val_loss=result.start_val_loss[pick],
        start_test_acc=result.start_test_acc[pick],
        n_train=result.n_train[pick],
        seconds=result.seconds,
        personal_task=None if result.personal_task is None else result.personal_task[pick],
        personal_data=None if result.personal_data is None else result.personal_data[pick],
    )


def _stack(rows: list[np.ndarray | None], template: np.ndarray) -> np.ndarray:
    """Concatenate one-row arrays; a missing row (failed client) becomes NaN."""
    filler = np.full(
        (1, *template.shape[1:]), np.nan, dtype=np.float64 if template.dtype.kind != "f" else template.dtype
    )
    return np.concatenate([r if r is not None else filler for r in rows])
