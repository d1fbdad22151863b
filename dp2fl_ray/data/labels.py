"""Labels as files give them (names or ints) turned into class ids, with the checks every
file source shares: no missing label, every class has training samples, and no label in
val/test that train lacks (a client could never learn it).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dp2fl_ray.errors import DataError

# How many offending items an error message lists before "...".
_SHOW = 5


@dataclass(frozen=True)
class RawLabels:
    """One split's labels as read from its file.

    Attributes:
        split: ``"train"``, ``"val"`` or ``"test"``.
        where: the file (or folder) they come from, named in error messages.
        values: one label per row: all ints (class ids) or names; missing ones are None,
            NaN or ``""``.
    """

    split: str
    where: str
    values: Sequence[object]


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_missing(v: object) -> bool:
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def _listed(items: Sequence[object]) -> str:
    shown = ", ".join(repr(x) for x in items[:_SHOW])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOW else "")


def encode_labels(
    raws: Sequence[RawLabels], class_names: Sequence[str] | None = None
) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """Class names and int64 class ids of each split; ``raws[0]`` must be the train split.

    * With ``class_names`` (e.g. a Hugging Face ClassLabel): the values are ids into them.
    * Else, if every value of every split is an int: the ids are those ints and class ``i``
      is named ``str(i)``; there are ``max + 1`` classes (and all must occur in train).
    * Else the values are names (ints become their ``str``): the classes are the sorted
      names of the training split, which must include every val/test name.

    Returns:
        ``(class_names, ids)``: ``ids[k]`` is int64 ``(n_k,)`` for ``raws[k]``.

    Raises:
        DataError: a missing label; an id out of range; a val/test label absent from train;
            a class without training samples. The message names the file and the fix.
    """
    for raw in raws:
        if len(raw.values) == 0:
            raise DataError(f"{raw.where}: the {raw.split} split has no rows; give it some")
        bad = [i for i, v in enumerate(raw.values) if _is_missing(v)]
        if bad:
            raise DataError(
                f"{raw.where}: row(s) {_listed(bad)} have no label; give every row a label or drop those rows"
            )
    if class_names is not None:
        names = tuple(str(n) for n in class_names)
        ids = [_ids_in_range(raw, len(names)) for raw in raws]
    elif all(_is_int(v) for raw in raws for v in raw.values):
        ids = [_ids_in_range(raw, None) for raw in raws]
        # ids past train's largest become classes too, so the coverage check can name them
        names = tuple(str(i) for i in range(max(int(x.max()) for x in ids) + 1))
    else:
        names = tuple(sorted({str(v) for v in raws[0].values}))
        index = {name: i for i, name in enumerate(names)}
        ids = []
        for raw in raws:
            absent = sorted({str(v) for v in raw.values} - index.keys())
            if absent:
                _raise_absent(raw, raws[0], absent)
            ids.append(np.array([index[str(v)] for v in raw.values], dtype=np.int64))
    check_coverage(names, raws, ids)
    return names, ids


def _ids_in_range(raw: RawLabels, num_classes: int | None) -> np.ndarray:
    """The values of ``raw`` as int64 ids; DataError unless each is an int in range."""
    bad = [v for v in raw.values if not _is_int(v)]
    if bad:
        raise DataError(
            f"{raw.where}: labels must be class ids (ints) here; got {_listed(bad)}; use the"
            " ids of the dataset's class list"
        )
    ids = np.asarray(raw.values, dtype=np.int64).reshape(-1)  # (n,)
    high = num_classes
    out = [int(v) for v in ids if v < 0 or (high is not None and v >= high)]
    if out:
        expected = f"[0, {high - 1}]" if high is not None else ">= 0"
        raise DataError(
            f"{raw.where}: label id(s) {_listed(sorted(set(out)))} out of range; expected"
            f" {expected}; fix the labels or the class list"
        )
    return ids


def check_coverage(class_names: Sequence[str], raws: Sequence[RawLabels], ids: Sequence[np.ndarray]) -> None:
    """Every val/test class occurs in train, and every class has training samples.

    Args:
        class_names: the source's classes.
        raws: the splits, train first (for their names and files).
        ids: int64 class ids of each split, aligned with ``raws``.

    Raises:
        DataError: naming the file, the label and the fix.
    """
    train_counts = np.bincount(ids[0], minlength=len(class_names))  # (C,)
    for raw, split_ids in zip(raws[1:], ids[1:]):
        absent = [class_names[int(c)] for c in np.unique(split_ids) if train_counts[c] == 0]
        if absent:
            _raise_absent(raw, raws[0], absent)
    empty = [class_names[int(c)] for c in np.flatnonzero(train_counts == 0)]
    if empty:
        raise DataError(
            f"{raws[0].where}: class(es) {_listed(empty)} have no training samples; every"
            " class needs some: add rows of them to the training split, or remove the classes"
            " (and renumber the ids)"
        )


def _raise_absent(raw: RawLabels, train: RawLabels, absent: Sequence[str]) -> None:
    raise DataError(
        f"{raw.where}: label(s) {_listed(absent)} do not occur in the training split"
        f" {train.where}; a client cannot learn a class it never trains on: add training rows"
        f" of those labels to {train.where}, or drop their rows from {raw.where}"
    )
