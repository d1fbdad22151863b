"""The backbone worker actor: a thin shell over ``work.WorkerCore``.

The shell adds what needs Ray: training answers with two objects, metadata for the driver and
rows for the aggregator (``movement.py``), so the core stays plain. It builds its core inside
``__init__``, on the worker: a driver that creates workers imports this module but never the
model code (``work.py`` pulls in torch's model stack and transformers, several CPU-seconds a
process), so ``dp2fl-ray run`` and each Tune trial start that much sooner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import ray

from dp2fl_ray.config import ExperimentConfig, config_to_dict
from dp2fl_ray.runtime import warm_workers
from dp2fl_ray.runtime.placement import forwarded_env, worker_placement
from dp2fl_ray.runtime.results import EvalResult, TrainMeta, TrainResult
from dp2fl_ray.runtime.rows import SliceRows

if TYPE_CHECKING:
    from dp2fl_ray.runtime.work import WorkerCore


@ray.remote
class BackboneWorker:
    """Loads the backbone and data once; runs slices of training and evaluation.

    Every method is ``WorkerCore``'s of the same name (see there for the contracts)."""

    def __init__(self, config: dict[str, Any] | ExperimentConfig, num_threads: int | None = None) -> None:
        from dp2fl_ray.runtime.work import WorkerCore

        self.core: WorkerCore = WorkerCore(config, num_threads)

    def ping(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def reconfigure(self, config: dict[str, Any] | ExperimentConfig, num_threads: int | None = None) -> None:
        self.core.reconfigure(config, num_threads)

    def describe(self) -> dict[str, Any]:
        return self.core.describe()

    def slice_capacity(self) -> dict[str, int]:
        return self.core.slice_capacity()

    def initial_prompts(self) -> tuple[np.ndarray, np.ndarray]:
        return self.core.initial_prompts()

    def initial_rows(self) -> tuple[np.ndarray, np.ndarray]:
        return self.core.initial_rows()

    def train_slice(self, *args: Any) -> TrainResult:
        return self.core.train_slice(*args)

    @ray.method(num_returns=2)  # type: ignore[misc]
    def train_rows(self, *args: Any) -> tuple[TrainMeta, SliceRows]:
        return self.core.train_rows(*args)

    def evaluate_rows(self, *args: Any) -> EvalResult:
        return self.core.evaluate_rows(*args)

    def evaluate_own(
        self, rows: SliceRows, set_clients: Sequence[int], splits: Sequence[tuple[str, bool]]
    ) -> list[EvalResult]:
        return self.core.evaluate_own(rows, set_clients, splits)

    def evaluate(self, *args: Any) -> EvalResult:
        return self.core.evaluate(*args)


def _options(runtime: Any) -> dict[str, Any]:
    return {
        "num_cpus": runtime.cpus_per_worker,
        "num_gpus": runtime.gpus_per_worker,
        "max_restarts": runtime.max_retries,  # a dead worker comes back; its slice is re-run
        "runtime_env": {"env_vars": forwarded_env()},
    }


def start_workers(config_dict: dict[str, Any], runtime: Any, run_id: str, warm: bool = False) -> list[Any]:
    """The backbone worker pool: ``runtime.workers`` actors with the configured resources.

    With ``warm``, the workers a previous run of this process kept (``warm_workers.py``) come
    first when their backbone key matches, re-read this config (``WorkerCore.reconfigure``),
    and only the rest are started; without it, kept workers are released first. New workers
    are named ``dp2fl:<run_id>:worker-<i>`` (so ``ray.get_actor`` finds them); a reused one
    keeps the name of the run that started it.
    """
    threads = max(1, int(runtime.cpus_per_worker))
    options = _options(runtime)
    if warm:
        reused = warm_workers.take(warm_workers.backbone_key(config_dict, options), runtime.workers)
    else:  # workers this process kept hold resources the new ones may need
        warm_workers.release()
        reused = []
    ray.get([w.reconfigure.remote(config_dict, threads) for w in reused])
    started = [
        cast(Any, BackboneWorker)
        .options(  # ray.remote's class decorator is typed as the class itself
            name=f"dp2fl:{run_id}:worker-{i}", scheduling_strategy=worker_placement(i), **options
        )
        .remote(config_dict, threads)
        for i in range(len(reused), runtime.workers)
    ]
    return reused + started


def keep_warm(config: ExperimentConfig, workers: list[Any]) -> None:
    """Hand a completed run's workers to ``warm_workers`` for this process's next run."""
    config_dict = config_to_dict(config)
    warm_workers.keep(warm_workers.backbone_key(config_dict, _options(config.runtime)), workers)
