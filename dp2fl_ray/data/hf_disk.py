"""A Hugging Face ``DatasetDict`` saved with ``save_to_disk``: splits ``train`` and ``test``,
optionally ``validation`` (or ``val``); columns ``label`` and ``text`` or ``image``.

A ``ClassLabel`` label feature gives the class names; otherwise labels are names or ids as in
:func:`~dp2fl_ray.data.labels.encode_labels`. An ``Image`` feature stays in the
memory-mapped Arrow files and is decoded only for the rows a client asks for; an image
column of strings holds paths relative to the saved folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from dp2fl_ray.data.base import DataSource, Inputs, Split
from dp2fl_ray.data.images import DEFAULT_IMAGE_SIZE, LazyImages
from dp2fl_ray.data.labels import RawLabels, encode_labels
from dp2fl_ray.data.tables import image_column, input_column, text_column
from dp2fl_ray.errors import DataError

# Our split -> the DatasetDict keys that may hold it.
SPLIT_KEYS = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}
_SAVE = "DatasetDict({'train': ..., 'test': ...}).save_to_disk(path)"


class HFImages(LazyImages):
    """The ``Image`` column of a Hugging Face dataset, decoded row by row on demand.

    Args:
        dataset: the split (a ``datasets.Dataset``, memory-mapped from disk).
        column: the image column.
        image_size: the side of the square tensors :meth:`load` returns.
        where: the split's folder, named in errors.
    """

    def __init__(self, dataset: Any, column: str, image_size: int, where: str) -> None:
        super().__init__(image_size)
        self.dataset = dataset.select_columns([column])
        self.column = column
        self.where_ = where

    def __len__(self) -> int:
        return len(self.dataset)

    def _open(self, i: int) -> Image.Image:
        image = self.dataset[i][self.column]  # datasets decodes the Image feature to PIL
        if not isinstance(image, Image.Image):
            raise UnidentifiedImageError(f"the row holds {type(image).__name__}, not an image")
        return image

    def where(self, i: int) -> str:
        return f"in row {i} of {self.where_}"


def load_hf_disk_source(path: str | os.PathLike[str], *, image_size: int = DEFAULT_IMAGE_SIZE) -> DataSource:
    """Load a ``DatasetDict`` saved with ``save_to_disk``.

    Args:
        path: the folder given to ``save_to_disk``.
        image_size: side of the square image tensors, for an image column.

    Raises:
        DataError: the ``datasets`` package is missing; the folder is missing or not a saved
            DatasetDict; a split or column is missing; labels are inconsistent (as for the
            table sources).
    """
    datasets = _import_datasets()
    folder = Path(path)
    if not (folder / "dataset_dict.json").is_file():
        what = "does not exist" if not folder.is_dir() else "holds no dataset_dict.json"
        raise DataError(
            f"hf_disk source: {folder} {what}; set data.path to a folder written by {_SAVE}"
            " (a single Dataset must be wrapped in a DatasetDict with train and test)"
        )
    try:
        dd = datasets.load_from_disk(str(folder))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load {folder} with datasets.load_from_disk: {exc}") from exc
    split_sets = _pick_splits(dd, folder)

    columns = {s: list(ds.column_names) for s, ds in split_sets.items()}
    column = input_column(columns["train"], str(folder / _key(dd, "train")))
    for split, cols in columns.items():
        where = str(folder / _key(dd, split))
        if input_column(cols, where) != column:
            raise DataError(
                f"{where} has no `{column}` column like the train split; found {cols}: every"
                " split needs the same input column"
            )
    names = _class_label_names(datasets, split_sets, folder)
    raws = [RawLabels(s, str(folder / _key(dd, s)), _column(ds, "label")) for s, ds in split_sets.items()]
    class_names, ids = encode_labels(raws, names)
    splits: dict[str, Split] = {}
    for (split, ds), labels in zip(split_sets.items(), ids):
        where = str(folder / _key(dd, split))
        inputs: Inputs
        if column == "text":
            inputs = text_column(_column(ds, "text"), where)
        elif isinstance(ds.features[column], datasets.Image):
            inputs = HFImages(ds, column, image_size, where)
        else:
            inputs = image_column(_column(ds, column), folder, where, image_size)
        splits[split] = Split(inputs, labels)
    return DataSource(
        name="hf_disk",
        modality="text" if column == "text" else "image",
        class_names=class_names,
        train=splits["train"],
        test=splits["test"],
        val=splits.get("val"),
    )


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise DataError(
            "the hf_disk source needs the `datasets` package: pip install 'dp2fl-ray[hf]'"
        ) from exc
    return datasets


def _key(dd: Any, split: str) -> str:
    """The DatasetDict key holding ``split`` (its folder name under the saved folder)."""
    return next(k for k in SPLIT_KEYS[split] if k in dd)


def _pick_splits(dd: Any, folder: Path) -> dict[str, Any]:
    """``{"train": ds, ["val": ds,] "test": ds}``; DataError on a missing or doubled split."""
    found = list(dd.keys()) if hasattr(dd, "keys") else []
    out: dict[str, Any] = {}
    for split, keys in SPLIT_KEYS.items():
        present = [k for k in keys if k in found]
        if len(present) > 1:
            raise DataError(f"{folder} has splits {present}; keep one of them as validation")
        if present:
            out[split] = dd[present[0]]
        elif split != "val":
            raise DataError(
                f"{folder} has no {split!r} split (found splits {found}); save a DatasetDict"
                f" with splits train and test (validation optional): {_SAVE}"
            )
    return out


def _class_label_names(datasets: Any, split_sets: dict[str, Any], folder: Path) -> list[str] | None:
    """The ClassLabel names of the ``label`` feature, or None; DataError if splits disagree."""
    names: list[str] | None = None
    for split, ds in split_sets.items():
        feature = ds.features["label"]
        these = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        if split == "train":
            names = these
        elif these != names:
            raise DataError(
                f"{folder}: the {split} split's label feature ({feature}) differs from train's;"
                " cast every split to the same ClassLabel (Dataset.cast_column)"
            )
    return names


def _column(ds: Any, name: str) -> list[Any]:
    """A column as Python values, undecoded (Arrow), honouring any index mapping."""
    table = ds.select_columns([name]).with_format("arrow")[:]
    return list(table.column(name).to_pylist())
