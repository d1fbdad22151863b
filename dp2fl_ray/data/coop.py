"""CoOp-style image datasets: an image folder and a split JSON, as prompt-learning papers
(CoOp, CoCoOp, MaPLe) ship Caltech101, DTD, EuroSAT, OxfordPets, Flowers102, Food101...

The split JSON (``split_zhou_Caltech101.json`` and the like) has keys ``train``, ``val``,
``test``, each a list of ``[relative_image_path, label_id, class_name]``.

Where the images are (CoOp's own layout: the JSON sits in the dataset folder beside the
image folder, and paths are relative to the image folder):

* ``data.path`` is the dataset folder holding exactly one ``split_*.json``, or the JSON file
  itself (to pick one of several);
* the image folder is the first of these, beside the JSON, under which the first training
  image exists: ``images/``; CoOp's folder names (``101_ObjectCategories``, ``2750``,
  ``jpg``, ``SUN397``, ``UCF-101-midframes``); any other sub-folder, in name order; the
  JSON's folder itself (Stanford Cars' layout).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dp2fl_ray.data.base import DataSource, Split
from dp2fl_ray.data.images import DEFAULT_IMAGE_SIZE, ImageFiles
from dp2fl_ray.data.labels import RawLabels, encode_labels
from dp2fl_ray.errors import DataError

IMAGE_DIRS = ("images", "101_ObjectCategories", "2750", "jpg", "SUN397", "UCF-101-midframes")
_SPLITS = ("train", "val", "test")  # val is optional


def load_coop_source(path: str | os.PathLike[str], *, image_size: int = DEFAULT_IMAGE_SIZE) -> DataSource:
    """Load a CoOp-style dataset (see the module docstring for the layout).

    Args:
        path: the dataset folder, or its split JSON.
        image_size: side of the square image tensors.

    Returns:
        A source named ``"coop"`` with lazily decoded images; class names from the JSON.

    Raises:
        DataError: a missing folder, JSON or image; no or several split JSONs; malformed
            JSON; one label id with two names; a class without training samples or a
            val/test label absent from train.
    """
    split_file = find_split_json(Path(path))
    data = _read(split_file)
    rows = {s: _rows(data, s, split_file) for s in _SPLITS if s in data or s != "val"}
    root = image_root(split_file, rows["train"][0][0])

    names: dict[int, str] = {}
    for split, split_rows in rows.items():
        for i, (_, label, name) in enumerate(split_rows):
            if names.setdefault(label, name) != name:
                raise DataError(
                    f"{split_file}: label {label} is named {names[label]!r} and, in row {i} of"
                    f" {split}, {name!r}; give each label id one class name"
                )
    # ids with no name anywhere get a placeholder; the coverage check then names them
    class_names = [names.get(c, f"<unnamed id {c}>") for c in range(max(names) + 1)]
    raws = [RawLabels(s, f"{split_file} [{s}]", [r[1] for r in rs]) for s, rs in rows.items()]
    class_names_t, ids = encode_labels(raws, class_names)

    splits: dict[str, Split] = {}
    for (split, split_rows), labels in zip(rows.items(), ids):
        images = ImageFiles(root, [r[0] for r in split_rows], image_size, f"{split_file} [{split}]")
        images.check_exist()
        splits[split] = Split(images, labels)
    return DataSource(
        name="coop",
        modality="image",
        class_names=class_names_t,
        train=splits["train"],
        test=splits["test"],
        val=splits.get("val"),
    )


def find_split_json(path: Path) -> Path:
    """The split JSON ``path`` names: itself if a file, else the one ``split_*.json`` in it."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(
            f"coop source: {path} does not exist; set data.path to a CoOp dataset folder (its"
            " images and a split_*.json) or to the split JSON itself"
        )
    found = sorted(path.glob("split_*.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(
            f"{path} holds no split_*.json; put the CoOp split file (e.g."
            " split_zhou_Caltech101.json) there, or set data.path to the JSON itself"
        )
    raise DataError(
        f"{path} holds several split files {[f.name for f in found]}; set data.path to the one to use"
    )


def image_root(split_file: Path, first_image: str) -> Path:
    """The folder the JSON's image paths are relative to (see the module docstring)."""
    base = split_file.parent
    named = [base / d for d in IMAGE_DIRS]
    others = sorted(p for p in base.iterdir() if p.is_dir() and p not in named)
    candidates = [*named, *others, base]
    for root in candidates:
        if (root / first_image).is_file():
            return root
    tried = ", ".join(str(c) for c in candidates if c.is_dir())
    raise DataError(
        f"{split_file}: cannot find its first train image {first_image!r} under any of"
        f" {tried}; put the images in {base / 'images'} (paths as in the JSON)"
    )


def _read(file: Path) -> Any:
    try:
        with file.open(encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{file} is not readable JSON ({exc}); expected a CoOp split file with keys train, val, test"
        ) from exc


def _rows(data: Any, split: str, file: Path) -> list[tuple[str, int, str]]:
    """The ``[path, label, name]`` rows of one split, checked."""
    if not isinstance(data, dict) or split not in data:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(
            f"{file}: no {split!r} key (found {found}); a CoOp split file has keys train, val"
            " (optional here) and test"
        )
    out: list[tuple[str, int, str]] = []
    for i, row in enumerate(data[split] if isinstance(data[split], list) else [None]):
        ok = (
            isinstance(row, list)
            and len(row) == 3
            and isinstance(row[0], str)
            and isinstance(row[1], int)
            and not isinstance(row[1], bool)
            and isinstance(row[2], str)
        )
        if not ok:
            raise DataError(
                f"{file}: {split} row {i} is {row!r}; expected [relative_image_path, label_id, class_name]"
            )
        out.append((row[0], row[1], row[2]))
    if not out:
        raise DataError(f"{file}: the {split} split is empty; give it some rows")
    return out
