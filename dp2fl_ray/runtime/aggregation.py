"""The aggregator's state and steps, without Ray: ``actors.Aggregator`` wraps it in an actor.

It holds the global rows and owns the client store; every decision is the algorithm's
(``algorithms/base.py``). A round is three calls: ``start_round`` (where each cohort client
starts), ``aggregate`` (the algorithm's server step), ``commit`` (each client's stored row and
baseline into the store). Between training and ``aggregate``, ``begin_early`` and
``absorb_losses`` let an algorithm start its server work on blocks of the cross-evaluation
as they arrive.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dp2fl_ray.algorithms.base import (
    EarlyAggregation,
    RoundResults,
    RoundStart,
    RoundUpdate,
    ServerState,
)
from dp2fl_ray.algorithms.registry import build_algorithm
from dp2fl_ray.config import AlgorithmConfig, StoreConfig
from dp2fl_ray.state import ClientState, ClientStore, InMemoryClientStore, open_store

__all__ = ["AggregatorCore", "RoundStart", "RoundUpdate"]


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
        self.store: ClientStore = open_store(store, store_uri) if store is not None else InMemoryClientStore()
        self.rounds_done = 0
        self.rounds_seen: dict[int, int] = {}
        self.early: EarlyAggregation | None = None

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
