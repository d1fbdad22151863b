"""DP2FL aggregation (ALGORITHM.md section 2, steps 4-5) against numbers worked out by hand."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from dp2fl_ray.algorithms.dp2fl import (
    DataPromptUpdate,
    DP2FLOptions,
    PeerSet,
    aggregate_data_prompt,
    aggregate_round,
    aggregate_round_sparse,
    global_weights,
    initglo_start,
    weighted_average,
)

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - hypothesis is a dev extra
    HAVE_HYPOTHESIS = False

PC, RNC, DNC = PeerSet.PC, PeerSet.RNC, PeerSet.DNC

# --- step 4: global weights ---------------------------------------------------------------


def test_fomo_sum_weights_favour_low_total_loss() -> None:
    loss = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [0.0, 1.0, 2.0]])
    # S_i = 6, 6, 3; S = 15; w_i = (15 - S_i) / (2 * 15) = 9/30, 9/30, 12/30
    w = global_weights(loss)
    np.testing.assert_allclose(w, [0.3, 0.3, 0.4])
    assert w.dtype == np.float64


def test_single_client_gets_all_the_weight() -> None:
    for scheme in ("fomo_sum", "softmin", "uniform"):
        np.testing.assert_array_equal(global_weights(np.array([[0.7]]), scheme), [1.0])


def test_fomo_sum_with_all_losses_zero_is_uniform() -> None:
    # S = 0 would divide by zero: every model is equally good, so 1/3 each
    np.testing.assert_allclose(global_weights(np.zeros((3, 3))), [1 / 3, 1 / 3, 1 / 3])


def test_softmin_weights() -> None:
    loss = np.array([[1.0, 0.0], [0.0, 0.0]])
    # S = 1, 0; w ∝ e^-1, 1 -> w_0 = 1 / (1 + e)
    np.testing.assert_allclose(global_weights(loss, "softmin"), [1 / (1 + math.e), math.e / (1 + math.e)])
    # tau = 0.5: w ∝ e^-2, 1 -> w_0 = 1 / (1 + e^2)
    w = global_weights(loss, "softmin", tau=0.5)
    np.testing.assert_allclose(w, [1 / (1 + math.e**2), math.e**2 / (1 + math.e**2)])


def test_softmin_is_stable_for_large_losses() -> None:
    loss = np.array([[1000.0, 0.0], [1001.0, 0.0]])
    # exp(-1000) underflows to 0 naively; shifted: w ∝ 1, e^-1 -> e/(1+e), 1/(1+e)
    w = global_weights(loss, "softmin")
    np.testing.assert_allclose(w, [math.e / (1 + math.e), 1 / (1 + math.e)])


def test_uniform_weights_follow_data_sizes() -> None:
    loss = np.array([[5.0, 0.0], [0.0, 0.0]])  # ignored by 'uniform'
    np.testing.assert_allclose(global_weights(loss, "uniform", sizes=np.array([1, 3])), [0.25, 0.75])
    np.testing.assert_allclose(global_weights(loss, "uniform"), [0.5, 0.5])


def test_unknown_scheme_names_the_allowed_values() -> None:
    with pytest.raises(ValueError, match=re.escape("fomo_sum | softmin | uniform")):
        global_weights(np.eye(2), "fedavg")


def test_bad_loss_shape_and_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(3,\)"):
        global_weights(np.ones(3))
    with pytest.raises(ValueError, match="sizes"):
        global_weights(np.eye(2), "uniform", sizes=np.array([1.0, 2.0, 3.0]))


def test_weighted_average() -> None:
    vectors = np.array([[1.0, 2.0], [3.0, 4.0]])
    # 0.25 * [1, 2] + 0.75 * [3, 4] = [0.25 + 2.25, 0.5 + 3] = [2.5, 3.5]
    np.testing.assert_allclose(weighted_average(vectors, np.array([0.25, 0.75])), [2.5, 3.5])
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(3,\)"):
        weighted_average(vectors, np.ones(3))


def test_initglo_start_uses_global_prompt_for_a_first_time_client() -> None:
    global_prompt = np.array([1.0, 2.0])
    start = initglo_start(None, global_prompt)
    np.testing.assert_array_equal(start, [1.0, 2.0])
    start[0] = 99.0  # a copy: training it leaves the global prompt alone
    assert global_prompt[0] == 1.0

    stored = np.array([5.0, 6.0], dtype=np.float32)
    start = initglo_start(stored, global_prompt)
    np.testing.assert_array_equal(start, [5.0, 6.0])
    assert start.dtype == np.float64 and not np.shares_memory(start, stored)


# --- step 5: one client's data prompt -----------------------------------------------------

ORIGIN = np.zeros(2)


def test_rnc_empty_gives_pure_pc_weights() -> None:
    updated = np.array([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]])  # distances 5, 1, 10
    losses = np.array([0.5, 0.8, 2.0])
    # L = 1, alpha * L = 1.2: PC = {0, 1}; 2.0 >= 1.2 -> DNC
    # raw = (1-0.5)/5 = 0.1, (1-0.8)/1 = 0.2, (1-2)/10 = -0.1; w = 0.1/0.3, 0.2/0.3, 0
    u = aggregate_data_prompt(ORIGIN, updated, losses, 1.0, alpha=1.2, beta=0.2)
    np.testing.assert_array_equal(u.sets, [PC, PC, DNC])
    assert u.sets.dtype == np.int8
    np.testing.assert_allclose(u.distances, [5.0, 1.0, 10.0])
    np.testing.assert_allclose(u.raw_weights, [0.1, 0.2, -0.1], rtol=1e-6)
    np.testing.assert_allclose(u.weights, [1 / 3, 2 / 3, 0.0], rtol=1e-6)
    # new = 1/3 [3, 4] + 2/3 [0, 1] = [1, 4/3 + 2/3] = [1, 2]
    np.testing.assert_allclose(u.new_prompt, [1.0, 2.0], rtol=1e-6)


def pc_empty_case(direction: str) -> DataPromptUpdate:
    updated = np.array([[3.0, 4.0], [0.0, 2.0], [6.0, 8.0]])  # distances 5, 2, 10
    losses = np.array([1.2, 1.1, 1.6])
    # L = 1, alpha * L = 1.5: no PC; 1.6 -> DNC; RNC = {0, 1}
    return aggregate_data_prompt(ORIGIN, updated, losses, 1.0, 1.5, 0.2, rnc_direction=direction)


def test_pc_empty_moves_a_fraction_beta_towards_rnc() -> None:
    u = pc_empty_case("toward")
    np.testing.assert_array_equal(u.sets, [RNC, RNC, DNC])
    # raw = -0.2/5 = -0.04, -0.1/2 = -0.05, -0.6/10 = -0.06; sum_RNC |raw| = 0.09
    np.testing.assert_allclose(u.raw_weights, [-0.04, -0.05, -0.06], rtol=1e-6)
    # w = 0.2 * 0.04/0.09 = 4/45, 0.2 * 0.05/0.09 = 1/9, 0 (sum = beta = 0.2)
    np.testing.assert_allclose(u.weights, [4 / 45, 1 / 9, 0.0], rtol=1e-6)
    # new = 4/45 [3, 4] + 1/9 [0, 2] = [12/45, 16/45 + 10/45] = [4/15, 26/45]
    np.testing.assert_allclose(u.new_prompt, [4 / 15, 26 / 45], rtol=1e-6)


def test_away_direction_negates_rnc_weights_only() -> None:
    u = pc_empty_case("away")
    np.testing.assert_allclose(u.weights, [-4 / 45, -1 / 9, 0.0], rtol=1e-6)
    np.testing.assert_allclose(u.new_prompt, [-4 / 15, -26 / 45], rtol=1e-6)
    # with PC: see the gamma case below, toward w = [0.5, 0.5] -> away [0.5, -0.5]
    u = aggregate_data_prompt(ORIGIN, np.eye(2), np.array([0.9, 1.5]), 1.0, 2.0, 0.2, "away")
    np.testing.assert_allclose(u.weights, [0.5, -0.5], rtol=1e-6)
    np.testing.assert_allclose(u.new_prompt, [0.5, -0.5], rtol=1e-6)  # 0.5 e1 - 0.5 e2


def test_unknown_direction_is_rejected() -> None:
    with pytest.raises(ValueError, match=re.escape("toward | away")):
        aggregate_data_prompt(ORIGIN, np.eye(2), np.ones(2), 1.0, 1.2, 0.2, "sideways")


def test_alpha_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="alpha"):
        aggregate_data_prompt(ORIGIN, np.eye(2), np.ones(2), 1.0, 0.9, 0.2)


def test_gamma_scales_rnc_down_to_the_weakest_pc() -> None:
    # L = 1, alpha = 2; peer 0 at e1 (distance 1), loss 0.9 -> PC, raw 0.1;
    # peer 1 at e2 (distance 1), loss 1.5 -> RNC, raw -0.5
    # gamma = 0.1 / 0.5 = 0.2; a = [0.1, 0.2 * 0.5 = 0.1] -> w = [0.5, 0.5]
    u = aggregate_data_prompt(ORIGIN, np.eye(2), np.array([0.9, 1.5]), 1.0, 2.0, 0.2)
    np.testing.assert_array_equal(u.sets, [PC, RNC])
    np.testing.assert_allclose(u.weights, [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(u.new_prompt, [0.5, 0.5], rtol=1e-6)


def test_gamma_is_clipped_at_one() -> None:
    # raw = (1-0.5)/1 = 0.5 (PC), (1-1.1)/1 = -0.1 (RNC); 0.5/0.1 = 5 -> gamma clipped to 1
    # a = [0.5, 0.1] -> w = [5/6, 1/6] (an unclipped gamma = 5 would give [0.5, 0.5])
    u = aggregate_data_prompt(ORIGIN, np.eye(2), np.array([0.5, 1.1]), 1.0, 2.0, 0.2)
    np.testing.assert_allclose(u.weights, [5 / 6, 1 / 6], rtol=1e-6)
    np.testing.assert_allclose(u.new_prompt, [5 / 6, 1 / 6], rtol=1e-6)


def test_rnc_with_zero_raw_weights_next_to_pc_gives_gamma_one() -> None:
    # peer 1's loss equals L: RNC with raw 0, max_RNC |raw| = 0 -> gamma 1, w = [1, 0]
    u = aggregate_data_prompt(ORIGIN, np.eye(2), np.array([0.5, 1.0]), 1.0, 2.0, 0.2)
    np.testing.assert_array_equal(u.sets, [PC, RNC])
    np.testing.assert_allclose(u.weights, [1.0, 0.0])
    np.testing.assert_allclose(u.new_prompt, [1.0, 0.0], rtol=1e-6)


def test_pc_empty_and_rnc_raw_weights_all_zero_means_no_move() -> None:
    # both losses equal L = 1: RNC, raw 0, sum_RNC |raw| = 0 (0/0) -> no move
    previous = np.array([0.5, -0.5])
    u = aggregate_data_prompt(previous, np.eye(2), np.array([1.0, 1.0]), 1.0, 1.5, 0.2)
    np.testing.assert_array_equal(u.sets, [RNC, RNC])
    np.testing.assert_array_equal(u.weights, [0.0, 0.0])
    np.testing.assert_array_equal(u.new_prompt, previous)


def test_pc_and_rnc_both_empty_means_no_move() -> None:
    # alpha = 1 leaves no room for RNC: losses 1.0 and 3.0 are both >= 1 * L -> all DNC
    previous = np.array([0.5, -0.5])
    u = aggregate_data_prompt(previous, np.eye(2), np.array([1.0, 3.0]), 1.0, 1.0, 0.2)
    np.testing.assert_array_equal(u.sets, [DNC, DNC])
    np.testing.assert_array_equal(u.new_prompt, previous)
    assert not np.shares_memory(u.new_prompt, previous)


def test_all_dnc_still_reports_raw_weights() -> None:
    updated = np.array([[3.0, 4.0], [0.0, 2.0]])  # distances 5, 2
    # L = 1, alpha * L = 1.2: 2.0 and 1.5 are DNC; raw = -1/5 = -0.2, -0.5/2 = -0.25
    u = aggregate_data_prompt(ORIGIN, updated, np.array([2.0, 1.5]), 1.0, 1.2, 0.2)
    np.testing.assert_array_equal(u.sets, [DNC, DNC])
    np.testing.assert_allclose(u.raw_weights, [-0.2, -0.25], rtol=1e-6)
    np.testing.assert_array_equal(u.weights, [0.0, 0.0])
    np.testing.assert_array_equal(u.new_prompt, ORIGIN)


def test_a_peer_at_distance_zero_dominates_and_the_prompt_stays() -> None:
    # client k did not move (distance 0): raw = 0.1 / 1e-8 = 1e7; peer 1 at [3, 4]:
    # raw = 0.5 / 5 = 0.1, so w = [1e7, 0.1] / (1e7 + 0.1) ~ [1 - 1e-8, 1e-8]
    updated = np.array([[0.0, 0.0], [3.0, 4.0]])
    u = aggregate_data_prompt(ORIGIN, updated, np.array([0.9, 0.5]), 1.0, 1.2, 0.2)
    assert u.weights[0] > 1 - 1e-7
    np.testing.assert_allclose(u.new_prompt, ORIGIN, atol=1e-6)  # moved ~ 1e-8 * [3, 4]


def test_identical_prompts_stay_put() -> None:
    previous = np.array([1.0, 2.0])
    updated = np.tile(previous, (3, 1))  # every peer at distance 0: raw = (L - loss) / eps
    u = aggregate_data_prompt(previous, updated, np.array([0.5, 1.1, 3.0]), 1.0, 1.2, 0.2)
    np.testing.assert_array_equal(u.sets, [PC, RNC, DNC])
    assert np.all(np.isfinite(u.weights)) and u.weights.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(u.new_prompt, previous)


def test_a_discarded_diverged_peer_does_not_leak_nan() -> None:
    updated = np.array([[3.0, 4.0], [np.nan, np.inf]])
    u = aggregate_data_prompt(ORIGIN, updated, np.array([0.5, np.inf]), 1.0, 1.2, 0.2)
    np.testing.assert_array_equal(u.sets, [PC, DNC])
    np.testing.assert_allclose(u.new_prompt, [3.0, 4.0], rtol=1e-6)


def test_inconsistent_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(2,\), \(2, 3\), \(2,\)"):
        aggregate_data_prompt(ORIGIN, np.ones((2, 3)), np.ones(2), 1.0, 1.2, 0.2)


def random_case(rng: np.random.Generator, m: int, dim: int) -> tuple[np.ndarray, ...]:
    previous = rng.normal(size=dim)
    updated = previous + rng.normal(size=(m, dim))
    losses = rng.uniform(0.1, 3.0, size=m)
    return previous, updated, losses


def check_weight_invariants(u: DataPromptUpdate, beta: float) -> None:
    w = u.weights
    assert np.all(w[u.sets == DNC] == 0) and np.all(w >= 0)
    if np.any(u.sets == PC):
        assert w.sum() == pytest.approx(1.0)
        # gamma: no RNC peer outweighs the weakest PC peer
        if np.any(u.sets == RNC):
            assert w[u.sets == RNC].max() <= w[u.sets == PC].min() * (1 + 1e-9)
    elif np.any(w > 0):
        assert w.sum() == pytest.approx(beta)


def test_weight_invariants_on_random_cases() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        m, dim = int(rng.integers(1, 8)), int(rng.integers(1, 5))
        previous, updated, losses = random_case(rng, m, dim)
        u = aggregate_data_prompt(previous, updated, losses, 1.2, alpha=1.5, beta=0.3)
        check_weight_invariants(u, beta=0.3)


if HAVE_HYPOTHESIS:

    @settings(max_examples=200, deadline=None)
    @given(
        seed=st.integers(0, 2**32 - 1),
        m=st.integers(1, 8),
        baseline=st.floats(0.05, 3.0),
        alpha=st.floats(1.0, 3.0),
        beta=st.floats(0.0, 1.0),
    )
    def test_pc_and_rnc_weights_sum_to_one_when_pc_is_non_empty(
        seed: int, m: int, baseline: float, alpha: float, beta: float
    ) -> None:
        previous, updated, losses = random_case(np.random.default_rng(seed), m, 3)
        u = aggregate_data_prompt(previous, updated, losses, baseline, alpha, beta)
        check_weight_invariants(u, beta)
        # the update is Eq. 12 with those weights
        expected = previous + u.weights @ (updated - previous)
        np.testing.assert_allclose(u.new_prompt, expected, rtol=1e-9, atol=1e-12)


# --- a whole round ------------------------------------------------------------------------


def test_one_client_round() -> None:
    args = (np.array([[0.5]]), np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]]), np.zeros((1, 2)))
    # w = [1]; loss 0.5 < L = 1 -> PC, raw = 0.5 / 5 = 0.1, w = 1 -> Pd = [3, 4]
    r = aggregate_round(*args, np.array([1.0]), DP2FLOptions(alpha=1.2, beta=0.2))
    np.testing.assert_array_equal(r.global_weights, [1.0])
    np.testing.assert_allclose(r.global_task, [1.0, 2.0])
    np.testing.assert_allclose(r.global_data, [3.0, 4.0])
    np.testing.assert_allclose(r.new_data, [[3.0, 4.0]], rtol=1e-6)
    # L = 0.4: 0.5 >= 1.2 * 0.4 = 0.48 -> DNC, the data prompt stays at [0, 0]
    r = aggregate_round(*args, np.array([0.4]), DP2FLOptions(alpha=1.2, beta=0.2))
    np.testing.assert_array_equal(r.sets, [[DNC]])
    np.testing.assert_array_equal(r.new_data, [[0.0, 0.0]])


LOSS3 = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [0.0, 1.0, 2.0]])  # [model i, val set j]
TASK3 = np.array([[1.0], [2.0], [3.0]])
DATA3 = np.array([[3.0, 4.0], [0.0, 2.0], [6.0, 8.0]])
PREVIOUS3 = np.array([[0.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
BASELINES3 = np.array([1.5, 2.0, 1.9])


def test_three_client_round() -> None:
    r = aggregate_round(LOSS3, TASK3, DATA3, PREVIOUS3, BASELINES3, DP2FLOptions(alpha=1.2, beta=0.2))
    # global weights as in the fomo_sum test: [0.3, 0.3, 0.4]
    np.testing.assert_allclose(r.global_weights, [0.3, 0.3, 0.4])
    np.testing.assert_allclose(r.global_task, [0.3 + 0.6 + 1.2])  # 2.1
    # 0.3 [3, 4] + 0.3 [0, 2] + 0.4 [6, 8] = [0.9 + 2.4, 1.2 + 0.6 + 3.2] = [3.3, 5.0]
    np.testing.assert_allclose(r.global_data, [3.3, 5.0])
    # client 0: column [1, 2, 0], L = 1.5, alpha * L = 1.8 -> PC, DNC, PC; distances from
    # [0, 0]: 5, 2, 10; raw = 0.5/5 = 0.1, -, 1.5/10 = 0.15 -> w = [0.4, 0, 0.6]
    # new = 0.4 [3, 4] + 0.6 [6, 8] = [1.2 + 3.6, 1.6 + 4.8] = [4.8, 6.4]
    np.testing.assert_array_equal(r.sets[:, 0], [PC, DNC, PC])
    np.testing.assert_allclose(r.weights[:, 0], [0.4, 0.0, 0.6], rtol=1e-6)
    np.testing.assert_allclose(r.new_data[0], [4.8, 6.4], rtol=1e-6)
    # client 1: column [2, 2, 1], L = 2: peers 0, 1 RNC with raw 0 (gamma 1), peer 2 PC
    # -> w = [0, 0, 1], new = [6, 8]
    np.testing.assert_array_equal(r.sets[:, 1], [RNC, RNC, PC])
    np.testing.assert_allclose(r.new_data[1], [6.0, 8.0], rtol=1e-6)
    # client 2: column [3, 2, 2], L = 1.9, alpha * L = 2.28 -> DNC, RNC, RNC (PC empty)
    np.testing.assert_array_equal(r.sets[:, 2], [DNC, RNC, RNC])
    np.testing.assert_allclose(r.weights[:, 2].sum(), 0.2)  # beta
    for k in range(3):  # every column is exactly the per-client aggregation
        u = aggregate_data_prompt(PREVIOUS3[k], DATA3, LOSS3[:, k], BASELINES3[k], 1.2, 0.2)
        np.testing.assert_array_equal(r.new_data[k], u.new_prompt)
        np.testing.assert_array_equal(r.sets[:, k], u.sets)
        np.testing.assert_array_equal(r.raw_weights[:, k], u.raw_weights)
        np.testing.assert_array_equal(r.weights[:, k], u.weights)
        np.testing.assert_array_equal(r.distances[:, k], u.distances)
    assert r.sets.dtype == np.int8 and r.new_data.dtype == np.float64


def test_round_options_reach_both_steps() -> None:
    r = aggregate_round(
        LOSS3,
        TASK3,
        DATA3,
        PREVIOUS3,
        BASELINES3,
        DP2FLOptions(alpha=1.2, beta=0.2, global_weights="uniform", rnc_direction="away"),
        sizes=np.array([1.0, 1.0, 2.0]),
    )
    np.testing.assert_allclose(r.global_weights, [0.25, 0.25, 0.5])
    assert np.all(r.weights[r.sets == RNC] <= 0)
    np.testing.assert_allclose(r.weights[:, 2].sum(), -0.2)  # client 2: PC empty, away


def test_inputs_are_never_mutated() -> None:
    inputs = [LOSS3, TASK3, DATA3, PREVIOUS3, BASELINES3]
    copies = [a.copy() for a in inputs]
    aggregate_round(LOSS3, TASK3, DATA3, PREVIOUS3, BASELINES3, DP2FLOptions(alpha=1.2, beta=0.2))
    aggregate_data_prompt(PREVIOUS3[0], DATA3, LOSS3[:, 0], 1.5, 1.2, 0.2, "away")
    global_weights(LOSS3, "softmin")
    weighted_average(DATA3, np.array([0.3, 0.3, 0.4]))
    for original, copy in zip(inputs, copies):
        np.testing.assert_array_equal(original, copy)


def test_round_rejects_inconsistent_shapes_naming_them() -> None:
    with pytest.raises(ValueError, match=r"\(3, 3\), \(3, 1\), \(3, 2\), \(2, 2\), \(3,\)"):
        aggregate_round(LOSS3, TASK3, DATA3, PREVIOUS3[:2], BASELINES3, DP2FLOptions(alpha=1.2, beta=0.2))
    with pytest.raises(ValueError, match="baselines"):
        aggregate_round(LOSS3, TASK3, DATA3, PREVIOUS3, np.ones(2), DP2FLOptions(alpha=1.2, beta=0.2))


def test_fomo_sum_with_unevaluated_pairs_uses_row_means() -> None:
    # row 0 evaluated on 2 of 3 sets, mean 2 -> S_0 = 3 * 2 = 6; row 1 full: S_1 = 3 + 3 + 3 = 9
    # S = 15, m = 2: w = [(15 - 6) / 15, (15 - 9) / 15] = [0.6, 0.4]
    loss = np.array([[1.0, np.nan, 3.0], [3.0, 3.0, 3.0]])
    assert global_weights(loss, "fomo_sum").tolist() == pytest.approx([0.6, 0.4])


def test_an_unevaluated_peer_gets_no_weight() -> None:
    # peer 1 was not evaluated on client k (NaN): it must not move k's prompt at all
    previous = np.zeros(2)
    updated = np.array([[1.0, 0.0], [0.0, 5.0]])
    out = aggregate_data_prompt(previous, updated, np.array([0.5, np.nan]), 1.0, alpha=1.2, beta=0.2)
    assert out.weights[1] == 0.0 and out.new_prompt.tolist() == pytest.approx([1.0, 0.0])


def test_sparse_round_with_every_pair_equals_the_dense_round() -> None:
    rng = np.random.default_rng(0)
    m = 4
    loss = rng.uniform(0.5, 2.0, (m, m))
    task, data, prev = rng.normal(size=(m, 3)), rng.normal(size=(m, 5)), rng.normal(size=(m, 5))
    base = rng.uniform(0.8, 1.5, m)
    dense = aggregate_round(loss, task, data, prev, base, DP2FLOptions(alpha=1.2, beta=0.2))
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    sparse = aggregate_round_sparse(
        i.ravel(), j.ravel(), loss.ravel(), task, data, prev, base, DP2FLOptions(alpha=1.2, beta=0.2)
    )
    np.testing.assert_allclose(sparse.global_weights, dense.global_weights, rtol=1e-12)
    np.testing.assert_allclose(sparse.new_data, dense.new_data, rtol=1e-12)
    np.testing.assert_allclose(sparse.weights.reshape(m, m), dense.weights, rtol=1e-12)


def test_sparse_round_only_uses_evaluated_peers() -> None:
    # client 1 evaluated only models 1 and 0 -- model 2 (far away, lowest loss) must not count for it
    task = np.zeros((3, 1))
    data = np.array([[1.0], [0.0], [100.0]])
    prev = np.zeros((3, 1))
    pair_i = np.array([0, 1, 2, 0, 1, 2, 1])
    pair_j = np.array([0, 0, 0, 1, 1, 2, 2])
    losses = np.array([1.0, 1.0, 1.0, 0.5, 2.0, 0.1, 2.0])
    out = aggregate_round_sparse(
        pair_i, pair_j, losses, task, data, prev, np.ones(3), DP2FLOptions(alpha=1.2, beta=0.2)
    )
    # client 1: baseline 1, peer 0 at loss 0.5 is PC, peer 1 at 2.0 is DNC
    # -> all weight on peer 0: prompt -> 1.0
    assert out.new_data[1].tolist() == pytest.approx([1.0])
