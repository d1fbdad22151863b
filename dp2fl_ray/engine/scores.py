"""Classification scores from predicted and true labels (no scikit-learn in the hot path)."""

from __future__ import annotations

import numpy as np


def micro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Micro-averaged F1 over all classes.

    For single-label multi-class predictions micro precision = micro recall = accuracy, so
    this equals accuracy; it is reported because the paper's Table 1 reports it.
    """
    if len(y_true) == 0:
        return float("nan")
    tp = float(np.sum(y_true == y_pred))
    fp = fn = float(len(y_true)) - tp
    return 2 * tp / (2 * tp + fp + fn)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``y_true`` or ``y_pred``."""
    if len(y_true) == 0:
        return float("nan")
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_true == c) & (y_pred == c))
        fp = np.sum((y_true != c) & (y_pred == c))
        fn = np.sum((y_true == c) & (y_pred != c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))
