"""The aggregator's state and steps, without Ray: ``actors.Aggregator`` wraps it in an actor.

It holds the global rows and owns the client store; every decision is the algorithm's
(``algorithms/base.py``). The steps are ``start_round`` (where each cohort client starts),
``aggregate`` (the algorithm's server step), ``commit`` (each client's stored row and
baseline into the store); between training and ``aggregate``, ``begin_early`` and
``absorb_losses`` let an algorithm start its server work on blocks of the cross-evaluation
as they arrive.

The runtime drives them through the *round* calls, which keep the round's rows here (the
start handed out, the trained rows, the update made) so that no row travels back and forth
through the driver: ``open_round`` -> ``take_trained`` -> (``cross_rows``,
``begin_early_round``) -> ``aggregate_round`` -> ``personal_rows`` / ``global_model_rows``
-> ``commit_round``. What they return to the driver is ids, losses and metrics only; the
rows they return are for the workers (the actor puts them into the object store).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dp2fl_ray.algorithms.base import (
    CrossEval,
    EarlyAggregation,
    RoundResults,
    RoundStart,
    RoundUpdate,
    ServerState,
)
from dp2fl_ray.algorithms.registry import build_algorithm
from dp2fl_ray.config import AlgorithmConfig, StoreConfig
from dp2fl_ray.runtime.rows import SliceRows
from dp2fl_ray.state import ClientState, ClientStore, open_store

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AggregatorCore", "Opening", "RoundStart", "RoundUpdate", "ServerRound"]


@dataclass(frozen=True)
class Opening:
    """What the driver learns of a round's start: no rows."""

    baselines: np.ndarray  # (m,) stored L_k, NaN for first-timers
    first_time: np.ndarray  # (m,) bool


@dataclass(frozen=True)
class ServerRound:
    """What the driver learns of the server step: numbers for the metrics tables, no rows."""

    early_clients: int  # clients whose server step ran during the cross-evaluation
    data_prompt_shift: np.ndarray  # (m,) |personal data row - start data row|
    aggregation: pd.DataFrame | None  # the algorithm's aggregation table rows


@dataclass
class _Round:
    """The aggregator's own state of the round under way."""

    cohort: np.ndarray  # (m,) ids, narrowed to the clients that trained by take_trained
    start: RoundStart
    results: RoundResults | None = None
    update: RoundUpdate | None = None


