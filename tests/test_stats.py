"""``dp2fl_ray.stats`` against scipy on fixed numbers: t quantiles and tails, intervals, paired tests,
the bootstrap, and Holm / Bonferroni."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sp

from dp2fl_ray import stats

SEEDS_A = [0.8213, 0.8102, 0.8351, 0.8290, 0.8177]
SEEDS_B = [0.8190, 0.8121, 0.8288, 0.8201, 0.8150]


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 29, 200])
@pytest.mark.parametrize("q", [0.5, 0.6, 0.975, 0.99, 0.9995, 0.025, 1e-6])
def test_t_quantile_equals_scipy(q: float, df: int) -> None:
    assert stats.t_ppf(q, df) == pytest.approx(sp.t.ppf(q, df), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("df", [1, 2, 5, 30])
@pytest.mark.parametrize("t", [-4.0, -0.3, 0.0, 0.7, 2.5, 12.0])
def test_t_tail_equals_scipy(t: float, df: int) -> None:
    assert stats.t_sf(t, df) == pytest.approx(sp.t.sf(t, df), rel=1e-10, abs=1e-15)


@pytest.mark.parametrize("values", [SEEDS_A, SEEDS_A[:2], [1.0, 2.0, 4.0]])
@pytest.mark.parametrize("level", [0.95, 0.99])
def test_mean_ci_is_the_student_t_interval(values: list[float], level: float) -> None:
    ci = stats.mean_ci(values, level)
    low, high = sp.t.interval(level, len(values) - 1, loc=np.mean(values), scale=sp.sem(values))
    assert (ci.n, ci.mean) == (len(values), pytest.approx(np.mean(values)))
    assert (ci.low, ci.high) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))


def test_one_seed_has_no_interval_and_nans_do_not_count() -> None:
    one = stats.mean_ci([0.7])
    assert (one.mean, one.n, one.half_width, one.low) == (0.7, 1, None, None)
    dropped = stats.mean_ci([0.7, float("nan"), 0.9])
    assert dropped.n == 2 and dropped.mean == pytest.approx(0.8)
    empty = stats.mean_ci([float("nan")])
    assert empty.n == 0 and np.isnan(empty.mean) and empty.half_width is None


def test_paired_test_equals_ttest_rel_and_the_interval_of_the_differences() -> None:
    test = stats.paired_test(SEEDS_A, SEEDS_B)
    ref = sp.ttest_rel(SEEDS_A, SEEDS_B)
    d = np.subtract(SEEDS_A, SEEDS_B)
    low, high = sp.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sp.sem(d))
    assert test.t == pytest.approx(ref.statistic, rel=1e-10)
    assert test.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert (test.diff.low, test.diff.high) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))


def test_paired_test_drops_incomplete_pairs_and_says_nothing_about_one_pair() -> None:
    a, b = [0.5, 0.6, float("nan"), 0.9], [0.4, 0.7, 0.8, 0.6]
    test = stats.paired_test(a, b)
    ref = sp.ttest_rel([0.5, 0.6, 0.9], [0.4, 0.7, 0.6])
    assert test.diff.n == 3 and test.p == pytest.approx(ref.pvalue, rel=1e-9)
    one = stats.paired_test([0.5], [0.4])
    assert (one.diff.n, one.diff.half_width, one.p) == (1, None, None)
    same = stats.paired_test([0.5, 0.6], [0.4, 0.5])  # identical differences: nothing to test against
    assert same.p is None and same.diff.half_width == 0.0


def test_bootstrap_of_one_stratum_matches_scipy_percentile_bootstrap() -> None:
    rng = np.random.default_rng(3)
    d = rng.normal(0.02, 0.05, size=40)
    ours = stats.paired_bootstrap(d, np.zeros(40, dtype=int), seed=1, resamples=20_000)
    ref = sp.bootstrap((d,), np.mean, n_resamples=20_000, method="percentile", random_state=2)
    assert ours.mean == pytest.approx(d.mean())
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=2e-3)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=2e-3)
    # p-value: close to the normal approximation of the one-sample test of mean 0 (n = 40)
    z = d.mean() / (d.std(ddof=0) / np.sqrt(len(d)))
    assert ours.p == pytest.approx(2 * sp.norm.sf(abs(z)), abs=0.01)


def test_bootstrap_is_seeded_and_resamples_within_each_seed() -> None:
    d = np.array([0.1, 0.2, 0.0, -0.1, 0.3, 0.25, 0.05])
    s = np.array([0, 0, 0, 1, 1, 2, 2])
    first, again = stats.paired_bootstrap(d, s, seed=7), stats.paired_bootstrap(d, s, seed=7)
    assert first == again and first.pairs == 7 and first.strata == 3
    assert stats.paired_bootstrap(d, s, seed=8) != first
    # a stratum of identical differences adds no spread: all of it in the others
    flat = stats.paired_bootstrap([0.1, 0.1, 0.1, 0.3], [0, 0, 0, 1], seed=0)
    assert flat.low == pytest.approx(flat.high) == pytest.approx(0.15)
    assert stats.paired_bootstrap([0.1], [0]).p is None


def test_holm_on_hand_worked_numbers() -> None:
    # sorted 0.01, 0.02, 0.04 (m = 3): 0.03, max(0.03, 0.04), max(0.04, 0.04)
    assert stats.holm([0.04, 0.01, None, 0.02]) == [
        pytest.approx(0.04), pytest.approx(0.03), None, pytest.approx(0.04),
    ]  # fmt: skip
    assert stats.holm([0.5, 0.6]) == [pytest.approx(1.0), pytest.approx(1.0)]  # capped at 1, monotone


def test_correct_widens_intervals_to_bonferroni_and_holm_adjusts_p() -> None:
    tests = [stats.paired_test(SEEDS_A, SEEDS_B), stats.paired_test(SEEDS_B, SEEDS_A[::-1])]
    fixed = stats.correct(tests)
    assert [t.p_adjusted for t in fixed] == pytest.approx(stats.holm([t.p for t in tests]))
    d = np.subtract(SEEDS_A, SEEDS_B)
    low, high = sp.t.interval(1 - 0.05 / 2, len(d) - 1, loc=d.mean(), scale=sp.sem(d))
    assert fixed[0].diff.level == pytest.approx(0.975)
    assert (fixed[0].diff.low, fixed[0].diff.high) == (pytest.approx(low), pytest.approx(high))
    assert fixed[0].p == tests[0].p  # the raw p-value is kept beside the adjusted one
    alone = stats.correct(tests[:1])
    assert alone[0].diff == tests[0].diff and alone[0].p_adjusted == tests[0].p
