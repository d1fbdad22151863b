"""Cohort sampling and slicing: pure functions of (seed, round), no population in memory."""

from __future__ import annotations

import math

import numpy as np

from dp2fl_ray.seeding import rng_for


def sample_cohort(seed: int, round_idx: int, population: int, cohort: int) -> np.ndarray:
    """``cohort`` distinct client ids in ``[0, population)``, sorted, seeded by (seed, round).

    The whole population is never materialised: for a cohort much smaller than the
    population numpy draws by rejection, so 10^7 clients cost as little as 10.
    """
    if cohort > population:
        raise ValueError(f"cohort {cohort} > population {population}")
    if cohort == population:
        return np.arange(population, dtype=np.int64)
    ids = rng_for(seed, "cohort", round_idx).choice(population, size=cohort, replace=False)
    return np.sort(ids.astype(np.int64))


def held_out_clients(population: int, new_clients: int) -> np.ndarray:
    """Ids of the held-out clients the global model is evaluated on: never sampled for training."""
    return np.arange(population, population + new_clients, dtype=np.int64)


def cut_slices(m: int, workers: int, max_per_slice: int) -> list[slice]:
    """Contiguous slices of a cohort of ``m``: at most ``max_per_slice`` each, and at least one
    per worker when the cohort allows (so no worker idles while another runs two slices)."""
    size = max(1, min(max_per_slice, math.ceil(m / max(1, workers))))
    return [slice(lo, min(m, lo + size)) for lo in range(0, m, size)]


def parse_joins(text: str) -> list[tuple[int, int]]:
    """``federation.joins`` ("COUNT@ROUND,...": COUNT clients join at ROUND) as sorted (round, count)."""
    pairs = [part.split("@") for part in text.split(",") if part.strip()]
    return sorted((int(r), int(n)) for n, r in pairs)


def population_at(round_idx: int, population: int, joins: list[tuple[int, int]]) -> int:
    """Clients that exist in a round: the initial population plus those who joined by then.

    Joiners take the next ids, so a client's data (a function of its id) never changes.
    """
    return population + sum(n for r, n in joins if r <= round_idx)
