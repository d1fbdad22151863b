"""Evaluations run together on one queue give what each gives alone, in request order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import ray

from dp2fl_ray.config import ExperimentConfig, config_to_dict
from dp2fl_ray.runtime.actors import start_workers
from dp2fl_ray.runtime.evaluation import Evaluation, one_model_request, own_request
from dp2fl_ray.runtime.pool import WorkerPool

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def workers(ray_cluster: None, tiny_config: ExperimentConfig) -> Iterator[list[Any]]:
    actors = start_workers(config_to_dict(tiny_config), tiny_config.runtime, "together")
    yield actors
    for actor in actors:
        ray.kill(actor)


def test_together_equals_one_at_a_time(workers: list[Any]) -> None:
    evals = Evaluation(WorkerPool(workers, 0), clients_per_slice=2, seed=0, max_eval_models=0)
    task0, data0 = ray.get(workers[0].initial_prompts.remote())
    rng = np.random.default_rng(0)
    clients = np.array([0, 1, 2])
    task = (task0 + 0.1 * rng.normal(size=(3, task0.size))).astype(np.float32)
    data = (data0 + 0.1 * rng.normal(size=(3, data0.size))).astype(np.float32)
    held_out = np.array([3])
    val, test, glob, nobody = evals.together(
        [
            own_request(clients, task, data, "val", False),
            own_request(clients, task, data, "test", True),
            one_model_request(task[1], data[1], held_out),
            one_model_request(task[1], data[1], held_out[:0]),
        ]
    )
    alone = [evals.own(clients, task, data, "val", False), evals.own(clients, task, data, "test", True),
             evals.one_model(task[1], data[1], held_out)]  # fmt: skip
    assert nobody is None
    for together_result, alone_result in zip((val, test, glob), alone):
        assert together_result is not None and alone_result is not None
        for name in ("loss", "correct", "count", "micro_f1", "majority_acc"):
            assert np.array_equal(
                getattr(together_result, name), getattr(alone_result, name), equal_nan=True
            ), name
    assert len(val.loss) == 3 and len(glob.loss) == 1  # type: ignore[union-attr]
    assert not np.array_equal(val.loss, test.loss)  # type: ignore[union-attr]  # different splits, really
