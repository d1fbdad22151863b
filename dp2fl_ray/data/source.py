"""Data sources: one dataset's train/val/test splits in memory, and the loader dispatch.

A :class:`DataSource` is what a backbone worker holds once for a whole run; clients are
views on it (index arrays from :mod:`dp2fl_ray.data.partition`), never copies, so a
population of millions of clients costs no more memory than the dataset itself.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import torch

from dp2fl_ray.errors import ConfigError, DataError

MODALITIES = ("image", "text")

# Sources this version can load, and those the config names but that come later.
AVAILABLE_SOURCES = ("digits", "synthetic")
PLANNED_SOURCES = ("clinc150", "csv", "parquet", "hf_disk", "coop")


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset: inputs and their integer labels, aligned by position.

    ``eq=False`` because element-wise tensor comparison has no single truth value; two
    splits are the same object or different ones.

    Attributes:
        inputs: images, float32 ``(N, 3, H, W)`` with values in ``[0, 1]``. Resizing to a
            backbone's resolution is the model's job, not the data's.
        labels: int64 ``(N,)`` class ids in ``[0, num_classes)``.
    """

    inputs: torch.Tensor  # (N, 3, H, W) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        if not isinstance(self.labels, np.ndarray) or self.labels.ndim != 1:
            raise DataError(
                f"split labels must be a 1-D numpy array; got {type(self.labels).__name__}"
                f" with shape {getattr(self.labels, 'shape', None)}"
            )
        if self.labels.dtype != np.int64:
            raise DataError(
                f"split labels must be int64; got {self.labels.dtype} (cast with .astype(np.int64))"
            )
        if int(self.inputs.shape[0]) != len(self.labels):
            raise DataError(
                f"split has {int(self.inputs.shape[0])} inputs but {len(self.labels)} labels;"
                " they must be aligned one to one"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather the samples at ``indices``.

        Args:
            indices: int ``(n,)`` positions into this split (e.g. a client's indices).

        Returns:
            ``(inputs[indices], labels[indices])``: inputs ``(n, 3, H, W)`` float32 and labels
            ``(n,)`` as an int64 tensor, ready for a loss function.
        """
        idx = np.asarray(indices, dtype=np.int64)  # (n,)
        # torch.tensor copies: client index arrays are read-only, and torch wants writable ones
        labels = torch.tensor(self.labels[idx], dtype=torch.int64)  # (n,)
        return self.inputs[torch.tensor(idx)], labels


@dataclass(frozen=True, eq=False)
class DataSource:
    """A dataset with its class names and splits, shared read-only by every client.

    Attributes:
        name: the source's name as in the config (``data.source``).
        modality: ``"image"`` (``"text"`` comes with CLINC150).
        class_names: one human-readable name per class id, used for text prompts.
        train: the pool clients draw training samples from.
        test: the pool clients draw test samples from.
        val: an optional pool for validation; without one, validation is drawn from
            ``test``, disjointly from each client's test samples (see :attr:`val_pool`).
    """

    name: str
    modality: str
    class_names: tuple[str, ...]
    train: Split
    test: Split
    val: Split | None = None

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise DataError(
                f"source {self.name!r}: modality {self.modality!r} is not one of {MODALITIES}"
            )
        if not self.class_names:
            raise DataError(f"source {self.name!r} has no class names")
        for split_name, split in (("train", self.train), ("test", self.test), ("val", self.val)):
            if split is None:  # only val is optional
                continue
            if len(split) == 0:
                raise DataError(f"source {self.name!r}: the {split_name} split is empty")
            low, high = int(split.labels.min()), int(split.labels.max())
            if low < 0 or high >= self.num_classes:
                raise DataError(
                    f"source {self.name!r}: {split_name} labels span [{low}, {high}] but there"
                    f" are {self.num_classes} class names; labels must lie in"
                    f" [0, {self.num_classes - 1}]"
                )

    @property
    def val_pool(self) -> Split:
        """The pool validation samples come from: ``val`` if present, else ``test``.

        When this is ``test`` itself, partitioners draw each client's validation and test
        samples disjointly from it, so a client never validates on its own test data.
        """
        return self.val if self.val is not None else self.test

    @property
    def num_classes(self) -> int:
        """The number of classes (length of :attr:`class_names`)."""
        return len(self.class_names)


def load_source(name: str, path: str | None = None, seed: int = 0) -> DataSource:
    """Load the data source named in the config's ``data.source``.

    Args:
        name: one of :data:`AVAILABLE_SOURCES` (the :data:`PLANNED_SOURCES` are recognised
            but not available in this version).
        path: where the source's files are; the built-in sources take none.
        seed: the experiment seed; only ``synthetic`` depends on it (its data are generated).
            ``digits`` has a fixed split, so test sets are comparable across seeds.

    Returns:
        The loaded :class:`DataSource`.

    Raises:
        ConfigError: unknown ``name``, or a ``path`` given to a built-in source.
        DataError: a recognised source that this version cannot load yet.
    """
    # Imported here: the loaders import this module for Split and DataSource.
    from dp2fl_ray.data.digits import load_digits_source
    from dp2fl_ray.data.synthetic import load_synthetic_source

    if name in PLANNED_SOURCES:
        raise DataError(
            f"data source {name!r} is not available yet in this version; use one of"
            f" {', '.join(AVAILABLE_SOURCES)}"
        )
    if name not in AVAILABLE_SOURCES:
        allowed = AVAILABLE_SOURCES + PLANNED_SOURCES
        close = difflib.get_close_matches(str(name), allowed, n=1)
        raise ConfigError(
            "data.source",
            name,
            f"one of {', '.join(allowed)}",
            f"did you mean {close[0]!r}?" if close else "",
        )
    if path is not None:
        raise ConfigError(
            "data.path", path, f"null for the built-in source {name!r}", "it reads no files"
        )
    if name == "digits":
        return load_digits_source()
    return load_synthetic_source(seed=seed)