class AggregatorCore:
    """Global rows + client store; turns a round's results into the next state."""

    def __init__(
        self,
        algorithm: AlgorithmConfig,
        initial_task: np.ndarray,
        initial_data: np.ndarray,
        store: StoreConfig | None = None,
        store_uri: str = "store",
    ) -> None:
        self.algorithm = build_algorithm(algorithm)
        self.initial_task = np.asarray(initial_task, np.float32).copy()
        self.initial_data = np.asarray(initial_data, np.float32).copy()
        self.global_task = self.initial_task.copy()
        self.global_data = self.initial_data.copy()
        self.store: ClientStore = open_store(store if store is not None else StoreConfig(), store_uri)
        self.rounds_done = 0
        self.rounds_seen: dict[int, int] = {}
        self.early: EarlyAggregation | None = None
        self.round: _Round | None = None
        self.last_global: tuple[np.ndarray, np.ndarray] | None = None  # the last update's global rows

    @property
    def state(self) -> ServerState:
        return ServerState(self.global_task, self.global_data, self.initial_task, self.initial_data)

    def start_round(self, cohort: np.ndarray) -> RoundStart:
        rows = self.store.get_many(cohort)
        # remembered for commit, so a round reads each client's row once, not twice
        self.rounds_seen = {int(c): (r.rounds_seen if r else 0) for c, r in zip(cohort, rows)}
        task, data = self.algorithm.start_rows(
            self.state, [None if r is None else r.data_prompt for r in rows]
        )
        return RoundStart(
            global_task=self.global_task.copy(),
            global_data=self.global_data.copy(),
            task=np.asarray(task).astype(np.float32),
            data=np.asarray(data).astype(np.float32),
            baselines=np.array([np.nan if r is None else r.baseline for r in rows]),
            first_time=np.array([r is None for r in rows]),
        )

    def begin_early(self, start: RoundStart, data: np.ndarray, baselines: np.ndarray) -> None:
        """This round's trained data rows and baselines, before the cross-evaluation."""
        self.early = self.algorithm.early_aggregation(start, data, baselines)

    def absorb_losses(self, pair_i: np.ndarray, pair_j: np.ndarray, losses: np.ndarray) -> None:
        """The algorithm's early server work for one finished cross-evaluation block."""
        if self.early is not None:
            self.early.absorb(pair_i, pair_j, losses)

    def aggregate(self, results: RoundResults) -> RoundUpdate:
        """The algorithm's server step; the new global rows become this aggregator's."""
        early, self.early = self.early, None
        update = self.algorithm.aggregate(self.state, results, early)
        self.global_task = np.asarray(update.global_task, np.float32)
        self.global_data = np.asarray(update.global_data, np.float32)
        return update

    def commit(self, cohort: np.ndarray, update: RoundUpdate, new_baselines: np.ndarray) -> None:
        """Store each cohort client's row (what the algorithm keeps) and baseline ``L_k``."""
        vectors = self.algorithm.stored_rows(update)
        states = [
            ClientState(
                np.asarray(vectors[k], np.float32), float(new_baselines[k]), self.rounds_seen[int(c)] + 1
            )
            for k, c in enumerate(cohort)
        ]
        self.store.put_many([int(c) for c in cohort], states)
        self.rounds_done += 1

    # --- the round calls: the round's rows stay here ------------------------------------------

    def open_round(self, cohort: np.ndarray, slices: list[slice]) -> tuple[Opening, list[SliceRows]]:
        """Read the cohort's rows, keep the start; return the driver's facts and each slice's rows."""
        start = self.start_round(cohort)
        self.round = _Round(np.asarray(cohort), start)
        rows = [SliceRows(start.task[s], start.data[s]) for s in slices]
        return Opening(start.baselines, start.first_time), rows

    def take_trained(
        self,
        cohort: np.ndarray,
        rows: list[SliceRows],
        where: np.ndarray,
        n_train: np.ndarray,
        baselines: np.ndarray,
    ) -> None:
        """The trained rows of the clients that stay in the round.

        Args:
            cohort: ``(m',)`` ids of those clients (cohort order).
            rows: the workers' results, each a slice's (or one re-run client's) rows.
            where: ``(m', 3)``: each client's position in the opened cohort, the index into
                ``rows`` and its row there.
            n_train, baselines: ``(m',)`` training samples and the ``L_k`` the server uses.
        """
        rnd = self._current()
        keep, block, offset = where[:, 0], where[:, 1], where[:, 2]

        def gather(name: str) -> np.ndarray:
            return np.concatenate([getattr(rows[b], name)[o : o + 1] for b, o in zip(block, offset)])

        personal = rows[0].personal_task is not None and rows[0].personal_data is not None
        rnd.cohort = np.asarray(cohort)
        rnd.results = RoundResults(
            start=rnd.start.subset(keep),
            task=gather("task"),  # (m', Dt')
            data=gather("data"),  # (m', Dd')
            n_train=n_train,
            baselines=baselines,
            personal_task=gather("personal_task") if personal else None,
            personal_data=gather("personal_data") if personal else None,
        )

    def begin_early_round(self) -> None:
        """``begin_early`` on this round's own trained rows and baselines."""
        res = self._results()
        self.begin_early(res.start, res.data, res.baselines)

    def cross_rows(self, used: list[np.ndarray]) -> tuple[list[SliceRows], list[int]]:
        """The trained rows each cross-evaluation block needs (``used[b]``: sorted positions):
        distinct row sets, and which of them each block takes (blocks of an exact
        cross-evaluation all need every row: one set)."""
        res = self._results()
        distinct: dict[bytes, int] = {}
        rows: list[SliceRows] = []
        which: list[int] = []
        for u in used:
            key = np.asarray(u, np.int64).tobytes()
            if key not in distinct:
                distinct[key] = len(rows)
                rows.append(SliceRows(res.task[u], res.data[u]))
            which.append(distinct[key])
        return rows, which

    def aggregate_round(self, cross: CrossEval | None) -> ServerRound:
        """The server step on this round's results (with the cross-evaluation, if any)."""
        rnd, res = self._current(), self._results()
        results = dataclasses.replace(res, cross=cross) if cross is not None else res
        update = self.aggregate(results)
        rnd.results, rnd.update = results, update
        self.last_global = self.algorithm.global_rows(update)
        return ServerRound(
            early_clients=update.early_clients,
            data_prompt_shift=np.linalg.norm(update.personal_data - results.start.data, axis=1),
            aggregation=self.algorithm.aggregation_table(update, results, rnd.cohort),
        )

    def personal_rows(self, slices: list[slice]) -> list[SliceRows]:
        """Each slice's personal models ``(Pt^r, Pd_k^r)`` (float32), for its evaluation."""
        update = self._update()
        task, data = update.personal_task.astype(np.float32), update.personal_data.astype(np.float32)
        return [SliceRows(task[s], data[s]) for s in slices]

    def global_model_rows(self) -> SliceRows:
        """The global model's rows ``(1, Dt')``, ``(1, Dd')``, for the held-out evaluation."""
        if self.last_global is None:
            raise RuntimeError("global_model_rows() before any aggregate_round()")
        task, data = self.last_global
        return SliceRows(task[None].astype(np.float32), data[None].astype(np.float32))

    def last_global_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The last round's global rows (``Algorithm.global_rows``): the final model."""
        if self.last_global is None:
            return self.global_prompts()
        return self.last_global[0].copy(), self.last_global[1].copy()

    def commit_round(self, new_baselines: np.ndarray) -> None:
        """``commit`` this round's update for the clients that trained; the round ends."""
        rnd = self._current()
        self.commit(rnd.cohort, self._update(), new_baselines)
        self.round = None

    def _current(self) -> _Round:
        if self.round is None:
            raise RuntimeError("no round is open: call open_round() first")
        return self.round

    def _results(self) -> RoundResults:
        res = self._current().results
        if res is None:
            raise RuntimeError("the round has no trained rows yet: call take_trained() first")
        return res

    def _update(self) -> RoundUpdate:
        update = self._current().update
        if update is None:
            raise RuntimeError("the round has no update yet: call aggregate_round() first")
        return update

    def global_prompts(self) -> tuple[np.ndarray, np.ndarray]:
        return self.global_task.copy(), self.global_data.copy()

    def initial_prompts(self) -> tuple[np.ndarray, np.ndarray]:
        return self.initial_task.copy(), self.initial_data.copy()

    def store_stats(self) -> dict[str, int]:
        self.store.flush()
        return {
            "clients_stored": len(self.store),
            "bytes_per_client": self.store.bytes_per_client(),
            "store_bytes": self.store.total_bytes(),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from a ``snapshot`` (a checkpoint): global rows, store, rounds done."""
        self.global_task = np.asarray(snapshot["global_task"], np.float32).copy()
        self.global_data = np.asarray(snapshot["global_data"], np.float32).copy()
        self.initial_task = np.asarray(snapshot["initial_task"], np.float32).copy()
        self.initial_data = np.asarray(snapshot["initial_data"], np.float32).copy()
        self.rounds_done = int(snapshot["rounds_done"])
        self.store.restore_checkpoint(snapshot["store"])

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue the run (for checkpoints): plain arrays and numbers.

        The store says how its rows are recovered (``ClientStore.checkpoint``): a sharded store
        copies its shards aside on their own filesystem and names the copy.
        """
        return {
            "store": self.store.checkpoint(f"round-{self.rounds_done:05d}"),
            "global_task": self.global_task.copy(),
            "global_data": self.global_data.copy(),
            "initial_task": self.initial_task.copy(),
            "initial_data": self.initial_data.copy(),
            "rounds_done": self.rounds_done,
        }
