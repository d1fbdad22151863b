"""store.dtype: prompts kept compact at rest, read back as float32, in both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dp2fl_ray.config import StoreConfig
from dp2fl_ray.errors import StoreError
from dp2fl_ray.state import ClientState, ClientStore, open_store
from dp2fl_ray.state.dtypes import decode, encode

DIM = 1000


def prompts(n: int, dim: int = DIM) -> np.ndarray:
    """Values shaped like trained prompts: mostly small, a few near an identity's 1."""
    rng = np.random.default_rng(7)
    return (rng.standard_normal((n, dim)) * 0.05 + (rng.random((n, dim)) < 0.01)).astype(np.float32)


def store(backend: str, dtype: str, tmp_path: Path) -> ClientStore:
    fields: dict[str, Any] = {"backend": backend, "dtype": dtype, "shard_size": 4}
    return open_store(StoreConfig(**fields), str(tmp_path / "store"))


def put_and_reopen(backend: str, dtype: str, tmp_path: Path, rows: np.ndarray) -> ClientStore:
    """Put ``rows`` as clients 0..n-1; a sharded store is flushed and opened afresh."""
    s = store(backend, dtype, tmp_path)
    s.put_many(list(range(len(rows))), [ClientState(r, 0.5, 1) for r in rows])
    if backend == "sharded":
        s.close()
        s = store(backend, dtype, tmp_path)
    return s


def got(s: ClientStore, n: int) -> np.ndarray:
    out = [row.data_prompt for row in s.get_many(range(n)) if row is not None]
    assert len(out) == n and all(p.dtype == np.float32 for p in out)
    return np.stack(out)


@pytest.mark.parametrize("backend", ["memory", "sharded"])
def test_float32_store_round_trips_exactly(backend: str, tmp_path: Path) -> None:
    rows = prompts(6)
    np.testing.assert_array_equal(got(put_and_reopen(backend, "float32", tmp_path, rows), 6), rows)


@pytest.mark.parametrize("backend", ["memory", "sharded"])
@pytest.mark.parametrize("dtype, rel", [("bfloat16", 2**-8), ("float16", 2**-11)])
def test_half_stores_round_to_nearest_within_half_an_ulp(
    backend: str, dtype: str, rel: float, tmp_path: Path
) -> None:
    rows = prompts(6)
    back = got(put_and_reopen(backend, dtype, tmp_path, rows), 6)
    torch_dtype = getattr(torch, dtype)
    expected = torch.from_numpy(rows).to(torch_dtype).float().numpy()  # torch's round to nearest even
    np.testing.assert_array_equal(back, expected)
    big = np.abs(rows) > 2**-14  # float16 subnormals below this have absolute, not relative, error
    assert np.all(np.abs(back - rows)[big] <= rel * np.abs(rows)[big])


@pytest.mark.parametrize("backend", ["memory", "sharded"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_stores_halve_the_prompt_bytes(backend: str, dtype: str, tmp_path: Path) -> None:
    full = put_and_reopen(backend, "float32", tmp_path / "full", prompts(3))
    half = put_and_reopen(backend, dtype, tmp_path / "half", prompts(3))
    overhead = full.bytes_per_client() - 4 * DIM
    assert overhead in (16, 20) and half.bytes_per_client() == 2 * DIM + overhead
    assert half.total_bytes() == 3 * half.bytes_per_client()


def test_bfloat16_shards_hold_the_bit_pattern_and_say_so(tmp_path: Path) -> None:
    rows = prompts(2)
    put_and_reopen("sharded", "bfloat16", tmp_path, rows).close()
    table = pq.read_table(tmp_path / "store" / "shard-00000000.parquet")
    assert table.schema.field("data_prompt").type == pa.list_(pa.uint16(), DIM)
    assert table.schema.metadata[b"dp2fl.dtype"] == b"bfloat16"
    bits = table.column("data_prompt").combine_chunks().flatten().to_numpy().reshape(2, DIM)
    expected = torch.from_numpy(rows).bfloat16().view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(bits, expected)


def test_a_store_reopened_with_another_dtype_fails_naming_the_fix(tmp_path: Path) -> None:
    put_and_reopen("sharded", "bfloat16", tmp_path, prompts(1)).close()
    with pytest.raises(StoreError, match=r"store\.dtype bfloat16.*set store\.dtype=bfloat16"):
        store("sharded", "float32", tmp_path).get_many([0])


def test_decoded_rows_re_encode_to_the_same_bits_so_checkpoints_restore_exactly(tmp_path: Path) -> None:
    for dtype in ("bfloat16", "float16"):
        once = decode(encode(prompts(2), dtype), dtype)
        np.testing.assert_array_equal(decode(encode(once, dtype), dtype), once)
        s = store("memory", dtype, tmp_path)
        s.put_many([0, 1], [ClientState(r, 0.25, 2) for r in prompts(2)])
        again = store("memory", dtype, tmp_path)
        again.restore(s.snapshot())
        np.testing.assert_array_equal(got(again, 2), got(s, 2))


def test_bfloat16_keeps_infinities_and_nans() -> None:
    x = np.array([np.inf, -np.inf, np.nan, -0.0, 3.4e38], np.float32)
    back = decode(encode(x, "bfloat16"), "bfloat16")
    assert np.isposinf(back[0]) and np.isneginf(back[1]) and np.isnan(back[2]) and np.signbit(back[3])
    assert np.isposinf(back[4])  # rounds up past bfloat16's largest finite value, as torch does


def test_an_unknown_dtype_is_refused_by_the_config() -> None:
    from dp2fl_ray.errors import ConfigError

    with pytest.raises(ConfigError, match="store.dtype"):
        StoreConfig(dtype="int8")  # type: ignore[arg-type]
