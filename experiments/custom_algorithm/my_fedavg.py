"""A user's own method, outside the package: FedAvg of the task prompt only.

Every client trains both prompts; the server averages the task prompts by data size (the
global model) and leaves each client its own data prompt, which the client store keeps
between rounds. It is the smallest personalised method there is, and this file is all it
takes to run it:

    cd experiments/custom_algorithm
    PYTHONPATH=. dp2fl-ray run task_only.yaml

``algorithm.name: my_fedavg:TaskOnlyFedAvg`` names this module and class. The driver
imports it to check the config, and the workers import it again: on a local Ray they see
the driver's ``PYTHONPATH``; on a cluster, ship the folder with
``runtime_env: {py_modules: [experiments/custom_algorithm]}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dp2fl_ray.algorithms.base import Algorithm, EarlyAggregation, RoundResults, RoundUpdate, ServerState
from dp2fl_ray.config import AlgorithmOptions, option


@dataclass(frozen=True)
class TaskOnlyOptions(AlgorithmOptions):
    """Options sit under ``algorithm:`` next to ``name``, checked like every config field."""

    server_lr: float = option(1.0, "(0, 1]", hint="fraction of the move towards the clients' average")


class TaskOnlyFedAvg(Algorithm):
    """Global task prompt by FedAvg; each client keeps its own data prompt."""

    name = "task_only_fedavg"
    options_type = TaskOnlyOptions
    options: TaskOnlyOptions

    def start_rows(
        self, state: ServerState, stored: Sequence[np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The global task prompt, and the client's own data prompt (the initial one at first)."""
        task = np.repeat(state.global_task[None], len(stored), axis=0)
        data = np.stack([state.initial_data if row is None else row for row in stored])
        return task, data

    def aggregate(
        self, state: ServerState, results: RoundResults, early: EarlyAggregation | None = None
    ) -> RoundUpdate:
        sizes = np.asarray(results.n_train, np.float64)
        weights = sizes / sizes.sum()
        average = weights @ results.task  # (Dt,)
        step = self.options.server_lr
        global_task = ((1 - step) * state.global_task + step * average).astype(np.float32)
        m = len(results.task)
        personal_task = np.repeat(global_task[None], m, axis=0)
        # the global model: the averaged task prompt with the round-0 data prompt
        return RoundUpdate(global_task, state.initial_data, personal_task, results.data, weights)
