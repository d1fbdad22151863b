"""Comparisons over seeds and clients: confidence intervals, paired tests, a paired bootstrap, and the
correction for comparing several methods against one baseline at once.

Pure numpy (no scipy, no Ray): the package's only statistics, checked against scipy in
``tests/test_stats.py``. Every result carries ``n`` (what it rests on); an interval of fewer than two
observations is ``None``, never a zero width, because one seed says nothing about seed-to-seed spread.

- ``mean_ci``: mean and Student-t interval over seeds.
- ``paired_test``: the per-seed differences of two methods run on the same seeds (same partition,
  same cohorts), their mean, Student-t interval and two-sided paired t-test p-value (scipy's
  ``ttest_rel``).
- ``paired_bootstrap``: the per-(seed, client) differences, resampled clients-within-seeds (each seed
  a stratum of its own size), seeded so the same input gives the same output on every run.
- ``holm`` and ``bonferroni_level``: with m methods against one baseline, p-values are Holm-adjusted
  (step-down; controls the family-wise error at the nominal level, uniformly more powerful than
  Bonferroni) and intervals are Bonferroni-widened to level ``1 - (1 - level) / m`` (simultaneous
  coverage; Holm has no matching interval, and a Bonferroni interval that excludes 0 implies the Holm
  test rejects, so the two never contradict).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000
_EPS = 1e-15


# --- Student t, from the regularised incomplete beta function ------------------------------


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), evaluated with the modified Lentz method."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t)) if math.isfinite(t) else 0.0
    return tail if t >= 0 else 1.0 - tail


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (bisection on ``t_sf``: exact to double precision)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile q must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    low, high = 0.0, 1.0
    while t_sf(high, df) > 1.0 - q:
        low, high = high, 2.0 * high
    for _ in range(200):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        low, high = (mid, high) if t_sf(mid, df) > 1.0 - q else (low, mid)
    return 0.5 * (low + high)


# --- intervals and tests over seeds --------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided interval at ``level``; ``half_width`` is None when n < 2."""

    mean: float
    n: int
    half_width: float | None
    level: float = LEVEL

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def mean_ci(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> Interval:
    """Mean of the finite ``values`` and its Student-t interval (df = n - 1).

    NaNs (a missing or failed seed) are dropped and not counted in ``n``. With n = 0 the mean is
    NaN; with n = 1 there is no interval.
    """
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(float("nan"), 0, None, level)
    if n == 1:
        return Interval(float(x[0]), 1, None, level)
    sem = float(np.std(x, ddof=1)) / math.sqrt(n)
    return Interval(float(np.mean(x)), n, t_ppf(0.5 + level / 2.0, n - 1) * sem, level)


@dataclass(frozen=True)
class PairedTest:
    """Method minus baseline over the seeds both have: mean difference, interval, t and p.

    ``p`` is None when n < 2, or when every difference is the same (no spread to test against).
    ``p_adjusted`` is set by ``correct``; it equals ``p`` until then.
    """

    diff: Interval
    t: float | None
    p: float | None
    p_adjusted: float | None = None


def paired_test(
    method: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray, level: float = LEVEL
) -> PairedTest:
    """Paired t-test of ``method[i] - baseline[i]`` (pair i: the same seed); pairs with a NaN drop out.

    Equals ``scipy.stats.ttest_rel(method, baseline)`` for the p-value and ``scipy.stats.t.interval``
    on the differences for the interval.
    """
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {a.shape} and {b.shape}")
    d = _finite(a - b)
    diff = mean_ci(d, level)
    if diff.n < 2:
        return PairedTest(diff, None, None, None)
    sd = float(np.std(d, ddof=1))
    if sd == 0.0:
        return PairedTest(diff, None, None, None)
    t = diff.mean / (sd / math.sqrt(diff.n))
    p = min(1.0, 2.0 * t_sf(abs(t), diff.n - 1))
    return PairedTest(diff, t, p, p)


# --- the per-client paired bootstrap -------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    """Mean per-(seed, client) difference, its percentile interval and two-sided bootstrap p-value."""

    mean: float
    low: float | None
    high: float | None
    p: float | None
    pairs: int
    strata: int
    resamples: int
    level: float = LEVEL
    p_adjusted: float | None = None


def paired_bootstrap(
    diffs: Sequence[float] | np.ndarray,
    strata: Sequence[int] | np.ndarray,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
) -> Bootstrap:
    """Resample clients within each stratum (seed) with replacement; the statistic is the mean of all
    pairs' differences (each stratum keeps its size, so seeds weigh as in the observed mean).

    The p-value tests mean difference 0: the share of resampled means at least as far from the
    observed mean as the observed mean is from 0, ``(1 + count) / (1 + resamples)`` (never 0). The
    interval is the percentile interval. Fewer than two pairs give no interval and no p-value.
    """
    d, s = np.asarray(diffs, dtype=float).ravel(), np.asarray(strata).ravel()
    if d.shape != s.shape:
        raise ValueError(f"diffs and strata need equal lengths, got {d.shape} and {s.shape}")
    keep = np.isfinite(d)
    d, s = d[keep], s[keep]
    groups = [d[s == key] for key in np.unique(s)]  # sorted strata: the draw order is fixed
    if len(d) < 2:
        mean = float(d.mean()) if len(d) else float("nan")
        return Bootstrap(mean, None, None, None, len(d), len(groups), 0, level)
    rng = np.random.default_rng(seed)
    totals = np.zeros(resamples)
    for group in groups:
        picks = rng.integers(0, len(group), size=(resamples, len(group)))  # (B, n_s) client indices
        totals += group[picks].sum(axis=1)
    means = totals / len(d)  # (B,)
    observed = float(d.mean())
    return _bootstrap_result(observed, means, len(d), len(groups), level)


def _bootstrap_result(observed: float, means: np.ndarray, pairs: int, strata: int, level: float) -> Bootstrap:
    alpha = 1.0 - level
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    extreme = int(np.count_nonzero(np.abs(means - observed) >= abs(observed) - 1e-12))
    p = (1 + extreme) / (1 + len(means))
    return Bootstrap(observed, float(low), float(high), min(1.0, p), pairs, strata, len(means), level, p)


# --- several methods against one baseline --------------------------------------------------


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None entries stay None and do not count in m).

    Sorted ascending, p_(i) becomes max_{j <= i} min(1, (m - j + 1) p_(j)): reject where the
    adjusted value is below the level, with family-wise error at most that level.
    """
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(present)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def bonferroni_level(level: float, comparisons: int) -> float:
    """The per-comparison level that gives ``comparisons`` simultaneous intervals at ``level``."""
    return 1.0 - (1.0 - level) / max(1, comparisons)


def correct(tests: Sequence[PairedTest], level: float = LEVEL) -> list[PairedTest]:
    """Holm-adjust the p-values of ``tests`` and widen their intervals to the Bonferroni level.

    ``m`` is the number of tests with a p-value (the comparisons that were actually made); with
    m <= 1 nothing changes but ``p_adjusted`` (= ``p``).
    """
    m = sum(t.p is not None for t in tests)
    adjusted = holm([t.p for t in tests])
    wide = bonferroni_level(level, m)
    out = []
    for test, p_adj in zip(tests, adjusted):
        diff = test.diff
        if diff.half_width is not None and diff.n >= 2 and m > 1:
            scale = t_ppf(0.5 + wide / 2.0, diff.n - 1) / t_ppf(0.5 + diff.level / 2.0, diff.n - 1)
            diff = Interval(diff.mean, diff.n, diff.half_width * scale, wide)
        out.append(replace(test, diff=diff, p_adjusted=p_adj))
    return out
