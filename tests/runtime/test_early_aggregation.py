"""Step 5 on cross-evaluation blocks as they arrive equals step 5 at the end, bit for bit."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from dp2fl_ray.algorithms.base import RoundResults
from dp2fl_ray.config import config_from_dict
from dp2fl_ray.runtime.aggregation import AggregatorCore, RoundUpdate
from dp2fl_ray.runtime.crosseval import CrossEval, block_pairs, candidate_models

M, DT, DD = 6, 3, 4


def _round(n_models: int, seed: int = 0) -> tuple[AggregatorCore, dict, list[np.ndarray], CrossEval]:
    """A dp2fl aggregator after start_round, the round's inputs, blocks of pairs, the cross-eval."""
    rng = np.random.default_rng(seed)
    core = AggregatorCore(
        config_from_dict({"algorithm": {"alpha": 1.3}}).algorithm, rng.normal(size=DT), rng.normal(size=DD)
    )
    cohort = np.arange(10, 10 + M)
    start = core.start_round(cohort)
    candidates = candidate_models(seed, 1, cohort, n_models)
    blocks = [block_pairs(candidates, s) for s in (slice(0, 2), slice(2, 5), slice(5, 6))]
    for b, s in zip(blocks, (0, 2, 5)):
        b[:, 1] += s  # set index within the block -> cohort row
    pairs = np.concatenate(blocks)
    losses = rng.uniform(0.5, 1.5, size=len(pairs))
    inputs = {
        "start": start, "task": rng.normal(size=(M, DT)), "data": rng.normal(size=(M, DD)),
        "n_train": np.full(M, 10), "baselines": rng.uniform(0.8, 1.2, size=M),
    }  # fmt: skip
    cross = CrossEval(pairs[:, 0], pairs[:, 1], losses, n_models)
    cut = np.cumsum([0, *(len(b) for b in blocks)])
    block_losses = [losses[lo:hi] for lo, hi in pairwise(cut)]
    return core, inputs, [np.column_stack([b, bl]) for b, bl in zip(blocks, block_losses)], cross


def _aggregate(core: AggregatorCore, inputs: dict, cross: CrossEval) -> RoundUpdate:
    return core.aggregate(
        RoundResults(
            inputs["start"], inputs["task"], inputs["data"], inputs["n_train"], inputs["baselines"], cross
        )
    )


def _assert_identical(a: RoundUpdate, b: RoundUpdate) -> None:
    for name in ("global_task", "global_data", "personal_task", "personal_data", "global_weights"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.details is not None and b.details is not None
    for name in ("new_data", "sets", "raw_weights", "weights", "distances"):
        assert np.array_equal(getattr(a.details, name), getattr(b.details, name)), name


@pytest.mark.parametrize("n_models", [M, 3])  # every pair (dense path), and FedFomo-style candidates
def test_blocks_absorbed_in_any_order_give_the_end_of_round_answer(n_models: int) -> None:
    core, inputs, blocks, cross = _round(n_models)
    at_end = _aggregate(core, inputs, cross)
    core, inputs, blocks, cross = _round(n_models)
    core.begin_early(inputs["start"], inputs["data"], inputs["baselines"])
    for block in reversed(blocks):  # completion order is not block order
        core.absorb_losses(block[:, 0].astype(int), block[:, 1].astype(int), block[:, 2])
    early = _aggregate(core, inputs, cross)
    assert early.early_clients == M and at_end.early_clients == 0
    _assert_identical(at_end, early)


def test_some_blocks_early_and_the_rest_at_the_end() -> None:
    core, inputs, blocks, cross = _round(M)
    at_end = _aggregate(core, inputs, cross)
    core, inputs, blocks, cross = _round(M)
    core.begin_early(inputs["start"], inputs["data"], inputs["baselines"])
    core.absorb_losses(blocks[1][:, 0].astype(int), blocks[1][:, 1].astype(int), blocks[1][:, 2])
    early = _aggregate(core, inputs, cross)
    assert early.early_clients == 3  # the block of sets 2, 3, 4
    _assert_identical(at_end, early)


def test_early_work_from_other_inputs_is_discarded() -> None:
    core, inputs, blocks, cross = _round(M)
    at_end = _aggregate(core, inputs, cross)
    core, inputs, blocks, cross = _round(M)
    core.begin_early(inputs["start"], inputs["data"] + 1.0, inputs["baselines"])  # not this round's rows
    for block in blocks:
        core.absorb_losses(block[:, 0].astype(int), block[:, 1].astype(int), block[:, 2])
    stale = _aggregate(core, inputs, cross)
    assert stale.early_clients == 0
    _assert_identical(at_end, stale)
    assert core.early is None  # one round's early work never leaks into the next
