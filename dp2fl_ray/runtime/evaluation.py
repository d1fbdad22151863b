"""A round's evaluation work on the worker pool: every kind of (model, data set) pairing.

- ``cross``: the DP2FL cross-evaluation (each model on the cohort's validation sets);
- ``own``: each client's own model on its own split (personalised accuracy, next baselines);
- ``one_model``: a single model on many clients' test splits (global model, zero-shot);
- ``new_clients``: the paper's Tables 3 and 4 on the held-out clients.

Results come back in client order whatever order the slices finish in. In a round the
model rows come by reference from the aggregator (``RowsRef``: one object per slice or
block), never through the driver; the array forms remain for callers that hold rows
(zero-shot and new-client evaluations of one global model, tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dp2fl_ray.runtime import records
from dp2fl_ray.runtime.cohort import cut_slices
from dp2fl_ray.runtime.crosseval import CrossEval, block_pairs, candidate_models, models_per_client
from dp2fl_ray.runtime.movement import RowsRef
from dp2fl_ray.runtime.pool import WorkerPool
from dp2fl_ray.runtime.results import EvalResult, TrainResult


class Evaluation:
    """Evaluation requests cut into slices and run on the pool."""

    def __init__(self, pool: WorkerPool, clients_per_slice: int, seed: int, max_eval_models: int) -> None:
        self.pool = pool
        self.clients_per_slice = clients_per_slice
        self.seed = seed
        self.max_eval_models = max_eval_models

    def slices(self, n: int) -> list[slice]:
        return cut_slices(n, len(self.pool), self.clients_per_slice)

    def cross(
        self,
        r: int,
        cohort: np.ndarray,
        rows_for: Callable[[list[np.ndarray]], list[RowsRef]],
        on_block: Callable[[np.ndarray, np.ndarray, np.ndarray], object] | None = None,
    ) -> CrossEval:
        """Validation losses of the cohort's models on the cohort's validation sets: every pair,
        or each client's candidates when the cohort is large (see ``crosseval.py``).

        ``rows_for(used)`` gives, for each block, a reference to the trained rows of the models
        its pairs use (``used[b]``, sorted cohort positions; the aggregator's ``cross_rows``), so
        a block receives only the models it evaluates. ``on_block(pair_i, pair_j, losses)``
        (cohort positions, float64 losses) is called as each block of validation sets finishes,
        with all of those sets' pairs, so their clients' aggregation can start while other
        blocks are still evaluated.
        """
        m = len(cohort)
        n = models_per_client(m, self.max_eval_models)
        candidates = candidate_models(self.seed, r, cohort, n)
        slices = self.slices(m)
        plans = [block_pairs(candidates, s) for s in slices]
        pair_i = [p[:, 0] for p in plans]
        pair_j = [p[:, 1] + s.start for p, s in zip(plans, slices)]
        used = [np.unique(p[:, 0]) for p in plans]
        local = [np.stack([np.searchsorted(u, p[:, 0]), p[:, 1]], axis=1) for u, p in zip(used, plans)]
        refs = rows_for(used)  # (P, 2) pairs above: (row of the block's models, set)

        def finished(b: int, res: EvalResult) -> None:
            if on_block is not None:
                on_block(pair_i[b], pair_j[b], res.loss.astype(np.float64))

        ledger = self.pool.ledger
        results: list[EvalResult] = self.pool.map(
            lambda w, b: ledger.submit(w.evaluate_rows, refs[b], cohort[slices[b]], "val", local[b]),
            list(range(len(slices))),
            on_result=finished,
        )
        losses = np.concatenate([res.loss for res in results]).astype(np.float64)
        return CrossEval(np.concatenate(pair_i), np.concatenate(pair_j), losses, n)

    def together(self, requests: Sequence[Request]) -> list[EvalResult | None]:
        """Several evaluations in one pass over the pool: their slices share one queue, so a
        worker done with one evaluation's slice starts another's instead of waiting at a
        barrier. One result per request output (``Request.outputs``: one, or several that one
        call per slice gives), in request order (None for a request of 0 clients)."""
        items = [(r, s) for r, req in enumerate(requests) for s in self.slices(req.clients)]
        ledger = self.pool.ledger
        results: list[Any] = self.pool.map(
            lambda w, item: ledger.submit(*requests[item[0]].args(w, item[1])), items
        )
        out: list[EvalResult | None] = []
        for k, req in enumerate(requests):
            mine = [res for (r, _), res in zip(items, results) if r == k]
            for o in range(req.outputs):
                part = [res[o] for res in mine] if req.listed else mine
                out.append(concat_evals(part) if req.clients else None)
        return out

    def own(
        self, clients: np.ndarray, task: np.ndarray, data: np.ndarray, split: str, keep: bool
    ) -> EvalResult:
        """Each client's own model row on its own split (pairs (k, k))."""
        result = self.together([own_request(clients, task, data, split, keep)])[0]
        if result is None:
            raise ValueError("own(): no clients to evaluate")
        return result

    def one_model(self, task: np.ndarray, data: np.ndarray, clients: np.ndarray) -> EvalResult | None:
        """One model on the test splits of ``clients`` (None when there are none)."""
        return self.together([one_model_request(task, data, clients)])[0]

    def new_clients(
        self,
        initial: tuple[np.ndarray, np.ndarray],
        final: tuple[np.ndarray, np.ndarray],
        held_out: np.ndarray,
    ) -> pd.DataFrame:
        """The paper's Tables 3 and 4 on the held-out clients, after the last round.

        Init ``(Pt^0, PD^0)``, InitGlo ``(Pt^R, PD^0)`` and Global ``(Pt^R, PD^R)``, evaluated on
        their test splits without training (Table 3), and after one round of local training
        from each start (Table 4: ``*_1round``; local training only, no aggregation). The
        untrained Global rows are already in the round's rows (``global``) and not repeated.
        """
        starts = {"init": initial, "initglo": (final[0], initial[1]), "global": final}
        n, frames = len(held_out), []
        no_baseline = np.zeros(n, bool)
        for name, (task, data) in starts.items():
            t_rows = np.repeat(np.asarray(task, np.float32)[None], n, axis=0)  # (n, Dt)
            d_rows = np.repeat(np.asarray(data, np.float32)[None], n, axis=0)  # (n, Dd)
            if name != "global":
                frames.append(
                    records.eval_rows(held_out, name, True, self.own(held_out, t_rows, d_rows, "test", True))
                )
            trained: list[TrainResult] = self.pool.map(
                self._train_from(held_out, t_rows, d_rows, no_baseline), self.slices(n)
            )
            t1, d1 = np.concatenate([x.task for x in trained]), np.concatenate([x.data for x in trained])
            after = self.own(held_out, t1, d1, "test", True)
            frames.append(records.eval_rows(held_out, f"{name}_1round", True, after))
        return pd.concat(frames, ignore_index=True)

    def _train_from(
        self, clients: np.ndarray, task: np.ndarray, data: np.ndarray, need: np.ndarray
    ) -> Callable[[Any, slice], Any]:
        """A pool submitter: one round of local training of ``clients[s]`` from the given rows."""
        ledger = self.pool.ledger
        return lambda w, s: ledger.submit(w.train_slice, 0, clients[s], task[s], data[s], need[s])


@dataclass(frozen=True)
class Request:
    """One evaluation over ``clients`` clients: ``args(worker, slice)`` is the remote method and
    its arguments for a slice of it (submitted through the pool's ledger, ``movement.py``); a
    call answers with one ``EvalResult``, or (``listed``) with a list of ``outputs`` of them."""

    clients: int
    args: Callable[[Any, slice], tuple[Any, ...]]
    outputs: int = 1
    listed: bool = False


def own_request(clients: np.ndarray, task: np.ndarray, data: np.ndarray, split: str, keep: bool) -> Request:
    """Each client's own model row on its own split (pairs (k, k))."""
    return Request(
        len(clients),
        lambda w, s: (w.evaluate, task[s], data[s], clients[s], split, _diagonal(s.stop - s.start), keep),
    )


def own_rows_request(
    clients: np.ndarray, rows: dict[int, RowsRef], splits: Sequence[tuple[str, bool]]
) -> Request:
    """Each client's own model on each of ``splits`` (``(split, keep predictions)``), the model
    rows of each slice by reference (``rows[slice.start]``; the slices are
    ``Evaluation.slices(len(clients))``): one call per slice for all the splits, so a slice's
    rows cross to a worker once. One output per split."""
    wanted = list(splits)
    return Request(
        len(clients),
        lambda w, s: (w.evaluate_own, rows[s.start], clients[s], wanted),
        outputs=len(wanted),
        listed=True,
    )


def one_model_request(task: np.ndarray, data: np.ndarray, clients: np.ndarray) -> Request:
    """One model on the test splits of ``clients``."""
    t, d = task[None].astype(np.float32), data[None].astype(np.float32)
    return Request(
        len(clients),
        lambda w, s: (w.evaluate, t, d, clients[s], "test", _to_model_zero(s.stop - s.start), True),
    )


def one_model_rows_request(model: RowsRef, clients: np.ndarray) -> Request:
    """``one_model_request`` with the model's rows ``(1, Dt')``, ``(1, Dd')`` by reference."""
    return Request(
        len(clients),
        lambda w, s: (w.evaluate_rows, model, clients[s], "test", _to_model_zero(s.stop - s.start), True),
    )


def _diagonal(n: int) -> np.ndarray:
    return np.stack([np.arange(n), np.arange(n)], axis=1)  # (n, 2)


def _to_model_zero(n: int) -> np.ndarray:
    return np.stack([np.zeros(n, np.int64), np.arange(n)], axis=1)  # (n, 2)


def concat_evals(results: Sequence[EvalResult]) -> EvalResult:
    """Slice results, concatenated in slice order."""
    return EvalResult(
        loss=np.concatenate([r.loss for r in results]),
        correct=np.concatenate([r.correct for r in results]),
        count=np.concatenate([r.count for r in results]),
        micro_f1=np.concatenate([r.micro_f1 for r in results]),
        macro_f1=np.concatenate([r.macro_f1 for r in results]),
        majority_acc=np.concatenate([r.majority_acc for r in results]),
        seconds=float(sum(r.seconds for r in results)),
    )


def mean_acc(result: EvalResult | None) -> float:
    """Mean over clients of per-client accuracy (the paper averages clients, not samples)."""
    if result is None:
        return float("nan")
    return float(np.mean(result.correct / np.maximum(result.count, 1)))
