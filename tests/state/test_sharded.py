"""The sharded store: Parquet shards, a bounded cache, atomic writes, clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from dp2fl_ray.errors import CheckpointError
from dp2fl_ray.state import ClientState, ShardedClientStore

DIM = 6


def state(client: int, dim: int = DIM, rounds: int = 1) -> ClientState:
    """A row whose values depend on the client, with float32 values that are not round."""
    prompt = (np.arange(dim, dtype=np.float32) + np.float32(client)) / np.float32(7.0)
    return ClientState(prompt, baseline=client / 3.0, rounds_seen=rounds)


def assert_row(row: ClientState | None, client: int, dim: int = DIM, rounds: int = 1) -> None:
    expected = state(client, dim, rounds)
    assert row is not None, f"client {client} has no row"
    assert row.data_prompt.dtype == np.float32
    np.testing.assert_array_equal(row.data_prompt, expected.data_prompt)  # exact, not approx
    assert row.baseline == expected.baseline and row.rounds_seen == rounds


def shard_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("shard-"))


def test_rows_exist_only_for_put_clients_and_in_the_documented_format(tmp_path: Path) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=10)
    assert store.get_many([3, 15]) == [None, None] and len(store) == 0 and store.total_bytes() == 0
    store.put_many([3, 7], [state(3), state(7)])
    store.flush()
    assert shard_files(tmp_path) == ["shard-00000000.parquet"]
    table = pq.read_table(tmp_path / "shard-00000000.parquet")
    assert table.column("client_id").to_pylist() == [3, 7]
    assert table.schema.field("data_prompt").type == pa.list_(pa.float32(), DIM)
    assert table.schema.field("baseline").type == pa.float64()
    assert table.schema.field("rounds_seen").type == pa.int32()
    assert store.get_many([4, 3, 15])[0] is None and store.get_many([15]) == [None]
    assert 3 in store and 4 not in store and 15 not in store and len(store) == 2


def test_round_trip_is_exact_and_replacing_a_row_does_not_add_one(tmp_path: Path) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=4)
    store.put_many([1, 2], [state(1), state(2)])
    store.put_many([1], [state(1, rounds=2)])
    assert_row(store.get_many([1])[0], 1, rounds=2)
    assert_row(store.get_many([2])[0], 2)
    assert len(store) == 2
    returned = store.get_many([2])[0]
    assert returned is not None
    returned.data_prompt[:] = -1  # a caller scribbling on its copy changes nothing stored
    assert_row(store.get_many([2])[0], 2)


def test_ids_over_many_shards_with_a_cache_of_two_survive_eviction(tmp_path: Path) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=5, cache_shards=2)
    clients = list(range(0, 100, 3))  # 34 clients over 20 shards
    store.put_many(clients, [state(c) for c in clients])
    assert len(store.cached_shards()) <= 2
    # Evicted shards were written back before leaving memory.
    assert len(shard_files(tmp_path)) >= 20 - 2
    for c, row in zip(clients[::-1], store.get_many(clients[::-1])):
        assert_row(row, c)
    store.put_many([0, 99], [state(0, rounds=5), state(99, rounds=5)])
    for c in range(100):  # one at a time: every shard is reread many times
        (row,) = store.get_many([c])
        if c in (0, 99):
            assert_row(row, c, rounds=5)
        elif c % 3 == 0:
            assert_row(row, c)
        else:
            assert row is None
    assert len(store) == len(clients)


def test_memory_stays_bounded_by_the_cache(tmp_path: Path) -> None:
    dim, shard_size = 512, 32  # one full shard holds 64 KiB of prompts
    store = ShardedClientStore(str(tmp_path), shard_size=shard_size, cache_shards=4)
    tracemalloc.start()
    try:
        for shard in range(50):
            ids = list(range(shard * shard_size, (shard + 1) * shard_size))
            store.put_many(ids, [state(c, dim) for c in ids])
            assert len(store.cached_shards()) <= 4
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    shard_bytes = shard_size * dim * 4
    assert held < 8 * shard_bytes, f"{held} bytes held after 50 shards; 4 cached shards are {4 * shard_bytes}"
    assert len(shard_files(tmp_path)) == 50 - 4  # the rest still dirty in the cache
    store.close()
    assert len(shard_files(tmp_path)) == 50 and len(store) == 50 * shard_size


def test_reopening_sees_flushed_rows_counted_from_metadata(tmp_path: Path) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=8, cache_shards=3)
    clients = [0, 1, 9, 40, 41, 77]
    store.put_many(clients, [state(c) for c in clients])
    store.close()
    again = ShardedClientStore(str(tmp_path), shard_size=8, cache_shards=3)
    assert len(again) == len(clients) and again.cached_shards() == []  # nothing loaded to count
    assert again.bytes_per_client() == 4 * DIM + 20
    for c, row in zip(clients, again.get_many(clients)):
        assert_row(row, c)
    again.put_many([2], [state(2)])
    assert len(again) == len(clients) + 1


def test_unflushed_rows_are_not_seen_by_a_reopened_store(tmp_path: Path) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=8)
    store.put_many([1], [state(1)])
    store.flush()
    store.put_many([2], [state(2)])
    again = ShardedClientStore(str(tmp_path), shard_size=8)
    assert len(again) == 1 and again.get_many([2]) == [None]


def test_a_failed_write_leaves_the_old_shard_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=8)
    store.put_many([1], [state(1)])
    store.flush()
    before = (tmp_path / "shard-00000000.parquet").read_bytes()
    real_write = pq.write_table
    written: list[str] = []

    def write_then_fail(table: pa.Table, where: str, **kwargs: object) -> None:
        real_write(table, where, **kwargs)  # the temporary file is complete...
        written.append(where)
        raise OSError("disk went away")  # ...and the move never happens

    monkeypatch.setattr(pq, "write_table", write_then_fail)
    store.put_many([1], [state(1, rounds=9)])
    with pytest.raises(CheckpointError, match="shard-00000000.parquet.*intact"):
        store.flush()
    assert written and Path(written[0]).parent == tmp_path  # the temp was beside the shard
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000000.parquet"]
    assert (tmp_path / "shard-00000000.parquet").read_bytes() == before
    monkeypatch.undo()
    store.flush()  # the row stayed dirty, so a retry writes it
    assert_row(ShardedClientStore(str(tmp_path), shard_size=8).get_many([1])[0], 1, rounds=9)


def test_a_writer_killed_mid_write_leaves_the_old_shard_readable(tmp_path: Path) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=8)
    store.put_many([1, 2], [state(1), state(2)])
    store.close()
    child = f"""
        import os
        import numpy as np
        import pyarrow.parquet as pq
        from dp2fl_ray.state import ClientState, ShardedClientStore
        real = pq.write_table
        def killed(table, where, **kwargs):
            real(table, where, **kwargs)
            os._exit(17)  # killed after the temporary file, before the move
        pq.write_table = killed
        store = ShardedClientStore({str(tmp_path)!r}, shard_size=8)
        store.put_many([3], [ClientState(np.zeros({DIM}, np.float32), 0.0, 1)])
        store.flush()
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(child)], check=False, capture_output=True, text=True
    )
    assert done.returncode == 17, done.stderr
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # a kill cannot clean up
    again = ShardedClientStore(str(tmp_path), shard_size=8)
    assert len(again) == 2 and again.get_many([3]) == [None]
    assert_row(again.get_many([2])[0], 2)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_shard_names_its_path_and_the_fix(tmp_path: Path, damage: str) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=8)
    store.put_many([1, 20], [state(1), state(20)])
    store.close()
    path = tmp_path / "shard-00000002.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not parquet at all")
    with pytest.raises(CheckpointError, match=r"shard-00000002\.parquet.*delete that file.*clients 16\.\.23"):
        ShardedClientStore(str(tmp_path), shard_size=8)


