"""Partitioners: the paper's protocol, iid and Dirichlet, determinism and laziness."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from dp2fl_ray.data import ClientIndices, DataSource, Partitioner, Split, majority_class
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


@pytest.fixture(scope="module")
def paper(digits: DataSource) -> Partitioner:
    return Partitioner(digits, "paper", seed=0)


def _same(a: ClientIndices, b: ClientIndices) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("train", "val", "test"))


def _in_range(c: ClientIndices, source: DataSource) -> bool:
    return (
        all(arr.dtype == np.int64 for arr in (c.train, c.val, c.test))
        and c.train.min() >= 0
        and c.train.max() < len(source.train)
        and c.val.min() >= 0
        and c.val.max() < len(source.val_pool)
        and c.test.min() >= 0
        and c.test.max() < len(source.test)
    )


# -- the paper's protocol on digits ---------------------------------------------------------


@pytest.mark.parametrize("client_id", [0, 1, 7, 12345])
def test_paper_client_has_44_samples_over_8_classes_with_16_dominant(
    digits: DataSource, paper: Partitioner, client_id: int
) -> None:
    c = paper.client(client_id)
    labels = digits.train.labels[c.train]
    counts = np.bincount(labels, minlength=10)
    assert len(c.train) == 44
    assert len(np.unique(c.train)) == 44  # no sample twice
    assert (counts > 0).sum() == 8  # 20% of 10 classes dropped
    assert sorted(counts[counts > 0].tolist()) == [4] * 7 + [16]
    dominant = majority_class(labels)
    assert counts[dominant] == 16
    assert counts.max() / len(labels) == pytest.approx(16 / 44)


def test_paper_val_and_test_follow_the_training_classes_and_proportions(
    digits: DataSource, paper: Partitioner
) -> None:
    c = paper.client(3)
    train_counts = np.bincount(digits.train.labels[c.train], minlength=10)
    val_counts = np.bincount(digits.val_pool.labels[c.val], minlength=10)
    test_counts = np.bincount(digits.test.labels[c.test], minlength=10)
    np.testing.assert_array_equal(test_counts, train_counts)  # test_fraction 1.0
    np.testing.assert_array_equal(val_counts, np.where(train_counts > 0, train_counts // 2, 0))
    assert len(c.val) < len(c.test)
    assert majority_class(digits.test.labels[c.test]) == majority_class(digits.train.labels[c.train])


def test_paper_val_and_test_are_disjoint_when_they_share_the_test_pool(
    digits: DataSource, paper: Partitioner
) -> None:
    assert digits.val is None  # so val_pool is the test split
    for cid in range(50):
        c = paper.client(cid)
        assert len(np.intersect1d(c.val, c.test)) == 0
        assert len(np.unique(c.test)) == len(c.test)
        assert len(np.unique(c.val)) == len(c.val)


def test_paper_indices_are_int64_and_within_their_pools(digits: DataSource, paper: Partitioner) -> None:
    for cid in range(20):
        assert _in_range(paper.client(cid), digits)


def test_paper_shots_are_capped_by_what_a_class_has() -> None:
    tiny = load_synthetic_source(num_classes=5, per_class_train=6, per_class_test=4)
    part = Partitioner(tiny, "paper", seed=0)
    c = part.client(0)
    counts = np.bincount(tiny.train.labels[c.train], minlength=5)
    # 5 classes: drop round(1.0) = 1; shots = 6; keep round(1.5) = 2; dominant + round(4.5) = 5,
    # capped at the 4 not already kept -> 6
    assert sorted(counts[counts > 0].tolist()) == [2, 2, 2, 6]
    # too few test samples: test takes 4 (all), val gets what is left (none) for the dominant
    test_counts = np.bincount(tiny.test.labels[c.test], minlength=5)
    assert test_counts.max() == 4
    assert len(np.intersect1d(c.val, c.test)) == 0


def test_paper_keeps_at_least_one_class() -> None:
    two = load_synthetic_source(num_classes=2, per_class_train=10)
    c = Partitioner(two, "paper", seed=0, drop_class_fraction=0.9).client(0)
    assert len(np.unique(two.train.labels[c.train])) == 1


def test_separate_val_split_is_used_for_val(digits: DataSource) -> None:
    # a source with its own val split: val indices point into it, test into test
    val = Split(_tensor(digits.test.inputs)[:100], digits.test.labels[:100].copy())
    source = DataSource("d", "image", digits.class_names, digits.train, digits.test, val)
    c = Partitioner(source, "paper", seed=0).client(0)
    assert c.val.max() < 100
    np.testing.assert_array_equal(np.unique(val.labels[c.val]), np.unique(digits.train.labels[c.train]))


# -- determinism and laziness ---------------------------------------------------------------


def test_same_seed_and_id_give_the_same_client_in_any_order(digits: DataSource, paper: Partitioner) -> None:
    first = paper.client(5)
    other = Partitioner(digits, "paper", seed=0)
    for cid in (9, 2, 77):  # ask for other clients first
        other.client(cid)
    assert _same(first, other.client(5))
    assert _same(first, paper.client(5))


def test_different_ids_and_seeds_give_different_clients(digits: DataSource, paper: Partitioner) -> None:
    assert not _same(paper.client(0), paper.client(1))
    assert not _same(paper.client(0), Partitioner(digits, "paper", seed=1).client(0))
    # across many clients, the dropped classes and dominant class vary
    dominants = {majority_class(digits.train.labels[paper.client(i).train]) for i in range(40)}
    assert len(dominants) >= 5


def test_client_indices_are_read_only(paper: Partitioner) -> None:
    c = paper.client(0)
    with pytest.raises(ValueError):
        c.train[0] = 1


def test_client_ten_million_is_computed_instantly(paper: Partitioner) -> None:
    start = time.perf_counter()
    c = paper.client(9_999_999)
    elapsed = time.perf_counter() - start
    assert len(c.train) == 44
    assert elapsed < 0.1


def test_negative_client_id_is_rejected(paper: Partitioner) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        paper.client(-1)


# -- iid and dirichlet ----------------------------------------------------------------------


def test_iid_sizes_and_disjoint_eval(digits: DataSource) -> None:
    part = Partitioner(digits, "iid", seed=0, samples_per_client=40, val_fraction=0.5)
    c = part.client(4)
    assert len(c.train) == len(np.unique(c.train)) == 40
    assert len(c.val) == 20
    assert len(c.test) == 40
    assert len(np.intersect1d(c.val, c.test)) == 0
    assert _in_range(c, digits)


def test_iid_clients_cover_many_classes(digits: DataSource) -> None:
    c = Partitioner(digits, "iid", seed=0, samples_per_client=200).client(0)
    assert len(np.unique(digits.train.labels[c.train])) == 10


def test_dirichlet_small_alpha_gives_skewed_clients(digits: DataSource) -> None:
    skewed = Partitioner(digits, "dirichlet", seed=0, alpha=0.05)
    flat = Partitioner(digits, "dirichlet", seed=0, alpha=100.0)

    def mean_majority_rate(part: Partitioner) -> float:
        rates = []
        for cid in range(30):
            labels = digits.train.labels[part.client(cid).train]
            rates.append(np.bincount(labels).max() / len(labels))
        return float(np.mean(rates))

    assert mean_majority_rate(skewed) > 0.6
    assert mean_majority_rate(flat) < 0.3


def test_dirichlet_sizes_and_eval_follow_train(digits: DataSource) -> None:
    part = Partitioner(digits, "dirichlet", seed=2, alpha=0.5, samples_per_client=40)
    c = part.client(0)
    assert len(c.train) == 40  # every digit class has more than 40 samples: no capping
    train_classes = set(np.unique(digits.train.labels[c.train]).tolist())
    assert set(np.unique(digits.test.labels[c.test]).tolist()) == train_classes
    assert set(np.unique(digits.val_pool.labels[c.val]).tolist()) == train_classes
    assert len(np.intersect1d(c.val, c.test)) == 0
    assert _same(c, Partitioner(digits, "dirichlet", seed=2, alpha=0.5).client(0))


# -- errors ---------------------------------------------------------------------------------


def test_unknown_scheme_names_the_field_and_lists_allowed_values(digits: DataSource) -> None:
    with pytest.raises(ConfigError) as info:
        Partitioner(digits, "papper", seed=0)
    assert info.value.field == "data.partition.scheme"
    for scheme in ("paper", "iid", "dirichlet", "domain"):
        assert scheme in str(info.value)
    assert "did you mean 'paper'" in str(info.value)


def test_domain_scheme_says_the_source_has_no_domains(digits: DataSource) -> None:
    with pytest.raises(ConfigError, match="no domains") as info:
        Partitioner(digits, "domain", seed=0)
    assert info.value.field == "data.partition.scheme"


def test_domain_scheme_rejects_a_domain_without_training_samples(digits: DataSource) -> None:
    # classes 8 and 9 form domain "late" but have no training samples
    keep = digits.train.labels < 8
    train = Split(_tensor(digits.train.inputs)[torch.from_numpy(keep)], digits.train.labels[keep])
    domains = np.array([0] * 8 + [1] * 2, dtype=np.int64)
    source = DataSource("d", "image", digits.class_names, train, digits.test, None, domains,
                        ("early", "late"))  # fmt: skip
    with pytest.raises(DataError, match="'late'.*no class with training samples"):
        Partitioner(source, "domain", seed=0)
    c = Partitioner(source, "paper", seed=0).client(0)  # other schemes skip empty classes
    assert train.labels[c.train].max() < 8


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("alpha", 0.0),
        ("shots", 0),
        ("shots", 2.5),
        ("drop_class_fraction", 1.0),
        ("keep_fraction", 0.0),
        ("dominant_fraction", 1.5),
        ("val_fraction", 0.0),
        ("test_fraction", float("nan")),
        ("samples_per_client", 0),
    ],
)
def test_out_of_range_parameter_names_its_field(digits: DataSource, field: str, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        Partitioner(digits, "paper", seed=0, **{field: value})  # type: ignore[arg-type]
    assert info.value.field == f"data.partition.{field}"


# -- majority_class -------------------------------------------------------------------------


def test_majority_class_breaks_ties_by_smallest_label() -> None:
    assert majority_class(np.array([3, 1, 3, 1, 2])) == 1
    assert majority_class(np.array([7, 7, 2])) == 7
    with pytest.raises(ValueError):
        majority_class(np.array([], dtype=np.int64))


def test_take_of_a_client_gives_its_labels(digits: DataSource, paper: Partitioner) -> None:
    c = paper.client(0)
    _, y = digits.train.take(c.train)
    assert torch.equal(y, torch.from_numpy(digits.train.labels[c.train]))
