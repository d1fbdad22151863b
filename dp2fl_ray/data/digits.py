"""scikit-learn's bundled handwritten digits: a real, offline image source for quickstarts."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from dp2fl_ray.data.base import DataSource, Split
from dp2fl_ray.seeding import rng_for

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# The train/test split is fixed, independent of the experiment seed, so test sets (and the
# accuracies measured on them) are comparable across runs and seeds.
_SPLIT_SEED = 20240501


def bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits' pixel values ``(1797, 8, 8)`` (0..16) and labels ``(1797,)``.

    Read from the CSV scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``: 64 pixel
    values, then the label, per row) without importing scikit-learn, which costs about a
    CPU-second in every worker and driver that loads this source; ``load_digits`` itself where
    the file is not where scikit-learn ships it. A test holds the two to the same arrays.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as handle:
                table = np.loadtxt(handle, delimiter=",")  # (1797, 65)
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.images), np.asarray(bunch.target, np.int64)


def load_digits_source() -> DataSource:
    """Load the 1797 8x8 digits as a :class:`DataSource` with a fixed stratified 50/50 split.

    Pixel values 0..16 are scaled to [0, 1] and repeated to three channels, so image
    backbones take them like any RGB image (they resize to their own resolution). Each class
    is shuffled with a fixed seed and its first half (rounded down) goes to train, the rest
    to test.

    Returns:
        A source named ``"digits"``: 896 train and 901 test images ``(N, 3, 8, 8)``,
        class names ``"zero"`` ... ``"nine"``, no separate validation split.
    """
    pixels, labels = bundled_digits()
    images = np.asarray(pixels, dtype=np.float32) / 16.0  # (1797, 8, 8) in [0, 1]

    rng = rng_for(_SPLIT_SEED, "digits", "split")
    train_parts: list[np.ndarray] = []
    for c in range(len(DIGIT_NAMES)):
        members = rng.permutation(np.flatnonzero(labels == c))
        train_parts.append(members[: len(members) // 2])
    is_train = np.zeros(len(labels), dtype=bool)
    is_train[np.concatenate(train_parts)] = True

    # Keep the original order inside each split: stable and easy to inspect.
    tensor = torch.from_numpy(images).unsqueeze(1).repeat(1, 3, 1, 1)  # (1797, 3, 8, 8)
    train_rows = torch.from_numpy(np.flatnonzero(is_train))
    test_rows = torch.from_numpy(np.flatnonzero(~is_train))
    return DataSource(
        name="digits",
        modality="image",
        class_names=DIGIT_NAMES,
        train=Split(tensor[train_rows].contiguous(), labels[is_train]),
        test=Split(tensor[test_rows].contiguous(), labels[~is_train]),
    )
