"""What a data source is: one dataset's train/val/test splits (``Split``, ``DataSource``).

A :class:`DataSource` is what a backbone worker holds once for a whole run; clients are
views on it (index arrays from :mod:`dp2fl_ray.data.partition`), never copies, so a
population of millions of clients costs no more memory than the dataset itself. Inputs stay
raw: image tensors (or images decoded on demand, :mod:`dp2fl_ray.data.images`) and text as
Python strings; each model turns them into what its backbone takes (``model.encode``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dp2fl_ray.data.images import LazyImages
from dp2fl_ray.errors import DataError

MODALITIES = ("image", "text")

# What a split's inputs may be: image tensor (N, 3, H, W), images decoded on demand, or an
# object array of str (N,).
Inputs = torch.Tensor | LazyImages | np.ndarray


def _modality_of(inputs: object) -> str:
    """``"image"`` or ``"text"`` from the type of a split's inputs; DataError if neither."""
    if isinstance(inputs, LazyImages):
        return "image"
    if isinstance(inputs, torch.Tensor):
        if inputs.ndim != 4 or inputs.shape[1] != 3 or not inputs.is_floating_point():
            raise DataError(
                f"image inputs must be a float tensor (N, 3, H, W); got {inputs.dtype} {tuple(inputs.shape)}"
            )
        return "image"
    if isinstance(inputs, np.ndarray) and inputs.dtype == object and inputs.ndim == 1:
        bad = next((i for i, t in enumerate(inputs.tolist()) if not isinstance(t, str)), None)
        if bad is not None:
            raise DataError(
                f"text inputs must all be str; item {bad} is {type(inputs[bad]).__name__} {inputs[bad]!r}"
            )
        return "text"
    raise DataError(
        "split inputs must be an image tensor (N, 3, H, W), LazyImages, or a 1-D numpy object"
        f" array of str (np.asarray(texts, dtype=object)); got {type(inputs).__name__}"
        f" {getattr(inputs, 'dtype', '')} {getattr(inputs, 'shape', '')}"
    )


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset: inputs and their integer labels, aligned by position.

    ``eq=False`` because element-wise tensor comparison has no single truth value; two
    splits are the same object or different ones.

    Attributes:
        inputs: images as float32 ``(N, 3, H, W)`` in ``[0, 1]`` (resizing to a backbone's
            resolution is the model's job), or :class:`~dp2fl_ray.data.images.LazyImages`
            decoded on demand to such tensors, or text as a numpy object array of ``str``
            ``(N,)`` (tokenizing is the model's job).
        labels: int64 ``(N,)`` class ids in ``[0, num_classes)``.
    """

    inputs: Inputs
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
        _modality_of(self.inputs)
        if len(self.inputs) != len(self.labels):
            raise DataError(
                f"split has {len(self.inputs)} inputs but {len(self.labels)} labels;"
                " they must be aligned one to one"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def modality(self) -> str:
        """``"image"`` or ``"text"``, from the type of :attr:`inputs`."""
        return "image" if isinstance(self.inputs, (torch.Tensor, LazyImages)) else "text"

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor | list[str], torch.Tensor]:
        """Gather the samples at ``indices``.

        Args:
            indices: int ``(n,)`` positions into this split (e.g. a client's indices).

        Returns:
            ``(inputs, labels)``: inputs as float32 ``(n, 3, H, W)`` for images (lazy images
            are decoded now) or a ``list`` of ``n`` str for text; labels ``(n,)`` as an int64
            tensor, ready for a loss function.

        Raises:
            DataError: a lazily loaded image cannot be read (the message names the file).
        """
        idx = np.asarray(indices, dtype=np.int64)  # (n,)
        # torch.tensor copies: client index arrays are read-only, and torch wants writable ones
        labels = torch.tensor(self.labels[idx], dtype=torch.int64)  # (n,)
        if isinstance(self.inputs, torch.Tensor):
            return self.inputs[torch.tensor(idx)], labels
        if isinstance(self.inputs, LazyImages):
            return self.inputs.load(idx), labels
        return self.inputs[idx].tolist(), labels


@dataclass(frozen=True, eq=False)
class DataSource:
    """A dataset with its class names and splits, shared read-only by every client.

    Attributes:
        name: the source's name as in the config (``data.source``).
        modality: ``"image"`` or ``"text"``; every split's inputs must be of this kind.
        class_names: one human-readable name per class id, used for text prompts.
        train: the pool clients draw training samples from.
        test: the pool clients draw test samples from.
        val: an optional pool for validation; without one, validation is drawn from
            ``test``, disjointly from each client's test samples (see :attr:`val_pool`).
        domains: optional int64 ``(num_classes,)``: the domain id of each class, for
            feature-skew (``domain``) partitions; ``None`` when the source has no domains.
        domain_names: one name per domain id (empty when ``domains`` is ``None``).
    """

    name: str
    modality: str
    class_names: tuple[str, ...]
    train: Split
    test: Split
    val: Split | None = None
    domains: np.ndarray | None = None
    domain_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise DataError(f"source {self.name!r}: modality {self.modality!r} is not one of {MODALITIES}")
        if not self.class_names:
            raise DataError(f"source {self.name!r} has no class names")
        for split_name, split in (("train", self.train), ("test", self.test), ("val", self.val)):
            if split is None:  # only val is optional
                continue
            if split.modality != self.modality:
                raise DataError(
                    f"source {self.name!r}: the {split_name} split holds {split.modality} inputs"
                    f" but the source's modality is {self.modality!r}; all splits must match"
                )
            if len(split) == 0:
                raise DataError(f"source {self.name!r}: the {split_name} split is empty")
            low, high = int(split.labels.min()), int(split.labels.max())
            if low < 0 or high >= self.num_classes:
                raise DataError(
                    f"source {self.name!r}: {split_name} labels span [{low}, {high}] but there"
                    f" are {self.num_classes} class names; labels must lie in"
                    f" [0, {self.num_classes - 1}]"
                )
        self._check_domains()

    def _check_domains(self) -> None:
        if self.domains is None:
            if self.domain_names:
                raise DataError(
                    f"source {self.name!r}: domain_names given without domains (one domain id"
                    " per class); give both or neither"
                )
            return
        d = self.domains
        if not isinstance(d, np.ndarray) or d.dtype != np.int64 or d.shape != (self.num_classes,):
            raise DataError(
                f"source {self.name!r}: domains must be an int64 array of shape"
                f" ({self.num_classes},), one domain id per class; got"
                f" {getattr(d, 'dtype', type(d).__name__)} {getattr(d, 'shape', '')}"
            )
        n = len(self.domain_names)
        if n == 0 or int(d.min()) < 0 or int(d.max()) >= n:
            raise DataError(
                f"source {self.name!r}: domain ids span [{int(d.min())}, {int(d.max())}] but"
                f" there are {n} domain names; ids must lie in [0, {n - 1}]"
            )
        empty = [self.domain_names[k] for k in np.flatnonzero(np.bincount(d, minlength=n) == 0)]
        if empty:
            raise DataError(
                f"source {self.name!r}: domain(s) {empty} have no class; drop them from"
                " domain_names and renumber the ids"
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

    @property
    def num_domains(self) -> int:
        """The number of domains (0 when the source has none)."""
        return len(self.domain_names) if self.domains is not None else 0
