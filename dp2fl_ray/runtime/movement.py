"""What crosses process boundaries in a round, and how rows travel without the driver.

Client rows (start rows, trained rows, personal rows) move between the aggregator and the
workers as Ray object references: the aggregator ``ray.put``s the rows of each slice and
hands the driver a ``RowsRef`` (the reference and its size), and a worker returns its
trained rows as a second return value whose reference the driver passes on to the
aggregator unread. The driver sees ids, losses and metrics only.

``Ledger`` is the driver's account of a round's movement, kept where every remote call is
made: the arrays in the arguments and results of the driver's own calls (``driver_bytes``)
and the rows each call moves by reference (at the size their producer reported), once per
consumer, so a re-run slice counts again. ``moved_bytes = driver_bytes + by-reference
bytes``. Reading an object from the same node's object store is a shared-memory map, not a
copy; the count is of what *crosses* a process boundary, which a remote node would copy.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray


@dataclass(frozen=True)
class RowsRef:
    """A reference to a ``rows.SliceRows`` in the object store, and its payload in bytes."""

    ref: Any  # ray.ObjectRef
    nbytes: int


def put_rows(rows: Any) -> RowsRef:
    """``ray.put`` a ``SliceRows`` (or anything with ``nbytes``) and name its size."""
    return RowsRef(ray.put(rows), int(nbytes(rows)))


def nbytes(obj: Any) -> int:
    """Bytes of the arrays in ``obj`` (arrays, frames, dataclasses, sequences, dicts; scalars
    and strings count 0, an object reference counts 0: its payload is counted where it moves)."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    pd = sys.modules.get("pandas")  # no frame where pandas is not loaded (most aggregators)
    if pd is not None and isinstance(obj, pd.DataFrame):
        return int(obj.memory_usage(index=False, deep=False).sum())
    if isinstance(obj, RowsRef):
        return 0
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(nbytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(x) for x in obj)
    if isinstance(obj, dict):
        return sum(nbytes(x) for x in obj.values())
    return 0


class Ledger:
    """The driver's running count of a round's movement (``take`` reads and resets it)."""

    def __init__(self) -> None:
        self.driver_bytes = 0
        self.reference_bytes = 0

    def through_driver(self, *objs: Any) -> None:
        """Arrays the driver sends or receives."""
        self.driver_bytes += sum(nbytes(o) for o in objs)

    def by_reference(self, n: int) -> None:
        """Rows moved between two actors without the driver."""
        self.reference_bytes += int(n)

    def submit(self, method: Any, *args: Any) -> Any:
        """``method.remote(*args)``, counting its arguments; a ``RowsRef`` argument is passed as
        its reference (Ray resolves a top-level reference before the call) and counted as moved
        by reference."""
        passed = []
        for a in args:
            if isinstance(a, RowsRef):
                self.by_reference(a.nbytes)
                passed.append(a.ref)
            else:
                self.through_driver(a)
                passed.append(a)
        return method.remote(*passed)

    def call(self, method: Any, *args: Any) -> Any:
        """A blocking call (the aggregator's): ``ray.get(submit(...))``, counting the result."""
        result = ray.get(self.submit(method, *args))
        self.through_driver(result)
        return result

    def counted(self, fetch: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``fetch`` (``ray.get``) that counts what it returns as through the driver."""

        def get(ref: Any) -> Any:
            out = fetch(ref)
            self.through_driver(out)
            return out

        return get

    def take(self) -> dict[str, int]:
        """The round's ``moved_bytes`` and ``driver_bytes``; the ledger starts again at 0."""
        out = {"moved_bytes": self.driver_bytes + self.reference_bytes, "driver_bytes": self.driver_bytes}
        self.driver_bytes = self.reference_bytes = 0
        return out
