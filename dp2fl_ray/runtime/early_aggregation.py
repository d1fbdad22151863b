"""DP2FL's per-client aggregation (step 5) while the cross-evaluation is still running.

Client k's new data prompt needs only column k of the loss matrix: every model's loss on
k's validation set. The cross-evaluation comes back in set-major blocks (a block holds all
the pairs of its validation sets), so as soon as a block's losses arrive the aggregator can
compute its clients' data prompts while the workers evaluate the other blocks. Only the
global weights (the row sums, step 4) wait for the whole matrix.

The result equals computing every column at the end, bit for bit: the same function gets
the same float64 inputs in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dp2fl_ray.algorithms.dp2fl import DataPromptUpdate, aggregate_data_prompt, pairs_by_set


@dataclass
class EarlyDataPrompts:
    """One round's step 5, filled in block by block (rows in cohort order)."""

    updated: np.ndarray  # (m, Dd) every client's trained P~d_i
    previous: np.ndarray  # (m, Dd) each client's Pd_k^(r-1) (its InitGlo start when first seen)
    baselines: np.ndarray  # (m,) L_k
    alpha: float
    beta: float
    rnc_direction: str
    eps: float
    done: dict[int, DataPromptUpdate] = field(default_factory=dict)

    @classmethod
    def start(
        cls, updated: np.ndarray, previous: np.ndarray, baselines: np.ndarray, algorithm: object
    ) -> EarlyDataPrompts:
        """The round's inputs in float64 (as ``aggregate_round`` converts them) and the options."""
        return cls(
            np.asarray(updated, np.float64), np.asarray(previous, np.float64), np.asarray(baselines, np.float64),
            float(algorithm.alpha), float(algorithm.beta), str(algorithm.rnc_direction), float(algorithm.eps),  # type: ignore[attr-defined]
        )  # fmt: skip

    def absorb(self, pair_i: np.ndarray, pair_j: np.ndarray, losses: np.ndarray) -> None:
        """Step 5 for every validation set of a block: ``pair_j`` holds each set's cohort row and
        the block holds all of those sets' pairs."""
        pair_i, pair_j = np.asarray(pair_i, np.int64), np.asarray(pair_j, np.int64)
        losses = np.asarray(losses, np.float64)
        for k, rows in enumerate(pairs_by_set(pair_j, len(self.updated))):
            if len(rows) == 0:
                continue
            self.done[k] = aggregate_data_prompt(
                self.previous[k], self.updated[pair_i[rows]], losses[rows], float(self.baselines[k]),
                self.alpha, self.beta, self.rnc_direction, self.eps,
            )  # fmt: skip

    def matches(self, updated: np.ndarray, previous: np.ndarray, baselines: np.ndarray) -> bool:
        """Whether these are the inputs the early work was started from (else it is discarded)."""
        pairs = ((self.updated, updated), (self.previous, previous), (self.baselines, baselines))
        return all(
            np.array_equal(mine, np.asarray(theirs, np.float64), equal_nan=True) for mine, theirs in pairs
        )
