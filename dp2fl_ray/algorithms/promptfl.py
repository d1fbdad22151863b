"""PromptFL (Guo et al., 2023): FedAvg of every prompt, weighted by client data size.

One global model: every client starts from the global rows, and is evaluated with them.
"""

from __future__ import annotations

import numpy as np

from dp2fl_ray.algorithms.base import Algorithm, EarlyAggregation, RoundResults, RoundUpdate, ServerState
from dp2fl_ray.algorithms.baselines import fedavg_weights


class PromptFL(Algorithm):
    """Clients train both prompts from the global ones; the server averages them by data size."""

    name = "promptfl"

    def aggregate(
        self, state: ServerState, results: RoundResults, early: EarlyAggregation | None = None
    ) -> RoundUpdate:
        m = len(results.task)
        weights = fedavg_weights(results.n_train)
        global_task = (weights @ results.task).astype(np.float32)
        global_data = (weights @ results.data).astype(np.float32)
        personal_task = np.repeat(global_task[None], m, axis=0)
        personal_data = np.repeat(global_data[None], m, axis=0)
        return RoundUpdate(global_task, global_data, personal_task, personal_data, weights)
