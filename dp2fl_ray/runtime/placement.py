"""Where the actors go and what environment they get: shared by both actor modules, and
light (no torch), so importing it costs an actor process nothing."""

from __future__ import annotations

import os
from typing import Any

from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


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
