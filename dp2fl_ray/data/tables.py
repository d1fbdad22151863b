"""Sources from a folder of tables: ``train``, ``test`` and optional ``val`` as CSV or Parquet.

Each table has a ``label`` column (class names, or int class ids) and one input column:

* ``text``: the utterance, kept as a Python ``str``;
* ``image``: a path relative to the folder (decoded on demand, see
  :mod:`dp2fl_ray.data.images`); in Parquet also Hugging Face's image struct
  ``{"bytes": ..., "path": ...}`` (what ``Dataset.to_parquet`` writes), kept encoded.

Label names become classes sorted by name; see :func:`~dp2fl_ray.data.labels.encode_labels`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from dp2fl_ray.data.base import DataSource, Inputs, Split
from dp2fl_ray.data.images import DEFAULT_IMAGE_SIZE, EncodedImages, ImageFiles, LazyImages
from dp2fl_ray.data.labels import RawLabels, encode_labels
from dp2fl_ray.errors import DataError

INPUT_COLUMNS = ("text", "image")
# Split -> the file stems that may hold it ("validation" is what Hugging Face calls val).
SPLIT_STEMS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}
_EXT = {"csv": ".csv", "parquet": ".parquet"}


def input_column(columns: Sequence[str], where: str) -> str:
    """The input column (``text`` or ``image``) of a table that must also have ``label``.

    Raises:
        DataError: ``label`` is missing, or not exactly one input column is present; the
            message lists the columns found.
    """
    inputs = [c for c in INPUT_COLUMNS if c in columns]
    if "label" in columns and len(inputs) == 1:
        return inputs[0]
    problem = (
        "has both `text` and `image` columns; keep one"
        if len(inputs) == 2
        else "needs a `label` column and one input column, `text` or `image`"
    )
    raise DataError(f"{where} {problem}; found columns {list(columns)}: rename or drop columns to match")


def load_table_source(
    kind: str, path: str | os.PathLike[str], *, image_size: int = DEFAULT_IMAGE_SIZE
) -> DataSource:
    """Load a folder of ``train``/``test`` (and optional ``val``) CSV or Parquet tables.

    Args:
        kind: ``"csv"`` or ``"parquet"`` (also the source's name).
        path: the folder.
        image_size: side of the square image tensors, for an ``image`` column.

    Raises:
        DataError: a missing folder or table, unreadable table, unknown columns, different
            input columns across tables, missing labels, a class empty in train or a
            val/test label absent from train, a missing image file.
    """
    folder = Path(path)
    ext = _EXT[kind]
    if not folder.is_dir():
        raise DataError(
            f"{kind} source: folder {folder} does not exist; set data.path to a folder with"
            f" train{ext} and test{ext} (val{ext} optional)"
        )
    files = find_split_files(folder, ext)
    frames = {split: _read_table(kind, file) for split, file in files.items()}
    column = input_column(list(frames["train"].columns), str(files["train"]))
    for split, frame in frames.items():
        other = input_column(list(frame.columns), str(files[split]))
        if other != column:
            raise DataError(
                f"{files[split]} has a `{other}` column but {files['train']} has `{column}`;"
                " every table of a source needs the same input column"
            )
    raws = [RawLabels(s, str(files[s]), frames[s]["label"].tolist()) for s in frames]
    class_names, ids = encode_labels(raws)
    splits: dict[str, Split] = {}
    for (split, frame), labels in zip(frames.items(), ids):
        values = frame[column].tolist()
        where = str(files[split])
        inputs: Inputs
        if column == "text":
            inputs = text_column(values, where)
        else:
            inputs = image_column(values, folder, where, image_size)
        splits[split] = Split(inputs, labels)
    return DataSource(
        name=kind,
        modality="text" if column == "text" else "image",
        class_names=class_names,
        train=splits["train"],
        test=splits["test"],
        val=splits.get("val"),
    )


def find_split_files(folder: Path, ext: str) -> dict[str, Path]:
    """``{"train": file, ["val": file,] "test": file}`` in that order; DataError if unclear."""
    files: dict[str, Path] = {}
    for split, stems in SPLIT_STEMS.items():
        found = [folder / f"{stem}{ext}" for stem in stems if (folder / f"{stem}{ext}").is_file()]
        if len(found) > 1:
            raise DataError(f"{folder} has both {found[0].name} and {found[1].name}; keep one {split} table")
        if found:
            files[split] = found[0]
        elif split != "val":
            present = sorted(p.name for p in folder.iterdir())
            raise DataError(
                f"{folder / f'{split}{ext}'} does not exist (the folder holds {present[:10]});"
                f" a table source needs train{ext} and test{ext} (val{ext} optional)"
            )
    return files


def _read_table(kind: str, file: Path) -> pd.DataFrame:
    try:
        if kind == "csv":
            # keep_default_na=False: an utterance "NA" or "null" stays text, empty cells are "";
            # str dtype: an utterance "007" stays "007" (ignored when there is no such column)
            return pd.read_csv(file, keep_default_na=False, dtype={"text": str, "image": str})
        return pd.read_parquet(file)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{file} is not UTF-8 text: row {_first_bad_row(file)} "
            f"holds the byte 0x{exc.object[exc.start]:02x};"
            " re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from exc
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise DataError(
            f"cannot read {file} as {kind}: {type(exc).__name__}: {exc}; rewrite it (e.g."
            f" DataFrame.to_{kind})"
        ) from exc


def _first_bad_row(file: Path) -> int:
    """The 1-based data row (the header is row 0) of the first line that is not UTF-8."""
    with open(file, "rb") as f:
        for line_no, line in enumerate(f):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return line_no
    return -1


def text_column(values: list[object], where: str) -> np.ndarray:
    """Text inputs as an object array of str ``(N,)``; DataError on a missing one."""
    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise DataError(
            f"{where}: the `text` of row(s) {bad[:5]} is not a string (got {values[bad[0]]!r});"
            " give every row its text"
        )
    return np.array(values, dtype=object)  # (N,) str


def image_column(values: list[object], folder: Path, where: str, image_size: int) -> LazyImages:
    """Images from a column of relative paths, or of ``{"bytes", "path"}`` structs.

    Paths are checked to exist now (a stat each); images are decoded only when loaded.

    Raises:
        DataError: a value that is neither, a column mixing the two, a missing file.
    """
    paths: list[str] = []
    blobs: list[bytes] = []
    for i, v in enumerate(values):
        if isinstance(v, Mapping) and v.get("bytes"):
            blobs.append(bytes(v["bytes"]))
        elif isinstance(v, Mapping) and isinstance(v.get("path"), str) and v["path"]:
            paths.append(v["path"])
        elif isinstance(v, str) and v:
            paths.append(v)
        else:
            raise DataError(
                f"{where}: the `image` of row {i} is {v!r}; expected a path relative to"
                f" {folder} (or an image struct with bytes)"
            )
    if paths and blobs:
        raise DataError(f"{where}: the `image` column mixes file paths and embedded bytes; use one kind")
    if blobs:
        return EncodedImages(blobs, image_size, where)
    files = ImageFiles(folder, paths, image_size, where)
    files.check_exist()
    return files
