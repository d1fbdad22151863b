"""Server maths shared by the baselines the paper compares against (ALGORITHM.md section 4).

The methods themselves are one module each (``promptfl.py``, ``fedprox.py``, ``local.py``,
``pfedme.py``); this module is their FedAvg arithmetic.

- ``local``: no communication; nothing to aggregate.
- ``promptfl``: FedAvg of all prompts, weighted by client data size; one global model.
- ``fedprox``: PromptFL's aggregation; the proximal term lives in local training.
- ``pfedme``: the global prompts move a fraction ``server_beta`` towards the data-size
  weighted average of the clients' local copies.

Pure numpy, float64 out; inputs never mutated.
"""

from __future__ import annotations

import numpy as np


def fedavg_weights(sizes: np.ndarray) -> np.ndarray:
    """FedAvg weights: proportional to each client's number of training samples."""
    sizes = np.asarray(sizes, np.float64)
    if sizes.ndim != 1 or len(sizes) == 0 or np.any(sizes < 0) or sizes.sum() <= 0:
        raise ValueError(f"sizes must be a non-empty non-negative vector with a positive sum, got {sizes}")
    return sizes / sizes.sum()


def fedavg(vectors: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Data-size weighted average of client rows ``(m, D) -> (D,)``."""
    return fedavg_weights(sizes) @ np.asarray(vectors, np.float64)


def pfedme_server(
    global_vector: np.ndarray, local_vectors: np.ndarray, sizes: np.ndarray, beta: float
) -> np.ndarray:
    """pFedMe's server step: ``(1 - beta) * global + beta * fedavg(local)``."""
    if not 0 < beta <= 1:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    return (1 - beta) * np.asarray(global_vector, np.float64) + beta * fedavg(local_vectors, sizes)
