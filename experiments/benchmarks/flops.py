"""FLOPs of the engine's backbone passes and this machine's dense-matmul ceiling.

Utilisation = FLOP/s the engine reaches in a worker (one torch thread, as a backbone worker
with ``cpus_per_worker: 1`` runs) / FLOP/s of a large dense matmul in the same dtype and
thread count. Times are the process's CPU time (one thread: the time it computed), not
wall time, so other work on a shared machine does not count as ours. FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` over the very calls that are timed (matmuls and
attention, forward and backward), so they are the FLOPs executed; ``bert_flops`` gives the
analytic count for a check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

CEILING_SHAPES = ((4096, 384, 1536), (4096, 1536, 384), (4096, 384, 384), (4096, 384, 1152))


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs executed by ``fn()`` (matmuls, convolutions, attention; forward and backward)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def bert_flops(layers: int, hidden: int, ffn: int, rows: int, rows_attended: int | None = None) -> int:
    """Analytic forward FLOPs of ``layers`` encoder layers over ``rows`` token rows.

    Linear layers: 2 x rows x (4 d^2 + 2 d ffn) (Q, K, V, output; two FFN matrices).
    Attention: 2 x 2 x rows x keys x d (scores and weighted sum), keys per row =
    ``rows_attended`` (the padded length T when every row attends T keys; None: no
    attention term).
    """
    linear = 2 * rows * (4 * hidden * hidden + 2 * hidden * ffn)
    attention = 0 if rows_attended is None else 4 * rows * rows_attended * hidden
    return layers * (linear + attention)


def matmul_ceiling(
    dtype: torch.dtype, shapes: Sequence[tuple[int, int, int]] = CEILING_SHAPES, repeats: int = 10
) -> float:
    """Best FLOP/s of plain ``a @ b`` over transformer-layer shapes, with the current threads."""
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        for _ in range(3):
            a @ b
        start = time.process_time()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * m * k * n * repeats / (time.process_time() - start))
    return best


def achieved(fn: Callable[[], object], repeats: int = 1) -> tuple[float, int, float]:
    """(FLOP/s, FLOPs per call, CPU seconds per call) of ``fn`` after one warm-up call."""
    flops = count_flops(fn)
    fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    seconds = (time.process_time() - start) / repeats
    return flops / seconds, flops, seconds
