"""The hf_disk source: DatasetDicts built here, saved with save_to_disk, loaded back."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from dp2fl_ray.data import LazyImages, load_source
from dp2fl_ray.errors import ConfigError, DataError


def _save(folder: Path, **splits: datasets.Dataset) -> Path:
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def _tensor(inputs: object) -> torch.Tensor:
    """Image inputs as the tensor they must be (the test fails on anything else)."""
    assert isinstance(inputs, torch.Tensor)
    return inputs


def _text_features(names: list[str]) -> datasets.Features:
    return datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})


@pytest.fixture(autouse=True)
def _quiet_datasets() -> None:
    datasets.disable_progress_bars()


def test_text_with_class_label_names_round_trips(tmp_path: Path) -> None:
    features = _text_features(["neg", "pos", "meh"])

    def split(texts: list[str], labels: list[int]) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)

    folder = _save(
        tmp_path,
        train=split(["bad", "good", "fine", "awful"], [0, 1, 2, 0]),
        validation=split(["great"], [1]),
        test=split(["ok", "terrible"], [2, 0]),
    )
    s = load_source("hf_disk", str(folder))
    assert s.name == "hf_disk" and s.modality == "text"
    assert s.class_names == ("neg", "pos", "meh")  # the ClassLabel order, not sorted
    assert s.val is not None and s.val.take(np.array([0]))[0] == ["great"]
    texts, labels = s.train.take(np.arange(4))
    assert texts == ["bad", "good", "fine", "awful"]
    assert labels.tolist() == [0, 1, 2, 0]
    assert s.test.labels.tolist() == [2, 0]


def test_string_labels_without_class_label_are_sorted_names(tmp_path: Path) -> None:
    folder = _save(
        tmp_path,
        train=datasets.Dataset.from_dict({"text": ["a", "b"], "label": ["zoo", "bar"]}),
        test=datasets.Dataset.from_dict({"text": ["c"], "label": ["zoo"]}),
    )
    s = load_source("hf_disk", str(folder))
    assert s.class_names == ("bar", "zoo")
    assert s.train.labels.tolist() == [1, 0]
    assert s.val is None


def test_image_feature_round_trips_decoded_on_demand(tmp_path: Path) -> None:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["r", "b"])})
    red, blue = Image.new("RGB", (5, 3), (255, 0, 0)), Image.new("L", (3, 5), 0)  # L: grey to RGB
    folder = _save(
        tmp_path,
        train=datasets.Dataset.from_dict({"image": [red, blue], "label": [0, 1]}, features=features),
        test=datasets.Dataset.from_dict({"image": [blue], "label": [1]}, features=features),
    )
    s = load_source("hf_disk", str(folder), image_size=8)
    assert s.modality == "image" and isinstance(s.train.inputs, LazyImages)
    x, y = s.train.take(np.array([1, 0]))
    x = _tensor(x)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    torch.testing.assert_close(x.mean(dim=(2, 3)), torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert y.tolist() == [1, 0]


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist.*save_to_disk") as info:
        load_source("hf_disk", str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(info.value)


def test_a_single_saved_dataset_is_not_a_dataset_dict(tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"text": ["a"], "label": [0]}).save_to_disk(str(tmp_path))
    with pytest.raises(DataError, match="no dataset_dict.json.*DatasetDict") as info:
        load_source("hf_disk", str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_missing_test_split_lists_the_splits_found(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict({"text": ["a"], "label": [0]})
    _save(tmp_path, train=ds, dev=ds)
    with pytest.raises(DataError, match=r"no 'test' split \(found splits \['train', 'dev'\]\)"):
        load_source("hf_disk", str(tmp_path))


def test_unknown_column_is_listed_with_the_split_folder(tmp_path: Path) -> None:
    _save(
        tmp_path,
        train=datasets.Dataset.from_dict({"sentence": ["a"], "label": [0]}),
        test=datasets.Dataset.from_dict({"sentence": ["b"], "label": [0]}),
    )
    with pytest.raises(DataError, match=r"found columns \['sentence', 'label'\]") as info:
        load_source("hf_disk", str(tmp_path))
    assert str(tmp_path / "train") in str(info.value)


def test_test_label_absent_from_train_is_named(tmp_path: Path) -> None:
    features = _text_features(["a", "b"])
    _save(
        tmp_path,
        train=datasets.Dataset.from_dict({"text": ["x"], "label": [0]}, features=features),
        test=datasets.Dataset.from_dict({"text": ["y"], "label": [1]}, features=features),
    )
    with pytest.raises(DataError, match="'b'.*do not occur in the training split") as info:
        load_source("hf_disk", str(tmp_path))
    assert str(tmp_path / "test") in str(info.value)


def test_class_label_without_training_rows_is_an_empty_class(tmp_path: Path) -> None:
    features = _text_features(["a", "b"])
    split = datasets.Dataset.from_dict({"text": ["x"], "label": [0]}, features=features)
    _save(tmp_path, train=split, test=split)
    with pytest.raises(DataError, match="'b'.*no training samples") as info:
        load_source("hf_disk", str(tmp_path))
    assert str(tmp_path / "train") in str(info.value)


def test_hf_disk_without_a_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_source("hf_disk")
    assert info.value.field == "data.path"