def test_a_shard_damaged_after_open_fails_on_read(tmp_path: Path) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=8)
    store.put_many([1], [state(1)])
    store.close()
    (tmp_path / "shard-00000000.parquet").write_bytes(b"PAR1 garbage PAR1")
    with pytest.raises(CheckpointError, match=r"shard-00000000\.parquet"):
        store.get_many([1])


def test_a_prompt_of_another_size_is_refused(tmp_path: Path) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=8)
    store.put_many([1], [state(1)])
    store.close()
    again = ShardedClientStore(str(tmp_path), shard_size=8)
    with pytest.raises(CheckpointError, match=f"has {DIM + 2} values.*Dd={DIM}"):
        again.put_many([2], [state(2, dim=DIM + 2)])
    assert len(again) == 1 and again.get_many([2]) == [None]
    fresh = ShardedClientStore(str(tmp_path / "fresh"), shard_size=8)
    with pytest.raises(CheckpointError, match="Dd=6"):
        fresh.put_many([1, 2], [state(1), state(2, dim=3)])
    assert len(fresh) == 0


def test_reopening_with_another_shard_size_is_refused(tmp_path: Path) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=8)
    store.put_many([9], [state(9)])
    store.close()
    with pytest.raises(CheckpointError, match="shard_size 8.*store.shard_size=8"):
        ShardedClientStore(str(tmp_path), shard_size=16)


