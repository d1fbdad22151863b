"""The training phase of a round: slices on the pool, failures isolated to the client.

The trained rows stay out of the driver: each slice's work answers with its metadata (read
here) and a reference to its rows (handed to the aggregator). A slice whose work raises is
re-run client by client, so one bad client cannot take its slice-mates down; a client
whose training raises, or whose loss or prompts are not finite, is marked failed and kept
out of the aggregate. Past ``runtime.max_failures`` failed clients the round stops with the
round and the clients named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dp2fl_ray.errors import RunError
from dp2fl_ray.runtime.pool import WorkerPool
from dp2fl_ray.runtime.results import TrainMeta


@dataclass(frozen=True)
class TrainedCohort:
    """Per cohort client (cohort order); numbers of failed clients are NaN.

    The trained rows stay in the object store: ``refs`` are the workers' row objects and
    ``where[k] = (index into refs, row)`` says where client k's rows are (-1, -1 when it failed).
    """

    train_loss: np.ndarray  # (m,)
    start_val_loss: np.ndarray  # (m,)
    start_test_acc: np.ndarray  # (m,)
    n_train: np.ndarray  # (m,)
    status: np.ndarray  # (m,) "ok" | "error" | "non_finite"
    reason: list[str]
    refs: list[Any]  # ray.ObjectRef of a work.SliceRows
    ref_bytes: list[int]  # (len(refs),) bytes of each
    where: np.ndarray  # (m, 2)

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
    """Train every slice; isolate errors to single clients; check every result is finite.

    ``submit(worker, s)`` starts the training of cohort positions ``s`` and returns the two
    references of ``train_rows`` (metadata, rows); only the metadata is fetched here.
    """
    metas: list[TrainMeta | None] = [None] * m  # per client, as 1-row metadata
    reason = [""] * m
    refs: list[Any] = []
    ref_bytes: list[int] = []
    where = np.full((m, 2), -1, np.int64)

    def took(s: slice, meta: TrainMeta, rows_ref: Any) -> None:
        for k in range(s.start, s.stop):
            metas[k] = _row(meta, k - s.start)
            where[k] = (len(refs), k - s.start)
        refs.append(rows_ref)
        ref_bytes.append(meta.row_bytes)

    for s, res in zip(slices, pool.map(submit, slices, return_exceptions=True)):
        if not isinstance(res, BaseException):
            took(s, *res)
            continue
        singles = [slice(k, k + 1) for k in range(s.start, s.stop)]
        for single, one in zip(singles, pool.map(submit, singles, return_exceptions=True)):
            if isinstance(one, BaseException):
                reason[single.start] = f"{type(one).__name__}: {str(one).strip().splitlines()[-1][:300]}"
            else:
                took(single, *one)
    status = np.array(["ok" if r is not None else "error" for r in metas], dtype=object)
    for k, r in enumerate(metas):
        if r is not None and not (np.isfinite(r.train_loss).all() and r.rows_finite.all()):
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
    template = next(r for r in metas if r is not None)
    return TrainedCohort(
        train_loss=_stack([r.train_loss if r else None for r in metas], template.train_loss),
        start_val_loss=_stack([r.start_val_loss if r else None for r in metas], template.start_val_loss),
        start_test_acc=_stack([r.start_test_acc if r else None for r in metas], template.start_test_acc),
        n_train=np.array([int(r.n_train[0]) if r else 0 for r in metas]),
        status=status,
        reason=reason,
        refs=refs,
        ref_bytes=ref_bytes,
        where=where,
    )


def _row(meta: TrainMeta, k: int) -> TrainMeta:
    """Client k of a slice's metadata, as one-row metadata."""
    pick = slice(k, k + 1)
    return TrainMeta(
        client_ids=meta.client_ids[pick],
        train_loss=meta.train_loss[pick],
        start_val_loss=meta.start_val_loss[pick],
        start_test_acc=meta.start_test_acc[pick],
        n_train=meta.n_train[pick],
        rows_finite=meta.rows_finite[pick],
        row_bytes=meta.row_bytes,
        seconds=meta.seconds,
    )


def _stack(rows: list[np.ndarray | None], template: np.ndarray) -> np.ndarray:
    """Concatenate one-row arrays; a missing row (failed client) becomes NaN."""
    filler = np.full(
        (1, *template.shape[1:]), np.nan, dtype=np.float64 if template.dtype.kind != "f" else template.dtype
    )
    return np.concatenate([r if r is not None else filler for r in rows])
