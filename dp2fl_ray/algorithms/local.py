"""Local: no communication, the same compute; each client keeps its own two prompts.

There is no global model. The store keeps each client's task and data prompts
concatenated; a first-timer starts from the round-0 prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dp2fl_ray.algorithms.base import Algorithm, EarlyAggregation, RoundResults, RoundUpdate, ServerState


class Local(Algorithm):
    """Every client trains alone from where it stopped; the server only keeps the rows."""

    name = "local"
    has_global_model = False

    def start_rows(
        self, state: ServerState, stored: Sequence[np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        dt = len(state.initial_task)
        first = np.concatenate([state.initial_task, state.initial_data])
        own = [first if row is None else row for row in stored]
        return np.stack([v[:dt] for v in own]), np.stack([v[dt:] for v in own])

    def aggregate(
        self, state: ServerState, results: RoundResults, early: EarlyAggregation | None = None
    ) -> RoundUpdate:
        m = len(results.task)
        return RoundUpdate(
            state.global_task, state.global_data, results.task, results.data, np.full(m, np.nan)
        )

    def stored_rows(self, update: RoundUpdate) -> np.ndarray:
        return np.concatenate([update.personal_task, update.personal_data], axis=1)
