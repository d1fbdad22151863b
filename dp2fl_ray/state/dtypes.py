"""How a client store keeps its prompts: float32, float16 or bfloat16 (``store.dtype``).

Prompts arrive and leave as float32 vectors; only the copy at rest is compact. Computation
stays in the model's dtype: a worker gets float32 rows back and casts them as it always did.

bfloat16 has no numpy or Arrow type, so it is kept as its uint16 bit pattern (the high half
of the float32, rounded to nearest even): decoding is a shift, exact, and every bfloat16 value
survives a decode/encode round trip unchanged, so checkpoints of decoded rows restore bit for
bit. float16 is numpy's (and Arrow's) half float; values beyond +-65504 become inf, which the
prompts of the models here never reach (they start near 0 or at the identity).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

StoreDtype = Literal["float32", "bfloat16", "float16"]
STORE_DTYPES: tuple[str, ...] = get_args(StoreDtype)

# The numpy type a row is kept as, per store dtype (bfloat16: its bit pattern).
_STORAGE: dict[str, type[np.generic]] = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}


def storage_type(dtype: str) -> np.dtype:
    """The numpy dtype prompts of store dtype ``dtype`` are kept as.

    Raises:
        ValueError: ``dtype`` is not one of ``STORE_DTYPES``.
    """
    if dtype not in _STORAGE:
        raise ValueError(f"store dtype {dtype!r} is not one of {', '.join(STORE_DTYPES)}")
    return np.dtype(_STORAGE[dtype])


def itemsize(dtype: str) -> int:
    """Bytes per prompt value at rest: 4 for float32, 2 for bfloat16 and float16."""
    return storage_type(dtype).itemsize


def encode(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 ``values`` (any shape) as kept at rest in store dtype ``dtype`` (a new array)."""
    x = np.asarray(values, np.float32)
    if dtype == "bfloat16":
        bits = x.view(np.uint32).astype(np.uint64)  # no overflow while rounding
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest, ties to even
        out = rounded.astype(np.uint16)
        nan = np.isnan(x)
        if nan.any():  # rounding could carry a NaN's payload into inf; keep it a quiet NaN
            out[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
        return out
    return x.astype(storage_type(dtype))


def decode(stored: np.ndarray, dtype: str) -> np.ndarray:
    """Rows kept in store dtype ``dtype`` back as float32 (a new array, same shape)."""
    if dtype == "bfloat16":
        return (np.asarray(stored, np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(stored, storage_type(dtype)).astype(np.float32)
