"""The backbone worker pool: one task per slice, re-run on another worker if one dies.

Work is stateless (a slice carries everything it needs), so a slice lost with a dead
worker is simply submitted again; results are returned in slice order, never completion
order, so a retry cannot change what the round computes. A slice's work may return several
objects (``num_returns``): the pool fetches the first (what the driver reads: ids, losses,
metrics) and hands the others on as references (rows for the aggregator, never read here).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from dp2fl_ray.errors import RunError
from dp2fl_ray.runtime.movement import Ledger

log = logging.getLogger("dp2fl_ray")
RESTART_WAIT_S = 300.0


class WorkerPool:
    """A set of worker actors that survives the death of some of them."""

    def __init__(self, workers: Sequence[Any], max_retries: int, ledger: Ledger | None = None) -> None:
        self.workers = list(workers)
        self.max_retries = max_retries
        self.retries = 0  # slices re-run because their worker died (for the run's metrics)
        self.ledger = ledger if ledger is not None else Ledger()  # what the work moves (movement.py)

    def __len__(self) -> int:
        return len(self.workers)

    def map(
        self,
        submit: Callable[[Any, Any], Any],
        items: Sequence[Any],
        return_exceptions: bool = False,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        """``submit(worker, item)`` returns an ObjectRef, or a list of them (an actor method with
        ``num_returns`` > 1); returns the results in item order: the fetched object, or for a
        list a tuple of the first fetched and the other references as they are.

        A worker's death re-runs its item elsewhere. An error raised by the work itself
        (``RayTaskError``) is returned in place of the result with ``return_exceptions``,
        else raised. ``on_result(i, result)`` is called as each item succeeds, in completion
        order, so a consumer can start on early results while later items still run.
        """
        results: list[Any] = [None] * len(items)
        attempts = [0] * len(items)
        pending = deque(range(len(items)))
        idle = list(self.workers)
        running: dict[Any, tuple[int, Any, list[Any] | None]] = {}
        while pending or running:
            while pending and idle:
                i = pending.popleft()
                worker = idle.pop(0)
                refs = submit(worker, items[i])
                first, rest = (refs[0], list(refs[1:])) if isinstance(refs, (list, tuple)) else (refs, None)
                running[first] = (i, worker, rest)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            i, worker, rest = running.pop(ref)
            try:
                value = ray.get(ref)
                self.ledger.through_driver(value)
                results[i] = value if rest is None else (value, *rest)
                idle.append(worker)
                if on_result is not None:
                    on_result(i, results[i])
            except RayTaskError as exc:
                if not return_exceptions:
                    raise
                results[i] = exc
                idle.append(worker)
            except RayActorError as exc:
                attempts[i] += 1
                self.retries += 1
                if attempts[i] > self.max_retries:
                    raise RunError(
                        f"a slice failed {attempts[i]} times because its worker died ({exc}); "
                        "raise runtime.max_retries or check the workers' logs"
                    ) from exc
                log.warning("worker died running a slice; re-running it (attempt %d)", attempts[i] + 1)
                pending.appendleft(i)
                if self._recovered(worker):
                    idle.append(worker)
                else:
                    self.workers.remove(worker)
                if not self.workers:
                    raise RunError("every backbone worker died; see the workers' logs") from exc
                if not idle and not running:
                    idle.extend(self.workers)
        return results

    def _recovered(self, worker: Any) -> bool:
        """Whether Ray restarted the actor (``max_restarts``); a worker that is gone for good
        leaves the pool and the others carry on."""
        try:
            ray.get(worker.ping.remote(), timeout=RESTART_WAIT_S)
            return True
        except (RayActorError, GetTimeoutError):
            return False
