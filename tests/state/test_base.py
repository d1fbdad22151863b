"""Both backends keep the ClientStore contract, and ``open_store`` picks the configured one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dp2fl_ray.config import StoreConfig
from dp2fl_ray.state import ClientState, ClientStore, InMemoryClientStore, ShardedClientStore, open_store

DIM = 5


def row(client: int, rounds: int = 1) -> ClientState:
    return ClientState(np.full(DIM, client / 9.0, np.float32), client * 0.5, rounds)


@pytest.fixture(params=["memory", "sharded"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClientStore]:
    config = StoreConfig(backend=request.param, shard_size=4, cache_shards=2)
    with open_store(config, default_uri=str(tmp_path / "store")) as opened:
        yield opened


def test_open_store_returns_the_configured_backend(tmp_path: Path) -> None:
    memory = open_store(StoreConfig(backend="memory"), str(tmp_path / "unused"))
    assert isinstance(memory, InMemoryClientStore) and isinstance(memory, ClientStore)
    sharded = open_store(StoreConfig(backend="sharded", shard_size=7, cache_shards=3), str(tmp_path / "d"))
    assert isinstance(sharded, ShardedClientStore) and isinstance(sharded, ClientStore)
    assert (sharded.uri, sharded.shard_size, sharded.cache_shards) == (str(tmp_path / "d"), 7, 3)
    explicit = tmp_path / "explicit"
    chosen = open_store(StoreConfig(backend="sharded", uri=explicit.as_uri()), str(tmp_path / "d"))
    assert isinstance(chosen, ShardedClientStore) and chosen.uri == explicit.as_uri()


def test_unseen_clients_read_as_none(store: ClientStore) -> None:
    assert store.get_many([0, 3, 1000]) == [None, None, None]
    assert len(store) == 0 and 3 not in store and store.total_bytes() == 0


def test_put_then_get_len_and_contains(store: ClientStore) -> None:
    store.put_many([2, 9, 17], [row(2), row(9), row(17)])
    got = store.get_many([17, 5, 2])
    assert got[1] is None
    for client, state in ((17, got[0]), (2, got[2])):
        assert state is not None
        np.testing.assert_array_equal(state.data_prompt, row(client).data_prompt)
        assert (state.baseline, state.rounds_seen) == (client * 0.5, 1)
    assert len(store) == 3 and 9 in store and np.int64(17) in store and 5 not in store
    store.put_many([9], [row(9, rounds=2)])  # a replacement is not a new row
    assert len(store) == 3 and store.get_many([9])[0].rounds_seen == 2  # type: ignore[union-attr]


def test_bytes_count_at_least_the_prompt_and_scale_with_rows(store: ClientStore) -> None:
    store.put_many([1, 30], [row(1), row(30)])
    assert store.bytes_per_client() >= 4 * DIM + 8 + 4
    assert store.total_bytes() == 2 * store.bytes_per_client()


def test_mismatched_ids_and_states_are_refused(store: ClientStore) -> None:
    with pytest.raises(ValueError, match="2 ids but 1 states"):
        store.put_many([1, 2], [row(1)])


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 60), min_size=1, max_size=6)), max_size=25)
)
def test_sharded_behaves_like_memory_under_any_sequence(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[bool, list[int]]]
) -> None:
    """Random puts and gets on a tiny cache (constant eviction) agree with the dict store."""
    root = tmp_path_factory.mktemp("model")
    memory, sharded = InMemoryClientStore(), ShardedClientStore(str(root), shard_size=4, cache_shards=2)
    for step, (is_put, ids) in enumerate(ops):
        if is_put:
            states = [row(c, rounds=step) for c in ids]
            memory.put_many(ids, states)
            sharded.put_many(ids, states)
        else:
            for a, b in zip(memory.get_many(ids), sharded.get_many(ids)):
                assert (a is None) == (b is None)
                if a is not None and b is not None:
                    np.testing.assert_array_equal(a.data_prompt, b.data_prompt)
                    assert (a.baseline, a.rounds_seen) == (b.baseline, b.rounds_seen)
        assert len(memory) == len(sharded)
    sharded.close()
    reopened = ShardedClientStore(str(root), shard_size=4)
    assert len(reopened) == len(memory)
    everyone = list(range(61))
    assert [r is None for r in reopened.get_many(everyone)] == [r is None for r in memory.get_many(everyone)]


@pytest.mark.parametrize("backend", ["memory", "sharded"])
def test_checkpoint_is_plain_data_and_restores_the_rows_of_that_moment(tmp_path: Path, backend: str) -> None:
    config = StoreConfig(backend=backend, shard_size=2)  # type: ignore[arg-type]
    store = open_store(config, str(tmp_path / "store"))
    store.put_many([1, 4], [ClientState(np.array([1.0, 2.0], np.float32), 0.5, 1),
                            ClientState(np.array([3.0, 4.0], np.float32), 0.25, 2)])  # fmt: skip
    saved = store.checkpoint("round-00001")
    leaves = list(saved.values())
    assert all(isinstance(v, (np.ndarray, str, int, float)) for v in leaves), leaves  # no objects to pickle
    store.put_many([1, 9], [ClientState(np.array([9.0, 9.0], np.float32), 9.0, 9)] * 2)
    store.restore_checkpoint(saved)
    one, four, nine = store.get_many([1, 4, 9])
    assert nine is None and len(store) == 2
    assert one is not None and one.data_prompt.tolist() == [1.0, 2.0] and one.rounds_seen == 1
    assert four is not None and four.baseline == 0.25
