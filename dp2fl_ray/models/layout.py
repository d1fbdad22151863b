"""Prompts as flat vectors: how a named set of prompt tensors packs into one row.

Every client's prompts travel (to workers, through the object store, into the client
store, into the aggregation maths) as one float32 vector per client. A ``PromptLayout``
says which slice of that vector is which tensor, so a model can view a batch of rows
``(B, D)`` as named tensors ``(B, *shape)`` without copying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PromptLayout:
    """An ordered list of ``(name, shape)``; the flat vector is their concatenation."""

    entries: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return sum(math.prod(shape) for _, shape in self.entries)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """View rows ``(B, D)`` as ``{name: (B, *shape)}`` (views: gradients flow back)."""
        if flat.dim() != 2 or flat.shape[1] != self.size:
            raise ValueError(f"expected prompts of shape (B, {self.size}), got {tuple(flat.shape)}")
        out: dict[str, torch.Tensor] = {}
        offset = 0
        for name, shape in self.entries:
            n = math.prod(shape)
            out[name] = flat[:, offset : offset + n].reshape(flat.shape[0], *shape)  # (B, *shape)
            offset += n
        return out

    def flatten(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pack ``{name: (*shape)}`` (one client) into a flat vector ``(D,)``."""
        missing = [name for name, _ in self.entries if name not in parts]
        if missing:
            raise ValueError(f"prompt parts missing: {missing}")
        pieces = []
        for name, shape in self.entries:
            t = parts[name]
            if tuple(t.shape) != shape:
                raise ValueError(f"prompt part {name!r}: expected shape {shape}, got {tuple(t.shape)}")
            pieces.append(t.reshape(-1))
        return torch.cat(pieces)  # (D,)

    def describe(self) -> str:
        """One line per part, e.g. for the run log of what trains."""
        return ", ".join(f"{name}{list(shape)}" for name, shape in self.entries)
