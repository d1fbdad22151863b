"""The in-memory client store holds rows only for clients that were sampled."""

from __future__ import annotations

import numpy as np

from dp2fl_ray.state import ClientState, InMemoryClientStore


def test_rows_exist_only_once_written_and_are_copies() -> None:
    store = InMemoryClientStore()
    prompt = np.arange(4, dtype=np.float32)
    assert store.get_many([5]) == [None] and len(store) == 0 and store.total_bytes() == 0
    store.put_many([5], [ClientState(prompt, 0.3, 1)])
    prompt[:] = -1  # the store keeps its own copy
    (row,) = store.get_many([5])
    assert row is not None and row.data_prompt.tolist() == [0, 1, 2, 3] and row.baseline == 0.3
    assert 5 in store and 6 not in store
    assert store.bytes_per_client() == 4 * 4 + 16 and store.total_bytes() == store.bytes_per_client()
