"""The only Ray actors: backbone workers and the aggregator, thin shells over the cores."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import ray
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from dp2fl_ray.runtime.aggregation import AggregatorCore
from dp2fl_ray.runtime.work import WorkerCore


@ray.remote
class BackboneWorker(WorkerCore):
    """Loads the backbone and data once; runs slices of training and evaluation."""

    def ping(self) -> str:
        return ray.get_runtime_context().get_node_id()


@ray.remote
class Aggregator(AggregatorCore):
    """Holds the global prompts and the client store; pinned to the driver's node."""

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()


def start_workers(config_dict: dict[str, Any], runtime: Any, run_id: str) -> list[Any]:
    """The backbone worker pool: ``runtime.workers`` actors with the configured resources,
    named ``dp2fl:<run_id>:worker-<i>`` (so ``ray.get_actor`` finds them)."""
    threads = max(1, int(runtime.cpus_per_worker))
    options = dict(
        num_cpus=runtime.cpus_per_worker,
        num_gpus=runtime.gpus_per_worker,
        max_restarts=runtime.max_retries,  # a dead worker comes back; its slice is re-run
        runtime_env={"env_vars": forwarded_env()},
    )
    return [
        BackboneWorker.options(
            name=f"dp2fl:{run_id}:worker-{i}", scheduling_strategy=worker_placement(i), **options
        ).remote(config_dict, threads)
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
    return Aggregator.options(
        name=f"dp2fl:{run_id}:aggregator",
        num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
        **({"runtime_env": {"env_vars": env}} if env else {}),
    ).remote(algorithm, initial_task, initial_data, store, store_uri)
