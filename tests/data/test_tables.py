"""CSV and Parquet sources: text and image round trips, label encodings, and every error."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dp2fl_ray.data import LazyImages, Partitioner, load_source
from dp2fl_ray.errors import ConfigError, DataError

KINDS = ["csv", "parquet"]
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _tensor(inputs: object) -> torch.Tensor:
    """Image inputs as the tensor they must be (the test fails on anything else)."""
    assert isinstance(inputs, torch.Tensor)
    return inputs


def _write(folder: Path, kind: str, **tables: Mapping[str, Any]) -> Path:
    """Write each ``stem=columns`` table as ``folder/stem.csv`` or ``.parquet``."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, columns in tables.items():
        frame = pd.DataFrame(columns)
        if kind == "csv":
            frame.to_csv(folder / f"{stem}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{stem}.parquet", index=False)
    return folder


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_text_with_label_names_round_trips(tmp_path: Path, kind: str) -> None:
    train = {
        "text": ["book a flight", "NA", "007", "play jazz"],
        "label": ["travel", "misc", "misc", "music"],
    }
    val = {"text": ["fly me"], "label": ["travel"]}
    test = {"text": ["some blues", "null"], "label": ["music", "misc"]}
    s = load_source(kind, str(_write(tmp_path, kind, train=train, val=val, test=test)))
    assert s.name == kind and s.modality == "text"
    assert s.class_names == ("misc", "music", "travel")  # sorted names
    assert s.val is not None
    texts, labels = s.train.take(np.arange(4))
    assert texts == train["text"]  # "NA" and "007" stay text
    assert [s.class_names[i] for i in labels.tolist()] == train["label"]
    assert s.test.take(np.array([1]))[0] == ["null"]
    assert s.val.labels.tolist() == [2]


@pytest.mark.parametrize("kind", KINDS)
def test_text_with_int_labels_round_trips_without_val(tmp_path: Path, kind: str) -> None:
    train = {"text": ["a", "b", "c", "d"], "label": [2, 0, 1, 2]}
    test = {"text": ["e", "f"], "label": [1, 2]}
    s = load_source(kind, str(_write(tmp_path, kind, train=train, test=test)))
    assert s.class_names == ("0", "1", "2")
    assert s.train.labels.tolist() == [2, 0, 1, 2]
    assert s.test.labels.tolist() == [1, 2]
    assert s.val is None and s.val_pool is s.test


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("labels", [["red", "green", "blue"], [0, 1, 2]])
def test_images_load_lazily_as_rgb_unit_tensors_of_image_size(
    tmp_path: Path, write_png, kind: str, labels: list[object]
) -> None:
    for name, colour in (("r", RED), ("g", GREEN), ("b", BLUE)):
        write_png(tmp_path / "img" / f"{name}.png", colour, size=(7, 3))
    train = {"image": ["img/r.png", "img/g.png", "img/b.png"], "label": labels}
    test = {"image": ["img/b.png"], "label": [labels[2]]}
    s = load_source(kind, str(_write(tmp_path, kind, train=train, test=test)), image_size=6)
    assert s.modality == "image"
    assert isinstance(s.train.inputs, LazyImages)
    assert s.train.inputs.shape == (3, 3, 6, 6)
    x, y = s.train.take(np.array([2, 0]))
    x = _tensor(x)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 6, 6)
    expected = torch.tensor([BLUE, RED], dtype=torch.float32) / 255.0  # (2, 3)
    torch.testing.assert_close(x.mean(dim=(2, 3)), expected)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert [s.class_names[i] for i in y.tolist()] == [str(labels[2]), str(labels[0])]


def test_image_size_defaults_to_224(tmp_path: Path, write_png) -> None:
    write_png(tmp_path / "a.png", RED)
    s = load_source("csv", str(_write(tmp_path, "csv", train={"image": ["a.png"], "label": ["x"]},
                                      test={"image": ["a.png"], "label": ["x"]})))  # fmt: skip
    assert _tensor(s.test.take(np.array([0]))[0]).shape == (1, 3, 224, 224)


def test_parquet_with_embedded_image_bytes_round_trips(tmp_path: Path) -> None:
    # what Dataset.to_parquet writes for an Image feature: {"bytes": ..., "path": ...}
    def png(colour: tuple[int, int, int]) -> dict[str, object]:
        buf = io.BytesIO()
        Image.new("RGB", (4, 4), colour).save(buf, format="PNG")
        return {"bytes": buf.getvalue(), "path": None}

    train = {"image": [png(RED), png(GREEN)], "label": ["r", "g"]}
    test = {"image": [png(GREEN)], "label": ["g"]}
    s = load_source("parquet", str(_write(tmp_path, "parquet", train=train, test=test)), image_size=4)
    x, _ = s.train.take(np.array([1]))
    x = _tensor(x)
    torch.testing.assert_close(x.mean(dim=(2, 3)), torch.tensor([[0.0, 1.0, 0.0]]))


