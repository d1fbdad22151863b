"""Derived seeds: every random draw is seeded from (seed, purpose, ...) and nothing else.

A derived seed is a stable hash (BLAKE2b), identical across processes, machines and Python
versions, unlike ``hash()``. No code in the package touches a global RNG.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(seed: int, *parts: int | str) -> int:
    """Return a 63-bit seed determined only by ``seed`` and ``parts``.

    Args:
        seed: the experiment's seed.
        parts: what the draw is for, e.g. ``("partition", client_id)`` or ``("cohort", round)``.
    """
    text = "/".join([str(int(seed))] + [str(p) for p in parts])
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def rng_for(seed: int, *parts: int | str) -> np.random.Generator:
    """A fresh numpy Generator for one purpose (see :func:`derive_seed`)."""
    return np.random.default_rng(derive_seed(seed, *parts))
