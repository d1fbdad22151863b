"""The rows of a slice's clients as they move between the aggregator and the workers.

Its own module so that the aggregator's process, which handles rows but never a backbone,
does not import the worker's stack (torch models, transformers): each actor process imports
the module of its class and what that module imports, and that start-up is paid per actor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SliceRows:
    """Rows of a slice's clients (slice order), moved between the aggregator and the workers by
    object reference: start rows to a worker, trained rows back, personal rows to evaluation."""

    task: np.ndarray  # (B, Dt')
    data: np.ndarray  # (B, Dd')
    personal_task: np.ndarray | None = None  # (B, Dt') rows a method's training personalised
    personal_data: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        extra = [a for a in (self.personal_task, self.personal_data) if a is not None]
        return int(self.task.nbytes + self.data.nbytes + sum(a.nbytes for a in extra))