def test_partitions_work_on_a_table_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    words = [f"utterance {i}" for i in range(60)]
    labels = rng.permutation(np.repeat(["a", "b", "c"], 20)).tolist()
    folder = _write(tmp_path, "csv", train={"text": words, "label": labels},
                    test={"text": words, "label": labels})  # fmt: skip
    s = load_source("csv", str(folder))
    for scheme in ("paper", "iid", "dirichlet"):
        c = Partitioner(s, scheme, seed=0, samples_per_client=10).client(0)
        texts, y = s.train.take(c.train)
        assert len(texts) == len(y) > 0 and all(isinstance(t, str) for t in texts)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_missing_folder_is_named_with_the_fix(tmp_path: Path, kind: str) -> None:
    with pytest.raises(DataError, match=f"does not exist.*train.{kind}") as info:
        load_source(kind, str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_missing_test_table_is_named(tmp_path: Path, kind: str) -> None:
    _write(tmp_path, kind, train={"text": ["a"], "label": ["x"]})
    with pytest.raises(DataError, match="does not exist") as info:
        load_source(kind, str(tmp_path))
    assert str(tmp_path / f"test.{kind}") in str(info.value)


def test_table_source_without_a_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_source("parquet")
    assert info.value.field == "data.path"
    assert "train.parquet" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_columns_are_listed_with_the_file(tmp_path: Path, kind: str) -> None:
    _write(tmp_path, kind, train={"sentence": ["a"], "label": ["x"]}, test={"text": ["a"], "label": ["x"]})
    with pytest.raises(DataError, match=r"found columns \['sentence', 'label'\]") as info:
        load_source(kind, str(tmp_path))
    assert str(tmp_path / f"train.{kind}") in str(info.value)


def test_missing_label_column_is_named(tmp_path: Path) -> None:
    _write(tmp_path, "csv", train={"text": ["a"], "label": ["x"]}, test={"text": ["a"], "y": ["x"]})
    with pytest.raises(DataError, match=r"`label`.*found columns \['text', 'y'\]") as info:
        load_source("csv", str(tmp_path))
    assert str(tmp_path / "test.csv") in str(info.value)


def test_text_and_image_columns_together_are_ambiguous(tmp_path: Path) -> None:
    both = {"text": ["a"], "image": ["a.png"], "label": ["x"]}
    _write(tmp_path, "csv", train=both, test=both)
    with pytest.raises(DataError, match="both `text` and `image`"):
        load_source("csv", str(tmp_path))


def test_tables_with_different_input_columns_are_an_error(tmp_path: Path, write_png) -> None:
    write_png(tmp_path / "a.png", RED)
    _write(tmp_path, "csv", train={"text": ["a"], "label": ["x"]}, test={"image": ["a.png"], "label": ["x"]})
    with pytest.raises(DataError, match="same input column") as info:
        load_source("csv", str(tmp_path))
    assert "test.csv" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_test_label_absent_from_train_names_file_label_and_fix(tmp_path: Path, kind: str) -> None:
    _write(tmp_path, kind, train={"text": ["a", "b"], "label": ["cat", "dog"]},
           test={"text": ["c", "d"], "label": ["dog", "zebra"]})  # fmt: skip
    with pytest.raises(DataError, match="'zebra'.*do not occur in the training split") as info:
        load_source(kind, str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / f"test.{kind}") in message and str(tmp_path / f"train.{kind}") in message
    assert "add training rows" in message


def test_val_int_label_absent_from_train_is_named(tmp_path: Path) -> None:
    _write(tmp_path, "csv", train={"text": ["a", "b"], "label": [0, 1]},
           val={"text": ["c"], "label": [5]}, test={"text": ["d"], "label": [1]})  # fmt: skip
    with pytest.raises(DataError, match="'5'.*do not occur") as info:
        load_source("csv", str(tmp_path))
    assert str(tmp_path / "val.csv") in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_class_id_without_training_rows_is_an_empty_class(tmp_path: Path, kind: str) -> None:
    _write(tmp_path, kind, train={"text": ["a", "b"], "label": [0, 2]},
           test={"text": ["c"], "label": [2]})  # fmt: skip
    with pytest.raises(DataError, match="'1'.*no training samples") as info:
        load_source(kind, str(tmp_path))
    assert str(tmp_path / f"train.{kind}") in str(info.value)


def test_row_without_label_is_named(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\na,x\nb,\n")
    (tmp_path / "test.csv").write_text("text,label\nc,x\n")
    with pytest.raises(DataError, match="row.* 1 have no label") as info:
        load_source("csv", str(tmp_path))
    assert str(tmp_path / "train.csv") in str(info.value)


def test_missing_image_file_is_named_at_load(tmp_path: Path, write_png) -> None:
    write_png(tmp_path / "a.png", RED)
    _write(tmp_path, "csv", train={"image": ["a.png", "gone.png"], "label": ["x", "x"]},
           test={"image": ["a.png"], "label": ["x"]})  # fmt: skip
    with pytest.raises(DataError, match="do not exist") as info:
        load_source("csv", str(tmp_path))
    assert str(tmp_path / "gone.png") in str(info.value) and "train.csv" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_unreadable_image_is_named_when_loaded(tmp_path: Path, write_png, kind: str) -> None:
    write_png(tmp_path / "ok.png", RED)
    (tmp_path / "bad.png").write_bytes(b"this is not a png")
    _write(tmp_path, kind, train={"image": ["ok.png", "bad.png"], "label": ["x", "x"]},
           test={"image": ["ok.png"], "label": ["x"]})  # fmt: skip
    s = load_source(kind, str(tmp_path), image_size=4)  # lazy: nothing decoded yet
    assert _tensor(s.train.take(np.array([0]))[0]).shape == (1, 3, 4, 4)
    with pytest.raises(DataError, match="cannot read image") as info:
        s.train.take(np.array([0, 1]))
    assert str(tmp_path / "bad.png") in str(info.value)


def test_unreadable_table_is_named(tmp_path: Path) -> None:
    (tmp_path / "train.parquet").write_bytes(b"not parquet at all")
    _write(tmp_path, "parquet", test={"text": ["a"], "label": ["x"]})
    with pytest.raises(DataError, match="cannot read") as info:
        load_source("parquet", str(tmp_path))
    assert str(tmp_path / "train.parquet") in str(info.value)