def test_total_bytes_is_rows_times_bytes_per_client(tmp_path: Path) -> None:
    store = ShardedClientStore(str(tmp_path), shard_size=3, cache_shards=2)
    clients = [0, 4, 5, 11, 30]
    store.put_many(clients, [state(c) for c in clients])
    assert store.bytes_per_client() == 4 * DIM + 8 + 4 + 8
    assert store.total_bytes() == 5 * store.bytes_per_client()
    manifest = store.checkpoint_manifest()
    assert [Path(p).name for p, _ in manifest] == shard_files(tmp_path)
    assert store.on_disk_bytes() == sum(size for _, size in manifest) > 0


def test_the_last_id_of_a_ten_million_population_makes_one_shard(tmp_path: Path) -> None:
    store = ShardedClientStore(str(tmp_path))  # default shard size 4096
    store.put_many([9_999_999], [state(9_999_999)])
    store.close()
    assert shard_files(tmp_path) == [f"shard-{9_999_999 // 4096:08d}.parquet"]
    again = ShardedClientStore(str(tmp_path))
    assert len(again) == 1
    assert_row(again.get_many([9_999_999])[0], 9_999_999)


def test_a_file_uri_works(tmp_path: Path) -> None:
    uri = (tmp_path / "by-uri").as_uri()  # file:///...
    store = ShardedClientStore(uri, shard_size=8)
    store.put_many([5], [state(5)])
    store.close()
    assert shard_files(tmp_path / "by-uri") == ["shard-00000000.parquet"]
    assert_row(ShardedClientStore(str(tmp_path / "by-uri"), shard_size=8).get_many([5])[0], 5)


def test_any_pyarrow_filesystem_works(tmp_path: Path) -> None:
    """A filesystem that is not the local disk at its own paths (as S3 is not)."""
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    store = ShardedClientStore("bucket/prefix", shard_size=4, cache_shards=1, filesystem=fs)
    store.put_many([1, 6], [state(1), state(6)])  # two shards, one cached: one is written back
    store.close()
    assert shard_files(tmp_path / "bucket" / "prefix") == ["shard-00000000.parquet", "shard-00000001.parquet"]
    again = ShardedClientStore("bucket/prefix", shard_size=4, filesystem=fs)
    assert len(again) == 2
    assert_row(again.get_many([6])[0], 6)


def test_an_unknown_uri_scheme_is_a_clear_error() -> None:
    with pytest.raises(CheckpointError, match="store.uri"):
        ShardedClientStore("nosuchscheme://bucket/prefix")


def test_snapshot_points_to_flush(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match="flush"):
        ShardedClientStore(str(tmp_path)).snapshot()


def test_sparse_shards_under_the_byte_budget_stay_cached_and_write_nothing(tmp_path: Path) -> None:
    """A huge population's cohort touches one sparse shard per client: with a byte budget
    those shards stay in memory (no file per client per round) until a flush."""
    store = ShardedClientStore(str(tmp_path), shard_size=4, cache_shards=2, cache_mib=1.0)
    ids = [4 * k for k in range(50)]  # 50 clients, 50 shards, ~50 x 36 bytes
    store.put_many(ids, [ClientState(np.ones(4, np.float32), 0.5, 1) for _ in ids])
    assert len(store.cached_shards()) == 50 and store.on_disk_bytes() == 0
    store.flush()
    assert len(list(tmp_path.glob("shard-*.parquet"))) == 50
    tight = ShardedClientStore(str(tmp_path / "tight"), shard_size=4, cache_shards=2, cache_mib=0.0)
    tight.put_many(ids, [ClientState(np.ones(4, np.float32), 0.5, 1) for _ in ids])
    assert len(tight.cached_shards()) == 2  # count bound alone


def test_the_byte_budget_evicts_as_the_cached_rows_say_after_puts_reads_and_evictions(tmp_path: Path) -> None:
    """The store counts its cached rows as they change (the eviction check must not re-sum the
    cache at every shard load); the count must match the cache after any mix of operations."""
    row_bytes = 4 * DIM + 20
    store = ShardedClientStore(
        str(tmp_path), shard_size=4, cache_shards=2, cache_mib=10 * row_bytes / 2**20
    )  # room for 10 rows, whatever the shard count
    rng = np.random.default_rng(0)
    written: set[int] = set()
    for step in range(40):
        ids = sorted({int(c) for c in rng.integers(0, 80, size=int(rng.integers(1, 6)))})
        if step % 3:
            store.put_many(ids, [state(c) for c in ids])
            written.update(ids)
        else:
            store.get_many(ids)
        if step % 13 == 12:
            store.close()
        cached = [store._cache[s].n for s in store.cached_shards()]
        assert store._cached_bytes() == sum(cached) * row_bytes
    rows = store.get_many(sorted(written))  # evicted shards were written back, whole
    for c, row in zip(sorted(written), rows):
        assert_row(row, c)
    assert len(store) == len(written)
