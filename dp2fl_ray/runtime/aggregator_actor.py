"""The aggregator actor: a thin shell over ``aggregation.AggregatorCore``.

The shell puts the rows it hands out into the object store and fetches the workers' rows
itself (``movement.py``). It lives apart from the worker actor because an actor's process
imports its class's module: this one needs no backbone, so it does not import torch's models
or transformers, which would cost seconds of start-up in every run.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from dp2fl_ray.runtime.aggregation import AggregatorCore, Opening
from dp2fl_ray.runtime.movement import RowsRef, put_rows
from dp2fl_ray.runtime.placement import forwarded_env


@ray.remote
class Aggregator(AggregatorCore):
    """Holds the global prompts, the client store and the round's rows; pinned to the driver's node."""

    def __init__(self, algorithm: Any, initial_rows: list[Any], store: Any, store_uri: str) -> None:
        """``initial_rows``: ``[ref]``, the reference to a worker's ``initial_rows()`` (task, data),
        wrapped so that Ray does not resolve it before creating this actor: the process starts
        and imports while the workers still build their backbones, and waits here for the rows."""
        initial_task, initial_data = ray.get(initial_rows[0])
        super().__init__(algorithm, initial_task, initial_data, store, store_uri)
        self._held: list[RowsRef] = []  # this round's objects in the store (see _keep)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def open_round_rows(self, cohort: np.ndarray, slices: list[slice]) -> tuple[Opening, list[RowsRef]]:
        """``open_round``, with each slice's start rows put into the object store."""
        opening, rows = self.open_round(cohort, slices)
        return opening, self._keep([put_rows(r) for r in rows])

    def take_trained_refs(
        self,
        cohort: np.ndarray,
        refs: list[Any],
        where: np.ndarray,
        n_train: np.ndarray,
        baselines: np.ndarray,
    ) -> None:
        """``take_trained`` from the workers' row references, fetched here (not by the driver)."""
        self.take_trained(cohort, ray.get(refs), where, n_train, baselines)

    def cross_rows_refs(self, used: list[np.ndarray]) -> list[RowsRef]:
        """``cross_rows`` in the object store; blocks that need the same rows share one object."""
        rows, which = self.cross_rows(used)
        refs = [put_rows(r) for r in rows]
        return self._keep([refs[w] for w in which])

    def personal_rows_refs(self, slices: list[slice]) -> list[RowsRef]:
        return self._keep([put_rows(r) for r in self.personal_rows(slices)])

    def global_model_ref(self) -> RowsRef:
        return self._keep([put_rows(self.global_model_rows())])[0]

    def commit_round(self, new_baselines: np.ndarray) -> None:
        AggregatorCore.commit_round(self, new_baselines)
        self._held = []  # the round's objects can go

    def _keep(self, refs: list[RowsRef]) -> list[RowsRef]:
        """Hold this round's references until commit, so their objects outlive the hand-over."""
        self._held = [*self._held, *refs]
        return refs


def start_aggregator(
    algorithm: Any,
    initial_rows: Any,
    store: Any,
    store_uri: str,
    run_id: str,
) -> Any:
    """The aggregator actor ``dp2fl:<run_id>:aggregator``, on the driver's node (soft=False:
    it must not wander). ``initial_rows`` is the object reference of a worker's
    ``initial_rows`` call, which the aggregator fetches itself once it has started."""
    here = ray.get_runtime_context().get_node_id()
    env = forwarded_env()  # the store's S3 endpoint and credentials
    return (
        cast(Any, Aggregator)
        .options(  # as above
            name=f"dp2fl:{run_id}:aggregator",
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
            **({"runtime_env": {"env_vars": env}} if env else {}),
        )
        .remote(algorithm, [initial_rows], store, store_uri)
    )
