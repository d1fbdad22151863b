"""The only Ray actors: backbone workers and the aggregator, thin shells over the cores.

The shells add what needs Ray: the worker's training answers with two objects (metadata for
the driver, rows for the aggregator), and the aggregator puts the rows it hands out into the
object store and fetches the workers' rows itself (``movement.py``), so the cores stay plain.
"""

from __future__ import annotations

import os
from typing import Any, cast

import numpy as np
import ray
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from dp2fl_ray.runtime.aggregation import AggregatorCore, Opening
from dp2fl_ray.runtime.movement import RowsRef, put_rows
from dp2fl_ray.runtime.work import SliceRows, TrainMeta, WorkerCore


@ray.remote
class BackboneWorker(WorkerCore):
    """Loads the backbone and data once; runs slices of training and evaluation."""

    def ping(self) -> str:
        return ray.get_runtime_context().get_node_id()

    @ray.method(num_returns=2)  # type: ignore[misc]
    def train_rows(self, *args: Any) -> tuple[TrainMeta, SliceRows]:
        return WorkerCore.train_rows(self, *args)


@ray.remote
class Aggregator(AggregatorCore):
    """Holds the global prompts, the client store and the round's rows; pinned to the driver's node."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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


def start_workers(config_dict: dict[str, Any], runtime: Any, run_id: str) -> list[Any]:
    """The backbone worker pool: ``runtime.workers`` actors with the configured resources,
    named ``dp2fl:<run_id>:worker-<i>`` (so ``ray.get_actor`` finds them)."""
    threads = max(1, int(runtime.cpus_per_worker))
    options = {
        "num_cpus": runtime.cpus_per_worker,
        "num_gpus": runtime.gpus_per_worker,
        "max_restarts": runtime.max_retries,  # a dead worker comes back; its slice is re-run
        "runtime_env": {"env_vars": forwarded_env()},
    }
    return [
        cast(Any, BackboneWorker)
        .options(  # ray.remote's class decorator is typed as the class itself
            name=f"dp2fl:{run_id}:worker-{i}", scheduling_strategy=worker_placement(i), **options
        )
        .remote(config_dict, threads)
        for i in range(runtime.workers)
    ]


def forwarded_env() -> dict[str, str]:
    """The driver's ``DP2FL_*`` and ``AWS_*`` variables, for actors: a Ray node's processes
    keep the environment the node started with, and the client store on ``s3://`` needs the
    driver's endpoint and credentials (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...)."""
    return {k: v for k, v in os.environ.items() if k.startswith(("DP2FL_", "AWS_"))}


def worker_placement(i: int) -> Any:
    """Where worker ``i`` goes: spread over the cluster's nodes; or, when the driver runs inside
    a placement group (a Ray Tune trial), into bundle ``i + 1`` of it (bundle 0 is the trial
    driver's), so a trial uses exactly what it reserved and concurrent trials never
    oversubscribe a node. An explicit strategy such as SPREAD would escape the group."""
    group = get_current_placement_group()
    if group is None:
        return "SPREAD"
    index = i + 1 if i + 1 < group.bundle_count else -1  # -1: any bundle with room
    return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)


def start_aggregator(
    algorithm: Any,
    initial_task: np.ndarray,
    initial_data: np.ndarray,
    store: Any,
    store_uri: str,
    run_id: str,
) -> Any:
    """The aggregator actor ``dp2fl:<run_id>:aggregator``, on the driver's node (soft=False:
    it must not wander)."""
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
        .remote(algorithm, initial_task, initial_data, store, store_uri)
    )
