"""The only Ray actors, for the driver: backbone workers and the aggregator.

Each lives in its own module (``worker_actor.py``, ``aggregator_actor.py``) so that an actor's
process imports only what its class needs; this module gathers them for the driver.
"""

from __future__ import annotations

from dp2fl_ray.runtime.aggregator_actor import Aggregator, start_aggregator
from dp2fl_ray.runtime.placement import forwarded_env, worker_placement
from dp2fl_ray.runtime.worker_actor import BackboneWorker, keep_warm, start_workers

__all__ = [
    "Aggregator",
    "BackboneWorker",
    "forwarded_env",
    "keep_warm",
    "start_aggregator",
    "start_workers",
    "worker_placement",
]
