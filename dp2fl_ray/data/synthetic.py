"""A generated, learnable image source for tests and smoke runs of any size."""

from __future__ import annotations

import numpy as np
import torch

from dp2fl_ray.data.base import DataSource, Split
from dp2fl_ray.errors import DataError
from dp2fl_ray.seeding import rng_for

# Noise level relative to the [0, 1] prototype range: clearly noisy images, yet classes stay
# separable (nearest class mean is near perfect on 3x8x8 images).
_NOISE_STD = 0.15


def load_synthetic_source(
    num_classes: int = 10,
    image_size: int = 8,
    per_class_train: int = 40,
    per_class_test: int = 40,
    seed: int = 0,
) -> DataSource:
    """Generate a source where each class is a random prototype image plus Gaussian noise.

    Everything is a deterministic function of the arguments: prototypes, train and test
    samples are drawn from separate seeded streams, so changing ``per_class_test`` does not
    change the training images.

    Args:
        num_classes: number of classes (at least 2: one class is nothing to learn).
        image_size: height and width of the square images.
        per_class_train: training images per class.
        per_class_test: test images per class.
        seed: the experiment seed.

    Returns:
        A source named ``"synthetic"`` with images ``(N, 3, image_size, image_size)`` in
        [0, 1], shuffled, class names ``"class0"``, ``"class1"``, ...

    Raises:
        DataError: a size below its minimum.
    """
    for arg, value, minimum in (
        ("num_classes", num_classes, 2),
        ("image_size", image_size, 1),
        ("per_class_train", per_class_train, 1),
        ("per_class_test", per_class_test, 1),
    ):
        if int(value) < minimum:
            raise DataError(f"synthetic source: {arg}={value!r}; expected an int >= {minimum}")

    shape = (3, image_size, image_size)
    prototypes = rng_for(seed, "synthetic", "prototypes").uniform(
        0.0, 1.0, size=(num_classes, *shape)
    )  # (C, 3, H, W)

    def make_split(per_class: int, purpose: str) -> Split:
        rng = rng_for(seed, "synthetic", purpose)
        labels = rng.permutation(np.repeat(np.arange(num_classes, dtype=np.int64), per_class))
        noise = rng.normal(0.0, _NOISE_STD, size=(len(labels), *shape))  # (N, 3, H, W)
        images = np.clip(prototypes[labels] + noise, 0.0, 1.0).astype(np.float32)
        return Split(torch.from_numpy(images), labels)

    return DataSource(
        name="synthetic",
        modality="image",
        class_names=tuple(f"class{c}" for c in range(num_classes)),
        train=make_split(per_class_train, "train"),
        test=make_split(per_class_test, "test"),
    )
