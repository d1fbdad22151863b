"""What every client store offers: rows by client id, their count and their size.

A store holds one row per client that has been sampled (``ClientState``); a client never
put has no row and reads back as None. Backends: ``InMemoryClientStore`` (a dict) and
``ShardedClientStore`` (Parquet shards on any pyarrow filesystem). Code that uses a store
takes a ``ClientStore`` and calls ``flush()`` where it needs the rows to be durable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass(frozen=True)
class ClientState:
    """What the server remembers of one client between its participations."""

    data_prompt: np.ndarray  # float32 (S,): the row the algorithm keeps (``Algorithm.stored_rows``)
    baseline: float  # L_k: the client's validation loss at the end of its last participation
    rounds_seen: int


class ClientStore(ABC):
    """Per-client rows keyed by a non-negative int client id."""

    @abstractmethod
    def get_many(self, client_ids: Iterable[int]) -> list[ClientState | None]:
        """Each client's state in the order asked, or None for a client never put."""

    @abstractmethod
    def put_many(self, client_ids: Sequence[int], states: Sequence[ClientState]) -> None:
        """Store (replace) the rows of ``client_ids``; the last of repeated ids wins."""

    @abstractmethod
    def __len__(self) -> int:
        """Rows stored: the number of distinct clients ever put."""

    @abstractmethod
    def __contains__(self, client_id: object) -> bool:
        """Whether ``client_id`` has a row."""

    @abstractmethod
    def bytes_per_client(self) -> int:
        """Bytes of one row's payload (each backend documents what it counts); 0 when empty."""

    def total_bytes(self) -> int:
        """Rows stored x ``bytes_per_client()``."""
        return len(self) * self.bytes_per_client()

    def flush(self) -> None:
        """Make every row put so far durable (no-op for stores that are not persistent)."""

    def close(self) -> None:
        """Flush and release resources; the store may still be read afterwards."""
        self.flush()

    @abstractmethod
    def checkpoint(self, tag: str) -> dict[str, Any]:
        """Make the rows as they are now recoverable, and say how: plain data only (arrays,
        strings, numbers), so a checkpoint can store it without pickling.

        A backend that is its own storage (sharded) copies itself aside under ``tag`` and
        names the copy; one that is not (memory) returns its rows.
        """

    @abstractmethod
    def restore_checkpoint(self, saved: dict[str, Any]) -> None:
        """Make the store exactly what it was when ``checkpoint`` returned ``saved``."""

    def snapshot(self) -> Any:
        """A copy of every row, for checkpoints of stores that are not their own checkpoint.

        Raises:
            NotImplementedError: the backend persists itself instead (see its docstring).
        """
        raise NotImplementedError(f"{type(self).__name__} has no snapshot(); call flush() instead")

    def restore(self, rows: Any) -> None:
        """Replace every row with those of a ``snapshot()``.

        Raises:
            NotImplementedError: the backend persists itself instead (see its docstring).
        """
        raise NotImplementedError(f"{type(self).__name__} has no restore(); reopen its uri instead")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
