"""The aggregator's state machine: InitGlo for first-timers, commits into the client store."""

from __future__ import annotations

import numpy as np
import pytest

from dp2fl_ray.algorithms.base import CrossEval, RoundResults
from dp2fl_ray.config import AlgorithmConfig, config_from_dict
from dp2fl_ray.errors import RunError
from dp2fl_ray.runtime.aggregation import AggregatorCore


def _algorithm(**fields: object) -> AlgorithmConfig:
    return config_from_dict({"algorithm": fields}).algorithm


def _full(loss: np.ndarray) -> CrossEval:
    m = len(loss)
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    return CrossEval(i.ravel(), j.ravel(), loss.ravel(), m)


def _core() -> AggregatorCore:
    return AggregatorCore(AlgorithmConfig(), np.array([1.0, 2.0]), np.array([0.0, 0.0, 0.0]))


def test_first_time_clients_start_from_the_global_data_prompt() -> None:
    core = _core()
    start = core.start_round(np.array([3, 7]))
    assert start.first_time.tolist() == [True, True]
    assert np.all(np.isnan(start.baselines))
    assert np.array_equal(start.data, np.zeros((2, 3)))


def test_a_round_moves_global_state_and_stores_clients() -> None:
    core = _core()
    cohort = np.array([3, 7])
    start = core.start_round(cohort)
    loss = np.array([[1.0, 1.0], [3.0, 3.0]])  # S = [2, 6], S = 8: w = [(8-2)/8, (8-6)/8] = [0.75, 0.25]
    task = np.array([[1.0, 1.0], [5.0, 5.0]])
    data = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    agg = core.aggregate(
        RoundResults(start, task, data, np.array([10, 10]), np.array([2.0, 2.0]), _full(loss))
    )
    assert agg.global_weights.tolist() == pytest.approx([0.75, 0.25])
    assert core.global_prompts()[0].tolist() == pytest.approx([2.0, 2.0])  # 0.75*1 + 0.25*5
    assert agg.details is not None
    core.commit(cohort, agg, np.array([0.5, 0.6]))
    again = core.start_round(cohort)
    assert again.first_time.tolist() == [False, False]
    assert again.baselines.tolist() == pytest.approx([0.5, 0.6])
    assert np.allclose(again.data, agg.personal_data)
    stats = core.store_stats()
    assert stats["clients_stored"] == 2 and stats["store_bytes"] == 2 * stats["bytes_per_client"] > 0
    newcomer = core.start_round(np.array([9]))
    assert newcomer.first_time.tolist() == [True]
    assert np.allclose(newcomer.data[0], core.global_prompts()[1])  # InitGlo: the *current* global


def test_non_finite_losses_stop_the_round_with_a_clear_error() -> None:
    core = _core()
    start = core.start_round(np.array([0, 1]))
    with pytest.raises(RunError, match="non-finite"):
        cross = _full(np.array([[1.0, np.nan], [1.0, 1.0]]))
        core.aggregate(
            RoundResults(start, np.ones((2, 2)), np.ones((2, 3)), np.array([1, 1]), np.ones(2), cross)
        )


def _one_round(name: str, **extra: float) -> tuple[AggregatorCore, np.ndarray]:
    core = AggregatorCore(_algorithm(name=name, **extra), np.array([1.0, 2.0]), np.array([0.0, 0.0, 0.0]))
    cohort = np.array([0, 1])
    start = core.start_round(cohort)
    task = np.array([[1.0, 1.0], [4.0, 7.0]])
    data = np.array([[1.0, 1.0, 1.0], [4.0, 4.0, 4.0]])
    personal = (task + 100, data + 100) if name == "pfedme" else (None, None)
    update = core.aggregate(
        RoundResults(start, task, data, np.array([30, 10]), start.baselines, None, *personal)
    )
    core.commit(cohort, update, np.array([0.1, 0.2]))
    return core, np.array([[1.0, 1.0], [4.0, 7.0]])


def test_promptfl_and_fedprox_average_everything_by_data_size() -> None:
    for name in ("promptfl", "fedprox"):
        core, _ = _one_round(name)
        # weights 30/40, 10/40: task = 0.75*[1,1] + 0.25*[4,7] = [1.75, 2.5]; data = 0.75*1 + 0.25*4 = 1.75
        assert core.global_prompts()[0].tolist() == pytest.approx([1.75, 2.5])
        assert core.global_prompts()[1].tolist() == pytest.approx([1.75] * 3)
        start = core.start_round(np.array([0, 5]))
        assert np.allclose(start.task, [[1.75, 2.5]] * 2) and np.allclose(start.data, 1.75)


def test_local_keeps_each_clients_own_prompts_and_no_global_move() -> None:
    core, _task = _one_round("local")
    assert core.global_prompts()[0].tolist() == [1.0, 2.0]  # never aggregated
    start = core.start_round(np.array([1, 7]))
    assert start.task[0].tolist() == [4.0, 7.0] and start.data[0].tolist() == [4.0] * 3
    assert start.task[1].tolist() == [1.0, 2.0] and start.first_time.tolist() == [False, True]


def test_pfedme_mixes_the_global_by_server_beta() -> None:
    core, _ = _one_round("pfedme", server_beta=0.5)
    # fedavg task = [1.75, 2.5]; global = 0.5*[1, 2] + 0.5*[1.75, 2.5] = [1.375, 2.25]
    assert core.global_prompts()[0].tolist() == pytest.approx([1.375, 2.25])
