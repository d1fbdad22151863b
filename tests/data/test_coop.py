"""CoOp-style sources: tiny PNGs and a split JSON written here, in CoOp's layouts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dp2fl_ray.data import LazyImages, load_source
from dp2fl_ray.errors import DataError

COLOURS = {"cat": (255, 0, 0), "dog": (0, 0, 255), "owl": (0, 255, 0)}

# [relative path, label id, class name], as in CoOp's split_zhou_*.json
SPLIT: dict[str, list[list[Any]]] = {
    "train": [
        ["cat/1.png", 0, "cat"],
        ["dog/1.png", 1, "dog"],
        ["owl/1.png", 2, "owl"],
        ["cat/2.png", 0, "cat"],
    ],
    "val": [["dog/2.png", 1, "dog"]],
    "test": [["owl/2.png", 2, "owl"], ["cat/3.png", 0, "cat"]],
}


def _tensor(inputs: object) -> torch.Tensor:
    """Image inputs as the tensor they must be (the test fails on anything else)."""
    assert isinstance(inputs, torch.Tensor)
    return inputs


def _dataset(
    root: Path,
    write_png: Callable[..., Path],
    image_dir: str = "images",
    split: dict[str, Any] | None = None,
    json_name: str = "split_zhou_Tiny.json",
) -> Path:
    """Write the PNGs of ``SPLIT`` under ``root/image_dir`` and the JSON beside them."""
    split = SPLIT if split is None else split
    for rows in SPLIT.values():
        for rel, _, name in rows:
            write_png(root / image_dir / str(rel), COLOURS[str(name)])
    root.mkdir(parents=True, exist_ok=True)
    (root / json_name).write_text(json.dumps(split))
    return root


def test_coop_round_trips_names_labels_and_pixels(tmp_path: Path, write_png) -> None:
    s = load_source("coop", str(_dataset(tmp_path, write_png)), image_size=5)
    assert s.name == "coop" and s.modality == "image"
    assert s.class_names == ("cat", "dog", "owl")  # by label id
    assert isinstance(s.train.inputs, LazyImages)
    assert s.train.labels.tolist() == [0, 1, 2, 0]
    assert s.val is not None and s.val.labels.tolist() == [1]
    assert s.test.labels.tolist() == [2, 0]
    x, y = s.test.take(np.array([0, 1]))
    x = _tensor(x)
    assert x.shape == (2, 3, 5, 5)
    expected = torch.tensor([COLOURS["owl"], COLOURS["cat"]], dtype=torch.float32) / 255.0
    torch.testing.assert_close(x.mean(dim=(2, 3)), expected)
    assert y.tolist() == [2, 0]


@pytest.mark.parametrize("image_dir", ["images", "101_ObjectCategories", "2750", "my_own_folder", "."])
def test_image_folder_is_found_beside_the_json(tmp_path: Path, write_png, image_dir: str) -> None:
    # images/, CoOp's folder names (Caltech101, EuroSAT), any sub-folder, or the JSON's own
    s = load_source("coop", str(_dataset(tmp_path, write_png, image_dir)), image_size=2)
    x, _ = s.train.take(np.array([1]))
    x = _tensor(x)
    torch.testing.assert_close(x.mean(dim=(2, 3)), torch.tensor([[0.0, 0.0, 1.0]]))


def test_path_may_name_the_json_among_several(tmp_path: Path, write_png) -> None:
    _dataset(tmp_path, write_png)
    few = {"train": SPLIT["train"][:3], "test": SPLIT["test"]}  # no val: optional
    (tmp_path / "split_fewshot.json").write_text(json.dumps(few))
    with pytest.raises(DataError, match="several split files") as info:
        load_source("coop", str(tmp_path))
    assert "split_fewshot.json" in str(info.value) and "split_zhou_Tiny.json" in str(info.value)
    s = load_source("coop", str(tmp_path / "split_fewshot.json"), image_size=2)
    assert len(s.train) == 3 and s.val is None


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        load_source("coop", str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(info.value)


def test_folder_without_split_json_says_what_to_put_there(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match=r"no split_\*\.json") as info:
        load_source("coop", str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_split_json_without_test_lists_its_keys(tmp_path: Path, write_png) -> None:
    _dataset(tmp_path, write_png, split={"train": SPLIT["train"], "valid": []})
    with pytest.raises(DataError, match=r"no 'test' key \(found \['train', 'valid'\]\)") as info:
        load_source("coop", str(tmp_path))
    assert "split_zhou_Tiny.json" in str(info.value)


def test_malformed_row_is_named(tmp_path: Path, write_png) -> None:
    bad = dict(SPLIT, test=[["owl/2.png", "owl"]])
    _dataset(tmp_path, write_png, split=bad)
    with pytest.raises(DataError, match=r"test row 0 .*\[relative_image_path, label_id, class_name\]"):
        load_source("coop", str(tmp_path))


def test_images_nowhere_beside_the_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "split_zhou_Tiny.json").write_text(json.dumps(SPLIT))
    with pytest.raises(DataError, match="cannot find its first train image 'cat/1.png'") as info:
        load_source("coop", str(tmp_path))
    assert str(tmp_path / "images") in str(info.value)


def test_missing_image_file_is_named(tmp_path: Path, write_png) -> None:
    _dataset(tmp_path, write_png)
    (tmp_path / "images" / "owl" / "2.png").unlink()
    with pytest.raises(DataError, match="do not exist") as info:
        load_source("coop", str(tmp_path))
    assert str(tmp_path / "images" / "owl" / "2.png") in str(info.value)
    assert "split_zhou_Tiny.json [test]" in str(info.value)


def test_unreadable_image_is_named_when_loaded(tmp_path: Path, write_png) -> None:
    _dataset(tmp_path, write_png)
    (tmp_path / "images" / "dog" / "1.png").write_bytes(b"\x89PNG broken")
    s = load_source("coop", str(tmp_path), image_size=2)
    with pytest.raises(DataError, match="cannot read image") as info:
        s.train.take(np.array([1]))
    assert str(tmp_path / "images" / "dog" / "1.png") in str(info.value)


def test_test_label_absent_from_train_is_named(tmp_path: Path, write_png) -> None:
    bad = dict(SPLIT, train=[r for r in SPLIT["train"] if r[2] != "owl"])
    _dataset(tmp_path, write_png, split=bad)
    with pytest.raises(DataError, match="'owl'.*do not occur in the training split") as info:
        load_source("coop", str(tmp_path))
    assert "split_zhou_Tiny.json [test]" in str(info.value)


def test_label_id_without_any_row_is_an_empty_class(tmp_path: Path, write_png) -> None:
    renumbered = {s: [[p, 3 if n == "owl" else i, n] for p, i, n in rows] for s, rows in SPLIT.items()}
    _dataset(tmp_path, write_png, split=renumbered)  # ids 0, 1, 3: id 2 has no class at all
    with pytest.raises(DataError, match="no training samples") as info:
        load_source("coop", str(tmp_path))
    assert "split_zhou_Tiny.json [train]" in str(info.value)


def test_one_id_with_two_names_is_an_error(tmp_path: Path, write_png) -> None:
    bad = dict(SPLIT, val=[["dog/2.png", 1, "puppy"]])
    _dataset(tmp_path, write_png, split=bad)
    with pytest.raises(DataError, match="label 1 is named 'dog'.*'puppy'"):
        load_source("coop", str(tmp_path))
