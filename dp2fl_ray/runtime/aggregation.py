"""The aggregator's state and steps, without Ray: ``actors.Aggregator`` wraps it in an actor.

It holds the global task prompt ``Pt`` and global data prompt ``PD`` and owns the client
store. A round is three calls: ``start_round`` (where each cohort client starts),
``aggregate`` (the algorithm's server maths from ``algorithms/``), ``commit`` (each client's
state and baseline into the store). For DP2FL, ``begin_early`` and ``absorb_losses`` between
training and ``aggregate`` let step 5 run on blocks of the cross-evaluation as they arrive
(``early_aggregation.py``).

What a client starts from, by algorithm:

- ``dp2fl``: the global task prompt and its stored data prompt (InitGlo for a first-timer);
- ``local``: its own stored task and data prompts (the initial ones the first time);
- ``promptfl``, ``fedprox``, ``pfedme``: the global prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dp2fl_ray.algorithms.baselines import fedavg_weights, pfedme_server
from dp2fl_ray.algorithms.dp2fl import (
    RoundAggregation,
    SparseRoundAggregation,
    aggregate_round,
    aggregate_round_sparse,
    initglo_start,
)
from dp2fl_ray.config import StoreConfig
from dp2fl_ray.errors import RunError
from dp2fl_ray.runtime.crosseval import CrossEval
from dp2fl_ray.runtime.early_aggregation import EarlyDataPrompts
from dp2fl_ray.state import ClientState, ClientStore, InMemoryClientStore, ShardedClientStore, open_store


@dataclass(frozen=True)
class RoundStart:
    """Where each cohort client starts a round (rows in cohort order)."""

    global_task: np.ndarray  # (Dt,)
    global_data: np.ndarray  # (Dd,)
    task: np.ndarray  # (m, Dt)
    data: np.ndarray  # (m, Dd)
    baselines: np.ndarray  # (m,) stored L_k, NaN for first-timers
    first_time: np.ndarray  # (m,) bool

    def subset(self, keep: np.ndarray) -> RoundStart:
        """The rows of the clients in ``keep`` (positions), e.g. those whose training succeeded."""
        return RoundStart(
            self.global_task, self.global_data, self.task[keep], self.data[keep], self.baselines[keep],
            self.first_time[keep],
        )  # fmt: skip


@dataclass(frozen=True)
class RoundUpdate:
    """The server's answer to a round: new global prompts and each client's personal model."""

    global_task: np.ndarray  # (Dt,)
    global_data: np.ndarray  # (Dd,)
    personal_task: np.ndarray  # (m, Dt) the model each client is evaluated with
    personal_data: np.ndarray  # (m, Dd)
    global_weights: np.ndarray  # (m,) each client's weight in the global prompts (NaN: none)
    dp2fl: RoundAggregation | SparseRoundAggregation | None  # DP2FL's bookkeeping, for the aggregation table
    early_clients: int = 0  # DP2FL: clients whose step 5 ran during the cross-evaluation


class AggregatorCore:
    """Global prompts + client store; turns a round's results into the next state."""

    def __init__(
        self,
        algorithm: Any,
        initial_task: np.ndarray,
        initial_data: np.ndarray,
        store: StoreConfig | None = None,
        store_uri: str = "store",
    ) -> None:
        self.algorithm = algorithm
        self.initial_task = np.asarray(initial_task, np.float32).copy()
        self.initial_data = np.asarray(initial_data, np.float32).copy()
        self.global_task = self.initial_task.copy()
        self.global_data = self.initial_data.copy()
        self.store: ClientStore = open_store(store, store_uri) if store is not None else InMemoryClientStore()
        self.rounds_done = 0
        self.rounds_seen: dict[int, int] = {}
        self.early: EarlyDataPrompts | None = None

    @property
    def name(self) -> str:
        return str(self.algorithm.name)

    def start_round(self, cohort: np.ndarray) -> RoundStart:
        rows = self.store.get_many(cohort)
        # remembered for commit, so a round reads each client's row once, not twice
        self.rounds_seen = {int(c): (r.rounds_seen if r else 0) for c, r in zip(cohort, rows)}
        m, dt = len(rows), len(self.global_task)
        task = np.repeat(self.global_task[None], m, axis=0)  # (m, Dt)
        data = np.repeat(self.global_data[None], m, axis=0)  # (m, Dd)
        if self.name == "dp2fl":
            data = np.stack(
                [initglo_start(None if r is None else r.data_prompt, self.global_data) for r in rows]
            )
        elif self.name == "local":
            own = [
                np.concatenate([self.initial_task, self.initial_data]) if r is None else r.data_prompt
                for r in rows
            ]
            task, data = np.stack([v[:dt] for v in own]), np.stack([v[dt:] for v in own])
        return RoundStart(
            global_task=self.global_task.copy(),
            global_data=self.global_data.copy(),
            task=task.astype(np.float32),
            data=data.astype(np.float32),
            baselines=np.array([np.nan if r is None else r.baseline for r in rows]),
            first_time=np.array([r is None for r in rows]),
        )

    def begin_early(self, start: RoundStart, data: np.ndarray, baselines: np.ndarray) -> None:
        """DP2FL: this round's trained data prompts and baselines, before the cross-evaluation."""
        self.early = EarlyDataPrompts.start(data, start.data, baselines, self.algorithm)

    def absorb_losses(self, pair_i: np.ndarray, pair_j: np.ndarray, losses: np.ndarray) -> None:
        """DP2FL: step 5 for the validation sets of one finished cross-evaluation block."""
        if self.early is not None:
            self.early.absorb(pair_i, pair_j, losses)

    def aggregate(
        self,
        start: RoundStart,
        task: np.ndarray,
        data: np.ndarray,
        n_train: np.ndarray,
        cross: CrossEval | None = None,
        baselines: np.ndarray | None = None,
        personal: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> RoundUpdate:
        """New global prompts and each client's personal model from the trained rows.

        Args:
            start: this round's ``start_round`` answer.
            task, data: trained rows ``(m, Dt)``, ``(m, Dd)`` (pFedMe: the local copies ``w``).
            n_train: training samples per client (FedAvg weights).
            cross: the cross-evaluation (dp2fl only); baselines: each client's ``L_k``.
            personal: pFedMe's personalised rows ``theta``.
        """
        m, name = len(task), self.name
        if name == "dp2fl":
            return self._dp2fl(start, task, data, n_train, cross, baselines)
        if name == "local":
            update = RoundUpdate(self.global_task, self.global_data, task, data, np.full(m, np.nan), None)
            return update
        weights = fedavg_weights(n_train)
        if name == "pfedme":
            if personal is None:
                raise ValueError("pfedme needs the personalised rows")
            beta = self.algorithm.server_beta
            self.global_task = pfedme_server(self.global_task, task, n_train, beta).astype(np.float32)
            self.global_data = pfedme_server(self.global_data, data, n_train, beta).astype(np.float32)
            return RoundUpdate(self.global_task, self.global_data, personal[0], personal[1], weights, None)
        self.global_task = (weights @ task).astype(np.float32)  # promptfl, fedprox
        self.global_data = (weights @ data).astype(np.float32)
        personal_task = np.repeat(self.global_task[None], m, axis=0)
        personal_data = np.repeat(self.global_data[None], m, axis=0)
        return RoundUpdate(self.global_task, self.global_data, personal_task, personal_data, weights, None)

    def _dp2fl(
        self,
        start: RoundStart,
        task: np.ndarray,
        data: np.ndarray,
        n_train: np.ndarray,
        cross: CrossEval | None,
        baselines: np.ndarray | None,
    ) -> RoundUpdate:
        if cross is None or baselines is None:
            raise ValueError("dp2fl needs the cross-evaluation and the baselines")
        if not np.all(np.isfinite(cross.loss)) or not np.all(np.isfinite(baselines)):
            bad = [
                (int(cross.pair_i[p]), int(cross.pair_j[p]))
                for p in np.flatnonzero(~np.isfinite(cross.loss))[:5]
            ]
            raise RunError(
                f"non-finite validation losses in the cross-evaluation at (model, set) {bad} or in the "
                "baselines; lower train.lr or check the data"
            )
        a = self.algorithm
        options = dict(
            alpha=a.alpha, beta=a.beta, scheme=a.global_weights, tau=a.tau,
            sizes=np.asarray(n_train, np.float64), rnc_direction=a.rnc_direction, eps=a.eps,
        )  # fmt: skip
        m = len(task)
        early, self.early = self.early, None
        done = early.done if early is not None and early.matches(data, start.data, baselines) else {}
        result: RoundAggregation | SparseRoundAggregation
        if cross.is_exact(m):
            result = aggregate_round(cross.dense(m), task, data, start.data, baselines, **options, done=done)
        else:
            result = aggregate_round_sparse(
                cross.pair_i,
                cross.pair_j,
                cross.loss,
                task,
                data,
                start.data,
                baselines,
                **options,
                done=done,
            )
        self.global_task = result.global_task.astype(np.float32)
        self.global_data = result.global_data.astype(np.float32)
        personal_task = np.repeat(self.global_task[None], len(task), axis=0)
        return RoundUpdate(
            self.global_task, self.global_data, personal_task, result.new_data.astype(np.float32),
            result.global_weights, result, len(done),
        )  # fmt: skip

    def commit(self, cohort: np.ndarray, update: RoundUpdate, new_baselines: np.ndarray) -> None:
        """Store each cohort client's state and baseline ``L_k`` for its next round.

        The stored vector is the client's data prompt; for ``local`` (which keeps its own
        task prompt too) it is the task and data prompts concatenated.
        """
        if self.name == "local":
            vectors = np.concatenate([update.personal_task, update.personal_data], axis=1)
        else:
            vectors = update.personal_data
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
        """Continue from a ``snapshot`` (a checkpoint): global prompts, store, rounds done."""
        self.global_task = np.asarray(snapshot["global_task"], np.float32).copy()
        self.global_data = np.asarray(snapshot["global_data"], np.float32).copy()
        self.initial_task = np.asarray(snapshot["initial_task"], np.float32).copy()
        self.initial_data = np.asarray(snapshot["initial_data"], np.float32).copy()
        self.rounds_done = int(snapshot["rounds_done"])
        if isinstance(self.store, ShardedClientStore):
            self.store.restore_copy(Path(snapshot["store_copy"]).name)
        else:
            self.store.restore(snapshot["store"])

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue the run (for checkpoints).

        A sharded store is not copied into the snapshot: its shards are copied aside on their
        own filesystem (``save_copy``) and the snapshot names the copy.
        """
        if isinstance(self.store, ShardedClientStore):
            store: dict[str, Any] = {"store_copy": self.store.save_copy(f"round-{self.rounds_done:05d}")}
        else:
            store = {"store": self.store.snapshot()}
        return {
            **store,
            "global_task": self.global_task.copy(),
            "global_data": self.global_data.copy(),
            "initial_task": self.initial_task.copy(),
            "initial_data": self.initial_data.copy(),
            "rounds_done": self.rounds_done,
        }
