"""The in-memory client store: per-client data prompt, baseline loss and rounds seen.

A client has a row only once it has been sampled; a population of 10^7 costs nothing until
its clients take part. Rows come and go as float32 numpy vectors (what travels through Ray
anyway); at rest the prompt is kept in ``store.dtype`` (``state/dtypes.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from dp2fl_ray.state.base import ClientState, ClientStore
from dp2fl_ray.state.dtypes import decode, encode, storage_type

__all__ = ["ClientState", "InMemoryClientStore"]


class InMemoryClientStore(ClientStore):
    """Client rows in a dict keyed by client id (small and medium runs).

    Args:
        dtype: how prompts are kept (``store.dtype``: float32, bfloat16, float16); rows are
            put and got as float32 whatever it is.
    """

    def __init__(self, dtype: str = "float32") -> None:
        storage_type(dtype)  # a ValueError naming the choices for an unknown dtype
        self.dtype = dtype
        self._rows: dict[int, ClientState] = {}  # data_prompt in the storage type of dtype

    def get_many(self, client_ids: Iterable[int]) -> list[ClientState | None]:
        """Each client's state (float32 prompt, a fresh copy), or None for a client never seen."""
        return [None if (r := self._rows.get(int(c))) is None else self._decoded(r) for c in client_ids]

    def put_many(self, client_ids: Sequence[int], states: Sequence[ClientState]) -> None:
        """Store (replace) the rows of ``client_ids``."""
        if len(client_ids) != len(states):
            raise ValueError(f"{len(client_ids)} ids but {len(states)} states")
        for c, s in zip(client_ids, states):
            self._rows[int(c)] = ClientState(
                encode(s.data_prompt, self.dtype), float(s.baseline), int(s.rounds_seen)
            )

    def _decoded(self, row: ClientState) -> ClientState:
        return ClientState(decode(row.data_prompt, self.dtype), row.baseline, row.rounds_seen)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._rows

    def bytes_per_client(self) -> int:
        """Bytes of one row's payload (prompt + baseline + rounds seen), 0 when empty."""
        for row in self._rows.values():
            return int(row.data_prompt.nbytes) + 8 + 8
        return 0

    def total_bytes(self) -> int:
        return self.bytes_per_client() * len(self._rows)

    def snapshot(self) -> dict[int, ClientState]:
        """A copy of every row with float32 prompts (for checkpoints: the format does not depend
        on ``dtype``, and decoded values re-encode exactly, so a restore is bit for bit)."""
        return {c: self._decoded(r) for c, r in self._rows.items()}

    def restore(self, rows: dict[int, ClientState]) -> None:
        self._rows = {}
        self.put_many(list(rows), list(rows.values()))

    def checkpoint(self, tag: str) -> dict[str, Any]:
        """Every row as plain arrays (float32 prompts; ids in ascending order)."""
        rows = self.snapshot()
        ids = sorted(rows)
        width = len(rows[ids[0]].data_prompt) if ids else 0
        return {
            "client_ids": np.array(ids, np.int64),
            "prompts": np.stack([rows[c].data_prompt for c in ids])
            if ids
            else np.zeros((0, width), np.float32),
            "baselines": np.array([rows[c].baseline for c in ids], np.float64),
            "rounds_seen": np.array([rows[c].rounds_seen for c in ids], np.int64),
        }

    def restore_checkpoint(self, saved: dict[str, Any]) -> None:
        ids = [int(c) for c in np.asarray(saved["client_ids"])]
        prompts, baselines = np.asarray(saved["prompts"], np.float32), np.asarray(saved["baselines"])
        seen = np.asarray(saved["rounds_seen"])
        self._rows = {}
        self.put_many(
            ids, [ClientState(prompts[k], float(baselines[k]), int(seen[k])) for k in range(len(ids))]
        )
