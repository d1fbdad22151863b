"""Cohort sampling never materialises the population and depends on (seed, round) only."""

from __future__ import annotations

import numpy as np
import pytest

from dp2fl_ray.runtime.cohort import cut_slices, held_out_clients, sample_cohort


def test_cohort_is_distinct_sorted_and_in_range() -> None:
    ids = sample_cohort(0, 1, 1000, 50)
    assert len(np.unique(ids)) == 50 and np.all(np.diff(ids) > 0)
    assert ids.min() >= 0 and ids.max() < 1000


def test_cohort_depends_on_seed_and_round_only() -> None:
    assert np.array_equal(sample_cohort(3, 2, 10_000, 20), sample_cohort(3, 2, 10_000, 20))
    assert not np.array_equal(sample_cohort(3, 2, 10_000, 20), sample_cohort(3, 3, 10_000, 20))
    assert not np.array_equal(sample_cohort(3, 2, 10_000, 20), sample_cohort(4, 2, 10_000, 20))


def test_full_participation_is_everyone() -> None:
    assert sample_cohort(0, 5, 10, 10).tolist() == list(range(10))


def test_ten_million_clients_cost_nothing() -> None:
    ids = sample_cohort(0, 1, 10_000_000, 100)
    assert len(np.unique(ids)) == 100 and ids.max() < 10_000_000


def test_cohort_larger_than_population_is_refused() -> None:
    with pytest.raises(ValueError, match="cohort"):
        sample_cohort(0, 1, 5, 6)


def test_held_out_clients_are_outside_the_population() -> None:
    assert held_out_clients(10, 3).tolist() == [10, 11, 12]


@pytest.mark.parametrize(
    ("m", "workers", "cap", "sizes"), [(10, 2, 8, [5, 5]), (10, 2, 3, [3, 3, 3, 1]), (3, 4, 8, [1, 1, 1])]
)
def test_slices_cover_the_cohort_and_feed_every_worker(
    m: int, workers: int, cap: int, sizes: list[int]
) -> None:
    slices = cut_slices(m, workers, cap)
    assert [s.stop - s.start for s in slices] == sizes
    assert slices[0].start == 0 and slices[-1].stop == m


def test_joins_grow_the_population_from_their_round() -> None:
    from dp2fl_ray.runtime.cohort import parse_joins, population_at

    joins = parse_joins("100@5,7@2")  # 100 clients join at round 5, 7 at round 2
    assert joins == [(2, 7), (5, 100)]
    assert [population_at(r, 10, joins) for r in (1, 2, 4, 5, 9)] == [10, 17, 17, 117, 117]
