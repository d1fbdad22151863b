"""What a worker's requests answer with: plain numpy dataclasses, no torch.

The driver reads these (losses, counts, metrics) and never the backbone, so they live apart
from ``work.py``: a driver imports this module, not the model code and its libraries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrainResult:
    """Per client of a slice (client-id order of the request)."""

    client_ids: np.ndarray  # (B,) int64
    task: np.ndarray  # (B, Dt) float32, the trained task prompts
    data: np.ndarray  # (B, Dd) float32, the trained data prompts
    train_loss: np.ndarray  # (B,) mean training loss
    start_val_loss: np.ndarray  # (B,) loss of the start model on val (NaN where not asked)
    start_test_acc: np.ndarray  # (B,) accuracy of the start model on test (NaN where not asked)
    n_train: np.ndarray  # (B,)
    seconds: float
    personal_task: np.ndarray | None = None  # rows the method personalised (pFedMe's theta)
    personal_data: np.ndarray | None = None


@dataclass(frozen=True)
class TrainMeta:
    """What the driver reads of a slice's training (per client, request order): no rows."""

    client_ids: np.ndarray  # (B,) int64
    train_loss: np.ndarray  # (B,)
    start_val_loss: np.ndarray  # (B,)
    start_test_acc: np.ndarray  # (B,)
    n_train: np.ndarray  # (B,)
    rows_finite: np.ndarray  # (B,) bool: the client's trained task and data rows are finite
    row_bytes: int  # bytes of the SliceRows returned beside this
    seconds: float


@dataclass(frozen=True)
class EvalResult:
    """Per (model row, set) pair of the request."""

    loss: np.ndarray  # (P,)
    correct: np.ndarray  # (P,)
    count: np.ndarray  # (P,)
    micro_f1: np.ndarray  # (P,) NaN unless predictions were asked for
    macro_f1: np.ndarray  # (P,)
    majority_acc: np.ndarray  # (P,) the set's client always predicting its majority training class
    seconds: float
