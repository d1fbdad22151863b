"""Data sources: the digits loader, the synthetic generator, Split, DataSource checks and the
load_source dispatch (the file sources have test modules of their own)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2fl_ray.data import DataSource, Split, load_source
from dp2fl_ray.data.digits import load_digits_source
from dp2fl_ray.data.synthetic import load_synthetic_source
from dp2fl_ray.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits() -> DataSource:
    return load_digits_source()


def _tensor(inputs: object) -> torch.Tensor:
    """Image inputs as the tensor they must be (the test fails on anything else)."""
    assert isinstance(inputs, torch.Tensor)
    return inputs


# -- digits ---------------------------------------------------------------------------------


def test_digits_has_all_1797_images_as_3_channel_8x8_in_unit_range(digits: DataSource) -> None:
    assert len(digits.train) + len(digits.test) == 1797
    for split in (digits.train, digits.test):
        x = _tensor(split.inputs)
        assert x.dtype == torch.float32
        assert x.shape[1:] == (3, 8, 8)
        assert float(x.min()) == 0.0
        assert float(x.max()) == 1.0
        # the three channels are copies of one grey image
        assert torch.equal(x[:, 0], x[:, 1])
        assert torch.equal(x[:, 0], x[:, 2])
        assert split.labels.dtype == np.int64


def test_digits_pixels_are_the_sklearn_values_divided_by_16(digits: DataSource) -> None:
    from sklearn.datasets import load_digits

    raw = load_digits().images.astype(np.float32) / 16.0  # (1797, 8, 8)
    ours = torch.cat([_tensor(digits.train.inputs)[:, 0], _tensor(digits.test.inputs)[:, 0]]).numpy()
    # the same multiset of images: compare the flattened rows in sorted order
    np.testing.assert_array_equal(_sorted_rows(raw), _sorted_rows(ours))


def _sorted_rows(images: np.ndarray) -> np.ndarray:
    rows = images.reshape(len(images), -1)  # (N, 64)
    return rows[np.lexsort(rows.T[::-1])]


def test_digits_class_names_and_count(digits: DataSource) -> None:
    assert digits.name == "digits"
    assert digits.modality == "image"
    assert digits.num_classes == 10
    assert digits.class_names[0] == "zero"
    assert digits.class_names[9] == "nine"
    assert digits.val is None
    assert digits.val_pool is digits.test


def test_digits_split_is_stratified_half_and_half(digits: DataSource) -> None:
    train_counts = np.bincount(digits.train.labels, minlength=10)
    test_counts = np.bincount(digits.test.labels, minlength=10)
    assert np.all(np.abs(train_counts - test_counts) <= 1)
    assert np.all(train_counts > 80)


def test_digits_split_is_the_same_on_every_load(digits: DataSource) -> None:
    again = load_source("digits", seed=123)  # the experiment seed must not move the split
    assert torch.equal(_tensor(again.train.inputs), _tensor(digits.train.inputs))
    np.testing.assert_array_equal(again.test.labels, digits.test.labels)


def test_digits_train_and_test_do_not_share_an_image_slot(digits: DataSource) -> None:
    # the split is a partition of the 1797 images: total count matches and, per class,
    # train + test equals the sklearn class size
    from sklearn.datasets import load_digits

    full = np.bincount(load_digits().target, minlength=10)
    got = np.bincount(digits.train.labels, minlength=10) + np.bincount(digits.test.labels, minlength=10)
    np.testing.assert_array_equal(full, got)


# -- synthetic ------------------------------------------------------------------------------


def test_synthetic_is_deterministic_from_its_seed() -> None:
    a = load_synthetic_source(seed=3)
    b = load_synthetic_source(seed=3)
    c = load_synthetic_source(seed=4)
    assert torch.equal(_tensor(a.train.inputs), _tensor(b.train.inputs))
    np.testing.assert_array_equal(a.test.labels, b.test.labels)
    assert not torch.equal(_tensor(a.train.inputs), _tensor(c.train.inputs))


def test_synthetic_shapes_names_and_range() -> None:
    s = load_synthetic_source(num_classes=5, image_size=6, per_class_train=7, per_class_test=3)
    assert _tensor(s.train.inputs).shape == (35, 3, 6, 6)
    assert _tensor(s.test.inputs).shape == (15, 3, 6, 6)
    assert s.class_names == ("class0", "class1", "class2", "class3", "class4")
    np.testing.assert_array_equal(np.bincount(s.train.labels), [7] * 5)
    assert float(_tensor(s.train.inputs).min()) >= 0.0 and float(_tensor(s.train.inputs).max()) <= 1.0


def test_synthetic_is_learnable_by_nearest_class_mean() -> None:
    s = load_synthetic_source(seed=0)
    x_train = _tensor(s.train.inputs).reshape(len(s.train), -1)  # (N, 3*H*W)
    x_test = _tensor(s.test.inputs).reshape(len(s.test), -1)
    means = torch.stack(
        [x_train[torch.from_numpy(s.train.labels == c)].mean(0) for c in range(s.num_classes)]
    )  # (C, 3*H*W)
    pred = torch.cdist(x_test, means).argmin(1).numpy()
    assert (pred == s.test.labels).mean() > 0.9


def test_synthetic_rejects_a_single_class() -> None:
    with pytest.raises(DataError, match="num_classes"):
        load_synthetic_source(num_classes=1)


# -- Split ----------------------------------------------------------------------------------


def test_split_take_returns_inputs_and_int64_label_tensor(digits: DataSource) -> None:
    idx = np.array([5, 0, 17])
    inputs, y = digits.train.take(idx)
    x = _tensor(inputs)
    assert x.shape == (3, 3, 8, 8)
    assert y.dtype == torch.int64
    assert torch.equal(x[1], _tensor(digits.train.inputs)[0])
    assert y.tolist() == digits.train.labels[idx].tolist()


def test_split_rejects_misaligned_or_non_int64_labels() -> None:
    with pytest.raises(DataError, match="aligned"):
        Split(torch.zeros(3, 3, 2, 2), np.zeros(2, dtype=np.int64))
    with pytest.raises(DataError, match="int64"):
        Split(torch.zeros(2, 3, 2, 2), np.zeros(2, dtype=np.int32))


def test_text_split_takes_a_list_of_str() -> None:
    split = Split(np.array(["hello there", "bye", ""], dtype=object), np.array([1, 0, 1]))
    assert split.modality == "text"
    texts, labels = split.take(np.array([2, 0]))
    assert texts == ["", "hello there"]
    assert labels.dtype == torch.int64 and labels.tolist() == [1, 1]


def test_text_split_rejects_non_strings_and_unicode_arrays() -> None:
    with pytest.raises(DataError, match="item 1 is int"):
        Split(np.array(["a", 3], dtype=object), np.array([0, 0]))
    with pytest.raises(DataError, match="dtype=object"):
        Split(np.array(["a", "b"]), np.array([0, 0]))  # <U1, not object


def test_image_tensor_must_be_float_n_3_h_w() -> None:
    with pytest.raises(DataError, match=r"\(N, 3, H, W\)"):
        Split(torch.zeros(2, 8, 8), np.array([0, 0]))
    with pytest.raises(DataError, match=r"\(N, 3, H, W\)"):
        Split(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), np.array([0, 0]))


def test_source_rejects_splits_of_another_modality() -> None:
    images = Split(torch.zeros(2, 3, 2, 2), np.array([0, 1]))
    texts = Split(np.array(["a", "b"], dtype=object), np.array([0, 1]))
    with pytest.raises(DataError, match="test split holds text inputs"):
        DataSource("x", "image", ("a", "b"), images, texts)
    assert DataSource("x", "text", ("a", "b"), texts, texts).modality == "text"


def test_source_domains_give_one_id_per_class() -> None:
    texts = Split(np.array(["a", "b", "c"], dtype=object), np.array([0, 1, 2]))
    s = DataSource("x", "text", ("a", "b", "c"), texts, texts, domains=np.array([1, 0, 1]),
                   domain_names=("news", "chat"))  # fmt: skip
    assert s.num_domains == 2
    assert DataSource("x", "text", ("a", "b", "c"), texts, texts).num_domains == 0
    with pytest.raises(DataError, match=r"shape \(3,\)"):
        DataSource("x", "text", ("a", "b", "c"), texts, texts, domains=np.array([0, 1]),
                   domain_names=("news", "chat"))  # fmt: skip
    with pytest.raises(DataError, match="ids must lie in"):
        DataSource("x", "text", ("a", "b", "c"), texts, texts, domains=np.array([0, 1, 2]),
                   domain_names=("news", "chat"))  # fmt: skip
    with pytest.raises(DataError, match="'chat'.*no class"):
        DataSource("x", "text", ("a", "b", "c"), texts, texts, domains=np.array([0, 0, 0]),
                   domain_names=("news", "chat"))  # fmt: skip
    with pytest.raises(DataError, match="without domains"):
        DataSource("x", "text", ("a", "b", "c"), texts, texts, domain_names=("news",))


def test_source_rejects_labels_outside_its_classes() -> None:
    split = Split(torch.zeros(2, 3, 2, 2), np.array([0, 2], dtype=np.int64))
    with pytest.raises(DataError, match="labels"):
        DataSource("x", "image", ("a", "b"), split, split)


# -- load_source ----------------------------------------------------------------------------


def test_load_source_dispatches_synthetic_with_the_seed() -> None:
    a = load_source("synthetic", seed=1)
    assert a.name == "synthetic"
    assert torch.equal(_tensor(a.train.inputs), _tensor(load_synthetic_source(seed=1).train.inputs))


def test_unknown_source_names_the_field_and_lists_allowed_values() -> None:
    with pytest.raises(ConfigError) as info:
        load_source("digitz")
    message = str(info.value)
    assert info.value.field == "data.source"
    for name in ("digits", "synthetic", "clinc150", "csv", "parquet", "hf_disk", "coop"):
        assert name in message
    assert "did you mean 'digits'" in message


@pytest.mark.parametrize("name", ["csv", "parquet", "hf_disk", "coop"])
def test_file_sources_without_a_path_say_what_data_path_needs(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_source(name)
    assert info.value.field == "data.path"
    assert "folder" in str(info.value)


def test_builtin_source_refuses_a_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_source("digits", path="/tmp/somewhere")
    assert info.value.field == "data.path"


def test_the_bundled_digits_file_reads_as_scikit_learns_load_digits() -> None:
    """The source reads scikit-learn's CSV itself (no scikit-learn import in every worker): it
    must give exactly the arrays ``load_digits`` gives, and the source must not import it."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from dp2fl_ray.data.digits import bundled_digits

    pixels, labels = bundled_digits()
    bunch = load_digits()
    np.testing.assert_array_equal(pixels, bunch.images)
    np.testing.assert_array_equal(labels, bunch.target)
    assert labels.dtype == np.int64 and pixels.shape == (1797, 8, 8)
    probe = (
        "import sys\nfrom dp2fl_ray.data import load_source\nload_source('digits')\n"
        "print('sklearn' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
