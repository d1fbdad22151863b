"""Backbone workers kept warm between the runs of one driver process (``runtime.keep_workers``).

Starting a worker costs a new Python process importing torch and transformers and building the
backbone: about 10 s on a laptop core, most of a small run's wall time. A driver that runs many
experiments one after another (a notebook's seed loop, a script of ablations, the test suite)
pays it once per run unless the workers outlive the run. With ``keep_workers`` a completed
run hands its workers here instead of killing them, and the next run in the same process
takes them if its *backbone key* matches: the model, the data, the seed and the worker
resources, everything ``WorkerCore.__init__`` builds from. The rest of the config (partition,
algorithm, local training) is cheap and is re-read by ``WorkerCore.reconfigure``.

Kept workers hold their Ray resources. Anything else that needs them from this process's
cluster calls ``release()`` first: ``run_sweep`` does, and a run whose key differs releases the
kept set before it starts its own. Nothing is kept inside a placement group (a Tune trial) or
after a run that failed or lost a worker.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RaySystemError

log = logging.getLogger("dp2fl_ray")
PING_TIMEOUT_S = 30.0


@dataclass
class _Kept:
    key: str
    cluster: str
    actors: list[Any]


_kept: _Kept | None = None


def backbone_key(config: dict[str, Any], options: dict[str, Any]) -> str:
    """What a worker's expensive state is built from (``WorkerCore.__init__``) plus its actor
    options: two runs with the same key can share workers."""
    runtime = config["runtime"]
    return json.dumps(
        {
            "model": config["model"],
            "data": {k: v for k, v in config["data"].items() if k != "partition"},
            "seed": config["seed"],
            "resources": [runtime["cpus_per_worker"], runtime["gpus_per_worker"]],
            "options": options,
        },
        sort_keys=True,
        default=str,
    )


def _cluster() -> str:
    return str(ray.get_runtime_context().gcs_address)


def take(key: str, count: int) -> list[Any]:
    """Up to ``count`` live kept workers whose key is ``key``; every other kept worker is killed
    (its resources are the new run's to use)."""
    global _kept
    kept, _kept = _kept, None
    if kept is None:
        return []
    same = kept.key == key and kept.cluster == _cluster()
    reuse = kept.actors[:count] if same else []
    _kill([a for a in kept.actors if a not in reuse])
    alive = []
    for actor in reuse:
        try:
            ray.get(actor.ping.remote(), timeout=PING_TIMEOUT_S)
            alive.append(actor)
        except (RayActorError, GetTimeoutError, RaySystemError):  # a dead actor is simply not reused
            _kill([actor])
    if alive:
        log.info("reusing %d warm backbone worker(s)", len(alive))
    return alive


def keep(key: str, actors: list[Any]) -> None:
    """Keep ``actors`` for the next run of this process (replacing any already kept)."""
    global _kept
    release()
    _kept = _Kept(key, _cluster(), list(actors))


def release() -> int:
    """Kill the kept workers (if any) and return how many there were."""
    global _kept
    kept, _kept = _kept, None
    if kept is None:
        return 0
    if ray.is_initialized():
        _kill(kept.actors)
    return len(kept.actors)


def _kill(actors: list[Any]) -> None:
    for actor in actors:
        try:
            ray.kill(actor)
        except (RayActorError, RaySystemError, ValueError) as exc:  # already gone, or its cluster is
            log.debug("kept worker already gone: %s", exc)
