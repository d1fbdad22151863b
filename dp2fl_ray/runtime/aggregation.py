"""The aggregator's state and steps, without Ray: ``aggregator.py`` wraps it in an actor.

It holds the global task prompt ``Pt`` and global data prompt ``PD`` and owns the client
store. A round is three calls: ``start_round`` (each cohort client's start: its stored data
prompt, or InitGlo for a first-timer), ``aggregate`` (the pure maths of
``algorithms.dp2fl``), ``commit`` (the clients' new data prompts and baselines into the store).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dp2fl_ray.algorithms.dp2fl import RoundAggregation, aggregate_round, initglo_start
from dp2fl_ray.errors import RunError
from dp2fl_ray.state import ClientState, InMemoryClientStore


@dataclass(frozen=True)
class RoundStart:
    """Where each cohort client starts a round (rows in cohort order)."""

    global_task: np.ndarray  # (Dt,)
    global_data: np.ndarray  # (Dd,)
    data: np.ndarray  # (m, Dd) stored data prompt, or the global one for first-timers (InitGlo)
    baselines: np.ndarray  # (m,) stored L_k, NaN for first-timers
    first_time: np.ndarray  # (m,) bool


class AggregatorCore:
    """Global prompts + client store; turns a round's results into the next state."""

    def __init__(self, algorithm: Any, initial_task: np.ndarray, initial_data: np.ndarray) -> None:
        self.algorithm = algorithm
        self.initial_task = np.asarray(initial_task, np.float32).copy()
        self.initial_data = np.asarray(initial_data, np.float32).copy()
        self.global_task = self.initial_task.copy()
        self.global_data = self.initial_data.copy()
        self.store = InMemoryClientStore()
        self.rounds_done = 0

    def start_round(self, cohort: np.ndarray) -> RoundStart:
        rows = self.store.get_many(cohort)
        data = np.stack(
            [initglo_start(None if r is None else r.data_prompt, self.global_data) for r in rows]
        ).astype(np.float32)  # (m, Dd)
        return RoundStart(
            global_task=self.global_task.copy(),
            global_data=self.global_data.copy(),
            data=data,
            baselines=np.array([np.nan if r is None else r.baseline for r in rows]),
            first_time=np.array([r is None for r in rows]),
        )

    def aggregate(
        self,
        loss: np.ndarray,
        task: np.ndarray,
        data: np.ndarray,
        previous_data: np.ndarray,
        baselines: np.ndarray,
        n_train: np.ndarray,
    ) -> RoundAggregation:
        """New global prompts and each client's new data prompt from the round's results."""
        if not np.all(np.isfinite(loss)) or not np.all(np.isfinite(baselines)):
            bad = np.argwhere(~np.isfinite(loss))
            raise RunError(
                f"non-finite validation losses in the cross-evaluation at (model, set) {bad[:5].tolist()}; "
                "lower train.lr or check the data"
            )
        a = self.algorithm
        result = aggregate_round(
            loss, task, data, previous_data, baselines,
            alpha=a.alpha, beta=a.beta, scheme=a.global_weights, tau=a.tau,
            sizes=np.asarray(n_train, np.float64), rnc_direction=a.rnc_direction, eps=a.eps,
        )  # fmt: skip
        self.global_task = result.global_task.astype(np.float32)
        self.global_data = result.global_data.astype(np.float32)
        return result

    def commit(self, cohort: np.ndarray, new_data: np.ndarray, new_baselines: np.ndarray) -> None:
        """Store each cohort client's data prompt and baseline ``L_k`` for its next round."""
        previous = self.store.get_many(cohort)
        states = [
            ClientState(np.asarray(new_data[k], np.float32), float(new_baselines[k]), (p.rounds_seen if p else 0) + 1)
            for k, p in enumerate(previous)
        ]
        self.store.put_many([int(c) for c in cohort], states)
        self.rounds_done += 1

    def global_prompts(self) -> tuple[np.ndarray, np.ndarray]:
        return self.global_task.copy(), self.global_data.copy()

    def initial_prompts(self) -> tuple[np.ndarray, np.ndarray]:
        return self.initial_task.copy(), self.initial_data.copy()

    def data_prompts(self, client_ids: np.ndarray) -> np.ndarray:
        """Each client's current data prompt (the global one for clients never seen)."""
        rows = self.store.get_many(client_ids)
        return np.stack([self.global_data if r is None else r.data_prompt for r in rows]).astype(np.float32)

    def store_stats(self) -> dict[str, int]:
        return {
            "clients_stored": len(self.store),
            "bytes_per_client": self.store.bytes_per_client(),
            "store_bytes": self.store.total_bytes(),
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue the run (for checkpoints)."""
        return {
            "global_task": self.global_task.copy(),
            "global_data": self.global_data.copy(),
            "initial_task": self.initial_task.copy(),
            "initial_data": self.initial_data.copy(),
            "rounds_done": self.rounds_done,
            "store": self.store.snapshot(),
        }
