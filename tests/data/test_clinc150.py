"""CLINC150: the loader against the real files, the domain partition, and text partitions."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dp2fl_ray.data import DataSource, Partitioner, load_source
from dp2fl_ray.data.clinc150 import default_clinc150_path, load_clinc150_source
from dp2fl_ray.errors import DataError

# What the files of clinc/oos-eval hold (README beside the data): 100/20/30 per intent.
TRAIN, VAL, TEST = 15000, 3000, 4500


@pytest.fixture(scope="module")
def raw(clinc150_dir: Path) -> dict[str, list[list[str]]]:
    with (clinc150_dir / "data_full.json").open(encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def domain8(clinc150: DataSource) -> Partitioner:
    return Partitioner(clinc150, "domain", seed=0, shots=8, val_fraction=0.5)


# -- the loader -----------------------------------------------------------------------------


def test_clinc150_has_150_intents_text_inputs_and_the_file_sizes(
    clinc150: DataSource, raw: dict[str, list[list[str]]]
) -> None:
    assert clinc150.name == "clinc150"
    assert clinc150.modality == "text"
    assert clinc150.num_classes == 150
    assert (len(clinc150.train), len(clinc150.val_pool), len(clinc150.test)) == (TRAIN, VAL, TEST)
    assert clinc150.val is not None  # a real val split, not carved from test
    # the sizes are the file's in-scope splits; the out-of-scope queries are left out
    assert (len(raw["train"]), len(raw["val"]), len(raw["test"])) == (TRAIN, VAL, TEST)
    for split, per_class in ((clinc150.train, 100), (clinc150.val, 20), (clinc150.test, 30)):
        assert split is not None
        np.testing.assert_array_equal(np.bincount(split.labels, minlength=150), [per_class] * 150)
        assert isinstance(split.inputs, np.ndarray) and split.inputs.dtype == object
    assert "oos" not in clinc150.class_names


def test_clinc150_rows_keep_the_utterance_and_intent_of_the_file(
    clinc150: DataSource, raw: dict[str, list[list[str]]]
) -> None:
    for split, rows in (("train", raw["train"]), ("test", raw["test"])):
        pool = getattr(clinc150, split)
        for i in (0, 1, len(rows) - 1):
            texts, labels = pool.take(np.array([i]))
            assert texts == [rows[i][0]]
            assert clinc150.class_names[int(labels[0])] == rows[i][1]


def test_clinc150_has_10_domains_of_15_intents_as_in_domains_json(
    clinc150: DataSource, clinc150_dir: Path
) -> None:
    with (clinc150_dir / "domains.json").open(encoding="utf-8") as f:
        domains = json.load(f)
    assert clinc150.num_domains == 10
    assert clinc150.domain_names == tuple(domains)
    assert clinc150.domains is not None and clinc150.domains.shape == (150,)
    np.testing.assert_array_equal(np.bincount(clinc150.domains), [15] * 10)
    for d, name in enumerate(clinc150.domain_names):
        ours = {clinc150.class_names[c] for c in np.flatnonzero(clinc150.domains == d)}
        assert ours == set(domains[name])
    # names are kept as in the file (underscores too)
    pin = clinc150.class_names.index("pin_change")
    assert clinc150.domain_names[clinc150.domains[pin]] == "banking"


def test_take_on_text_returns_a_list_of_str_and_int64_labels(clinc150: DataSource) -> None:
    texts, labels = clinc150.train.take(np.array([3, 0, 9]))
    assert isinstance(texts, list) and len(texts) == 3
    assert all(type(t) is str for t in texts)
    assert isinstance(clinc150.train.inputs, np.ndarray)
    assert texts[1] == clinc150.train.inputs[0]
    assert labels.dtype == torch.int64
    assert labels.tolist() == clinc150.train.labels[[3, 0, 9]].tolist()


def test_load_source_finds_clinc150_without_a_path() -> None:
    s = load_source("clinc150")  # env DP2FL_CLINC150, else ../shared/data/clinc150
    assert s.num_classes == 150


def test_default_path_is_the_env_var_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DP2FL_CLINC150", "/somewhere/clinc")
    assert default_clinc150_path() == Path("/somewhere/clinc")


def test_default_path_falls_back_to_shared_beside_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clinc150_dir: Path
) -> None:
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "clinc150").symlink_to(clinc150_dir.resolve())
    (tmp_path / "work").mkdir()
    monkeypatch.delenv("DP2FL_CLINC150", raising=False)
    monkeypatch.chdir(tmp_path / "work")
    assert default_clinc150_path() == (tmp_path / "shared" / "data" / "clinc150").resolve()


# -- loader errors (on tiny files in the original format) ------------------------------------


def _write_clinc(folder: Path, data: Mapping[str, Any], domains: Mapping[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data_full.json").write_text(json.dumps(data))
    (folder / "domains.json").write_text(json.dumps(domains))
    return folder


TINY = {
    "train": [["hi", "a"], ["yo", "b"], ["hey", "c"]],
    "val": [["hello", "a"]],
    "test": [["sup", "b"], ["hiya", "c"]],
    "oos_train": [["what", "oos"]],
}


def test_tiny_file_in_the_original_format_loads(tmp_path: Path) -> None:
    s = load_clinc150_source(_write_clinc(tmp_path, TINY, {"x": ["a", "b"], "y": ["c"]}))
    assert s.class_names == ("a", "b", "c")
    assert s.domain_names == ("x", "y")
    assert s.domains is not None and s.domains.tolist() == [0, 0, 1]
    assert s.test.take(np.array([1]))[0] == ["hiya"]


def test_missing_folder_names_it_and_the_env_var(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="DP2FL_CLINC150") as info:
        load_source("clinc150", path=str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(info.value)


def test_missing_domains_json_is_named(tmp_path: Path) -> None:
    _write_clinc(tmp_path, TINY, {})
    (tmp_path / "domains.json").unlink()
    with pytest.raises(DataError, match="domains.json does not exist") as info:
        load_clinc150_source(tmp_path)
    assert str(tmp_path / "domains.json") in str(info.value)


def test_missing_split_key_lists_the_keys_found(tmp_path: Path) -> None:
    data = {k: v for k, v in TINY.items() if k != "val"}
    _write_clinc(tmp_path, data, {"x": ["a", "b", "c"]})
    with pytest.raises(DataError, match="no 'val' key") as info:
        load_clinc150_source(tmp_path)
    assert "data_full.json" in str(info.value) and "oos_train" in str(info.value)


def test_intent_in_no_domain_is_an_error_naming_both_files(tmp_path: Path) -> None:
    _write_clinc(tmp_path, TINY, {"x": ["a", "b"]})
    with pytest.raises(DataError, match="'c'") as info:
        load_clinc150_source(tmp_path)
    assert "data_full.json" in str(info.value) and "domains.json" in str(info.value)


def test_domain_intent_without_training_rows_is_an_empty_class(tmp_path: Path) -> None:
    _write_clinc(tmp_path, TINY, {"x": ["a", "b", "c", "d"]})
    with pytest.raises(DataError, match="'d'.*no training samples") as info:
        load_clinc150_source(tmp_path)
    assert "data_full.json" in str(info.value)


# -- the domain partition -------------------------------------------------------------------


def test_clients_0_and_10_share_a_domain_and_client_1_has_the_next(
    clinc150: DataSource, domain8: Partitioner
) -> None:
    domains = clinc150.domains
    assert domains is not None

    def domains_of(cid: int) -> set[int]:
        return set(domains[clinc150.train.labels[domain8.client(cid).train]].tolist())

    assert domains_of(0) == domains_of(10) == {0}
    assert domains_of(1) == {1}
    assert domains_of(19) == {9}
    # same domain, yet each client draws its own samples
    assert not np.array_equal(domain8.client(0).train, domain8.client(10).train)


@pytest.mark.parametrize("client_id", [0, 3, 10, 12345])
def test_domain_client_has_8_shots_of_each_of_its_15_intents_and_4_val(
    clinc150: DataSource, domain8: Partitioner, client_id: int
) -> None:
    assert clinc150.domains is not None and clinc150.val is not None
    c = domain8.client(client_id)
    train_counts = np.bincount(clinc150.train.labels[c.train], minlength=150)
    own = np.flatnonzero(clinc150.domains == client_id % 10)
    np.testing.assert_array_equal(np.flatnonzero(train_counts), own)
    np.testing.assert_array_equal(train_counts[own], [8] * 15)
    assert len(c.train) == len(np.unique(c.train)) == 120
    val_counts = np.bincount(clinc150.val.labels[c.val], minlength=150)
    test_counts = np.bincount(clinc150.test.labels[c.test], minlength=150)
    np.testing.assert_array_equal(val_counts[own], [4] * 15)  # 0.5 x 8
    np.testing.assert_array_equal(test_counts[own], [8] * 15)  # test_fraction 1.0
    assert val_counts.sum() == 60 and test_counts.sum() == 120
    # val comes from the val split, test from test: not one utterance in common
    val_texts, _ = clinc150.val.take(c.val)
    test_texts, _ = clinc150.test.take(c.test)
    assert not set(val_texts) & set(test_texts)


def test_domain_partition_is_deterministic(clinc150: DataSource, domain8: Partitioner) -> None:
    again = Partitioner(clinc150, "domain", seed=0, shots=8, val_fraction=0.5)
    again.client(7)  # other clients first: order must not matter
    for cid in (0, 10, 4):
        a, b = domain8.client(cid), again.client(cid)
        for field in ("train", "val", "test"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    other_seed = Partitioner(clinc150, "domain", seed=1, shots=8, val_fraction=0.5)
    assert not np.array_equal(other_seed.client(0).train, domain8.client(0).train)


def test_domain_val_and_test_are_disjoint_when_they_share_the_test_pool(
    clinc150: DataSource,
) -> None:
    no_val = DataSource(
        "clinc_no_val", "text", clinc150.class_names, clinc150.train, clinc150.test,
        domains=clinc150.domains, domain_names=clinc150.domain_names,
    )  # fmt: skip
    part = Partitioner(no_val, "domain", seed=0, shots=8, val_fraction=0.5)
    for cid in range(12):
        c = part.client(cid)
        assert len(np.intersect1d(c.val, c.test)) == 0
        assert len(c.test) == 120 and len(c.val) == 60  # 30 test rows per intent: enough


def test_domain_client_ten_million_is_computed_instantly(domain8: Partitioner) -> None:
    start = time.perf_counter()
    c = domain8.client(9_999_999)
    assert time.perf_counter() - start < 0.1
    assert len(c.train) == 120


# -- the other schemes on text --------------------------------------------------------------


def test_paper_partition_on_text_gives_120_intents_and_strings(clinc150: DataSource) -> None:
    c = Partitioner(clinc150, "paper", seed=0).client(2)
    counts = np.bincount(clinc150.train.labels[c.train], minlength=150)
    assert (counts > 0).sum() == 120  # 20% of 150 intents dropped
    assert sorted(counts[counts > 0].tolist()) == [4] * 119 + [16]
    texts, labels = clinc150.train.take(c.train)
    assert len(texts) == len(labels) == 119 * 4 + 16
    assert all(isinstance(t, str) for t in texts)
    assert c.val.max() < VAL and c.test.max() < TEST


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
def test_iid_and_dirichlet_partitions_work_on_text(clinc150: DataSource, scheme: str) -> None:
    part = Partitioner(clinc150, scheme, seed=0, samples_per_client=40, alpha=0.5)
    c = part.client(5)
    assert len(c.train) == 40
    for pool, idx in ((clinc150.train, c.train), (clinc150.val_pool, c.val), (clinc150.test, c.test)):
        texts, labels = pool.take(idx)
        assert len(texts) == len(idx) > 0
        assert labels.tolist() == pool.labels[idx].tolist()
