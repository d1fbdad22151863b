"""Which (model, validation set) pairs a round's cross-evaluation runs.

Exact DP2FL evaluates every model on every cohort client's validation set: m x m pairs.
For large cohorts ``federation.max_eval_models`` limits each client to ``n`` candidate
models (itself plus n - 1 peers drawn by (seed, round, client id)), as FedFomo does; the run
records the limit in its metadata. With ``max_eval_models: 0`` (the default) the matrix is
exact up to ``EXACT_MAX_COHORT`` clients and limited to that many candidates beyond.
"""

from __future__ import annotations

import numpy as np

from dp2fl_ray.algorithms.base import CrossEval
from dp2fl_ray.seeding import rng_for

__all__ = ["CrossEval", "block_pairs", "candidate_models", "models_per_client"]

EXACT_MAX_COHORT = 128


def models_per_client(m: int, max_eval_models: int) -> int:
    """How many models each client's validation set is evaluated on."""
    limit = EXACT_MAX_COHORT if max_eval_models == 0 else max_eval_models
    return min(m, limit)


def candidate_models(seed: int, round_idx: int, cohort: np.ndarray, n: int) -> list[np.ndarray]:
    """For each client position k, the sorted model rows evaluated on its set (k included)."""
    m = len(cohort)
    if n >= m:
        every = np.arange(m)
        return [every for _ in range(m)]
    out = []
    for k, client in enumerate(cohort):
        others = rng_for(seed, "candidates", round_idx, int(client)).choice(m - 1, size=n - 1, replace=False)
        others = others + (others >= k)  # skip k itself
        out.append(np.sort(np.append(others, k)))
    return out


def block_pairs(candidates: list[np.ndarray], block: slice) -> np.ndarray:
    """Pairs ``(model row, set index within the block)`` for the sets of one block, set-major."""
    parts = [np.stack([candidates[k], np.full(len(candidates[k]), k - block.start)], axis=1)
             for k in range(block.start, block.stop)]  # fmt: skip
    return np.concatenate(parts).astype(np.int64)  # (P, 2)
