"""DP2FL (Chang et al., 2025): its options, its server maths and its ``Algorithm`` class.

The maths is ALGORITHM.md section 2, steps 4-5, as pure functions; ``DP2FL`` at the end is
the method the runtime calls (``algorithms/base.py``), including step 5 run on blocks of the
cross-evaluation while the rest still runs (``EarlyDataPrompts``).

Prompts are flat float vectors (one row per cohort client); ``loss[i, j]`` is the
validation loss of client i's updated model on client j's validation set (rows = models,
columns = validation sets). Everything is computed in float64 and returned as new float64
arrays; inputs are never mutated. Step 6 (the next baseline ``L_k``) is an evaluation of
``(Pt^(r), Pd_k^(r))`` done by the engine and stored by the client store; nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

import numpy as np
import pandas as pd

from dp2fl_ray.algorithms.base import (
    Algorithm,
    EarlyAggregation,
    RoundResults,
    RoundStart,
    RoundUpdate,
    ServerState,
    check_finite_losses,
)
from dp2fl_ray.config import AlgorithmOptions, option
from dp2fl_ray.errors import ConfigError

GLOBAL_SCHEMES = ("fomo_sum", "softmin", "uniform")
RNC_DIRECTIONS = ("toward", "away")


@dataclass(frozen=True)
class DP2FLOptions(AlgorithmOptions):
    """DP2FL's options; those marked [ours] in ALGORITHM.md are the choices the paper leaves open."""

    alpha: float = option(1.2, "[1, inf)", hint="below 1 the PC and DNC sets overlap")
    beta: float = option(0.2, "[0, 1]")
    global_weights: Literal["fomo_sum", "softmin", "uniform"] = "fomo_sum"
    tau: float = option(1.0, "(0, inf)", hint="softmin temperature")
    rnc_direction: Literal["toward", "away"] = "toward"
    baseline: Literal["last", "refresh"] = "last"
    eps: float = option(1e-8, "(0, inf)")


class PeerSet(IntEnum):
    """Which set a peer i falls into for client k (stored as int8 codes)."""

    PC = 0  # positive: loss[i, k] < L_k
    RNC = 1  # retained negative: L_k <= loss[i, k] < alpha * L_k
    DNC = 2  # discarded negative: loss[i, k] >= alpha * L_k, weight 0


def global_weights(
    loss: np.ndarray, scheme: str = "fomo_sum", tau: float = 1.0, sizes: np.ndarray | None = None
) -> np.ndarray:
    """Weights of the cohort's models in the global prompts (step 4); they sum to 1.

    ``fomo_sum`` [paper]: with ``S_i = sum_j loss[i, j]`` and ``S = sum_i S_i``,
    ``w_i = (S - S_i) / ((m - 1) S)``, so a model with a lower total validation loss weighs
    more; ``m == 1`` gives ``[1]`` and ``S == 0`` (every loss 0) gives uniform weights.
    ``softmin``: ``w ∝ exp(-S_i / tau)``, shifted by ``min S_i`` so it cannot overflow.
    ``uniform``: ``w ∝ sizes`` (PromptFL/FedAvg), equal weights when ``sizes`` is None.

    Args:
        loss: (m, n) loss matrix, rows = models; NaN marks a pair that was not evaluated
            (``federation.max_eval_models``), and ``S_i`` is then n x the mean of row i.
        scheme: one of ``fomo_sum | softmin | uniform`` (config ``algorithm.global_weights``).
        tau: softmin temperature, > 0.
        sizes: (m,) training-data sizes, used by ``uniform`` only.

    Returns:
        (m,) float64 weights summing to 1.

    Raises:
        ConfigError: (a ValueError) unknown scheme or non-positive tau.
        ValueError: ``loss`` is not a non-empty 2-D array, or ``sizes`` has the wrong shape.
    """
    loss = np.asarray(loss, dtype=np.float64)
    if loss.ndim != 2 or loss.shape[0] == 0:
        raise ValueError(f"loss must be a non-empty (m, n) matrix, got shape {loss.shape}")
    m = loss.shape[0]
    evaluated = ~np.isnan(loss)
    if evaluated.all():
        totals = loss.sum(axis=1)  # (m,) S_i
    else:  # a limited cross-evaluation (NaN = not evaluated): S_i from the mean over what was
        totals = (
            np.where(evaluated, loss, 0.0).sum(axis=1) * loss.shape[1] / np.maximum(evaluated.sum(axis=1), 1)
        )
    if scheme == "fomo_sum":
        total = totals.sum()
        if m == 1 or total == 0:
            return np.full(m, 1.0 / m)
        return (total - totals) / ((m - 1) * total)
    if scheme == "softmin":
        if not tau > 0:
            raise ConfigError("algorithm.tau", tau, "a temperature > 0")
        logits = np.exp(-(totals - totals.min()) / tau)
        return logits / logits.sum()
    if scheme == "uniform":
        if sizes is None:
            return np.full(m, 1.0 / m)
        sizes = np.asarray(sizes, dtype=np.float64)
        if sizes.shape != (m,) or np.any(sizes < 0) or sizes.sum() <= 0:
            raise ValueError(f"sizes must be ({m},) non-negative with a positive sum, got {sizes}")
        return sizes / sizes.sum()
    raise ConfigError("algorithm.global_weights", scheme, " | ".join(GLOBAL_SCHEMES))


def weighted_average(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_i weights[i] * vectors[i]``: (m, D), (m,) -> (D,) float64."""
    vectors = np.asarray(vectors, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if vectors.ndim != 2 or weights.shape != (vectors.shape[0],):
        raise ValueError(f"expected vectors (m, D) and weights (m,), got {vectors.shape} and {weights.shape}")
    return weights @ vectors  # (D,)


def initglo_start(stored: np.ndarray | None, global_data_prompt: np.ndarray) -> np.ndarray:
    """The data prompt a client starts a round from (step 1, "InitGlo").

    A client seen for the first time (``stored is None``) starts from the global data prompt
    ``PD^(r-1)``; that start value is also its ``Pd_k^(r-1)`` in step 5. Returns a float64
    copy so the caller can train it in place without touching the global or stored prompt.
    """
    source = global_data_prompt if stored is None else stored
    return np.array(source, dtype=np.float64, copy=True)


@dataclass(frozen=True)
class DataPromptUpdate:
    """Step 5 for one client k; every array is indexed by peer i of the cohort."""

    sets: np.ndarray  # (m,) int8 PeerSet codes
    distances: np.ndarray  # (m,) ||P~d_i - Pd_k^(r-1)||
    raw_weights: np.ndarray  # (m,) w~[i, k], reported for DNC peers too
    weights: np.ndarray  # (m,) normalised w[i, k]; 0 for DNC
    new_prompt: np.ndarray  # (Dd,) Pd_k^(r)


def aggregate_data_prompt(
    previous: np.ndarray,
    updated: np.ndarray,
    losses_on_k: np.ndarray,
    baseline: float,
    alpha: float,
    beta: float,
    rnc_direction: str = "toward",
    eps: float = 1e-8,
) -> DataPromptUpdate:
    """Client k's new data prompt from its peers' updated data prompts (step 5).

    Peers (k itself included) are PC if ``loss < L_k``, DNC if not ``loss < alpha * L_k``
    (so a NaN loss is discarded), RNC otherwise. Raw weight
    ``w~ = (L_k - loss) / (||P~d_i - Pd_k^(r-1)|| + eps)``. With PC non-empty, PC peers
    keep ``w~`` and RNC peers get ``gamma * |w~|`` with
    ``gamma = clip(min_PC w~ / max_RNC |w~|, 0, 1)`` (1 if RNC is empty or all its raw
    weights are 0), normalised to sum 1: retained negatives still help the client generalise
    but never outweigh its weakest positive. With PC empty, RNC peers get
    ``beta * |w~| / sum_RNC |w~|`` (a move of a fraction beta); a 0 sum, or PC and RNC
    both empty, means no move. ``away`` keeps those magnitudes and makes RNC weights negative.
    Update: ``Pd_k^(r) = Pd_k^(r-1) + sum_i w_i (P~d_i - Pd_k^(r-1))``.

    Args:
        previous: (Dd,) ``Pd_k^(r-1)``; for a first-time client, the global prompt it started from.
        updated: (m, Dd) every cohort member's ``P~d_i``.
        losses_on_k: (m,) ``loss[i, k]``.
        baseline: ``L_k``.
        alpha: DNC threshold factor, >= 1 (below 1, PC and DNC would overlap).
        beta: fraction of the move towards RNC peers when PC is empty.
        rnc_direction: ``toward`` (default) or ``away`` (config ``algorithm.rnc_direction``).
        eps: added to the distance; a peer at distance 0 dominates and the prompt stays put.

    Raises:
        ConfigError: (a ValueError) alpha < 1 or an unknown rnc_direction.
        ValueError: inconsistent shapes.
    """
    if rnc_direction not in RNC_DIRECTIONS:
        raise ConfigError("algorithm.rnc_direction", rnc_direction, " | ".join(RNC_DIRECTIONS))
    if not alpha >= 1:
        raise ConfigError("algorithm.alpha", alpha, "a value >= 1", "below 1, PC and DNC overlap")
    previous = np.asarray(previous, dtype=np.float64)
    updated = np.asarray(updated, dtype=np.float64)
    losses = np.asarray(losses_on_k, dtype=np.float64)
    m = updated.shape[0] if updated.ndim == 2 else -1
    if previous.ndim != 1 or updated.shape != (m, previous.shape[0]) or losses.shape != (m,):
        raise ValueError(
            f"expected previous (Dd,), updated (m, Dd), losses_on_k (m,); "
            f"got {previous.shape}, {updated.shape}, {losses.shape}"
        )
    pc = losses < baseline
    dnc = ~(losses < alpha * baseline)
    rnc = ~pc & ~dnc
    sets = np.where(pc, PeerSet.PC, np.where(rnc, PeerSet.RNC, PeerSet.DNC)).astype(np.int8)
    deltas = updated - previous  # (m, Dd)
    distances = np.linalg.norm(deltas, axis=1)  # (m,)
    raw = (baseline - losses) / (distances + eps)
    magnitude = np.where(rnc, np.abs(raw), 0.0)  # |w~| of RNC peers, 0 elsewhere
    weights = np.zeros(m)
    if pc.any():
        max_rnc = magnitude.max()
        gamma = 1.0 if max_rnc == 0 else float(np.clip(raw[pc].min() / max_rnc, 0.0, 1.0))
        share = np.where(pc, raw, gamma * magnitude)
        weights = share / share.sum()
    elif magnitude.sum() > 0:
        weights = beta * magnitude / magnitude.sum()
    if rnc_direction == "away":
        weights = np.where(rnc, -np.abs(weights), weights)
    moving = weights != 0  # skip zero-weight peers: a diverged (NaN/inf) prompt must not leak in
    new_prompt = previous + weights[moving] @ deltas[moving]  # (Dd,)
    return DataPromptUpdate(sets, distances, raw, weights, new_prompt)


@dataclass(frozen=True)
class RoundAggregation:
    """Steps 4-5 for a whole cohort; (m, m) arrays are indexed [peer i, client k]."""

    global_weights: np.ndarray  # (m,)
    global_task: np.ndarray  # (Dt,) Pt^(r) = sum_i w_i P~t_i
    global_data: np.ndarray  # (Dd,) PD^(r) = sum_i w_i P~d_i
    new_data: np.ndarray  # (m, Dd) each client's Pd_k^(r)
    sets: np.ndarray  # (m, m) int8 PeerSet codes
    raw_weights: np.ndarray  # (m, m)
    weights: np.ndarray  # (m, m)
    distances: np.ndarray  # (m, m)


def aggregate_round(
    loss: np.ndarray,
    updated_task: np.ndarray,
    updated_data: np.ndarray,
    previous_data: np.ndarray,
    baselines: np.ndarray,
    options: DP2FLOptions,
    *,
    sizes: np.ndarray | None = None,
    done: Mapping[int, DataPromptUpdate] | None = None,
) -> RoundAggregation:
    """The server's work in one round: global prompts (step 4), every data prompt (step 5).

    Args:
        loss: (m, m) cross-evaluation losses, rows = models, columns = validation sets.
        updated_task: (m, Dt) ``P~t_i``.
        updated_data: (m, Dd) ``P~d_i``.
        previous_data: (m, Dd) each client's ``Pd_k^(r-1)`` (InitGlo start for first-timers).
        baselines: (m,) ``L_k``.
        options: alpha, beta, rnc_direction, eps (see :func:`aggregate_data_prompt`) and
            global_weights, tau (see :func:`global_weights`).
        sizes: (m,) training sizes, for ``global_weights: uniform``.
        done: step 5 already computed for some clients k (from these same inputs, e.g. while
            the rest of the cross-evaluation ran); the others are computed here.

    Raises:
        ValueError: inconsistent shapes (a programming error), or a bad option (ConfigError).
    """
    loss = np.asarray(loss, dtype=np.float64)
    task = np.asarray(updated_task, dtype=np.float64)
    data = np.asarray(updated_data, dtype=np.float64)
    previous = np.asarray(previous_data, dtype=np.float64)
    base = np.asarray(baselines, dtype=np.float64)
    m = loss.shape[0] if loss.ndim == 2 else -1
    consistent = (
        loss.shape == (m, m)
        and base.shape == (m,)
        and task.ndim == data.ndim == 2
        and task.shape[0] == data.shape[0] == m
        and previous.shape == data.shape
    )
    if not consistent:
        raise ValueError(
            "expected loss (m, m), updated_task (m, Dt), updated_data (m, Dd), "
            f"previous_data (m, Dd), baselines (m,); got {loss.shape}, {task.shape}, "
            f"{data.shape}, {previous.shape}, {base.shape}"
        )
    o = options
    weights = global_weights(loss, o.global_weights, o.tau, sizes)
    done = done or {}
    per_client = [
        done[k] if k in done else
        aggregate_data_prompt(previous[k], data, loss[:, k], float(base[k]), o.alpha, o.beta, o.rnc_direction,
                              o.eps)
        for k in range(m)
    ]  # fmt: skip
    return RoundAggregation(
        global_weights=weights,
        global_task=weighted_average(task, weights),
        global_data=weighted_average(data, weights),
        new_data=np.stack([u.new_prompt for u in per_client]),  # (m, Dd)
        sets=np.stack([u.sets for u in per_client], axis=1),  # (m, m) [i, k]
        raw_weights=np.stack([u.raw_weights for u in per_client], axis=1),
        weights=np.stack([u.weights for u in per_client], axis=1),
        distances=np.stack([u.distances for u in per_client], axis=1),
    )


@dataclass(frozen=True)
class SparseRoundAggregation:
    """``aggregate_round`` for a limited cross-evaluation: per evaluated pair, not (m, m)."""

    global_weights: np.ndarray  # (m,)
    global_task: np.ndarray  # (Dt,)
    global_data: np.ndarray  # (Dd,)
    new_data: np.ndarray  # (m, Dd)
    pair_i: np.ndarray  # (P,) model row of each evaluated pair
    pair_j: np.ndarray  # (P,) validation-set row (the client k whose prompt the pair informs)
    sets: np.ndarray  # (P,) PeerSet of peer i for client j
    raw_weights: np.ndarray  # (P,)
    weights: np.ndarray  # (P,)
    distances: np.ndarray  # (P,)


def pairs_by_set(pair_j: np.ndarray, m: int) -> list[np.ndarray]:
    """For each validation set k < m, the positions of its pairs (in their given order)."""
    order = np.argsort(pair_j, kind="stable")
    starts = np.searchsorted(pair_j[order], np.arange(m + 1))
    return [order[starts[k] : starts[k + 1]] for k in range(m)]


def aggregate_round_sparse(
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    losses: np.ndarray,
    updated_task: np.ndarray,
    updated_data: np.ndarray,
    previous_data: np.ndarray,
    baselines: np.ndarray,
    options: DP2FLOptions,
    *,
    sizes: np.ndarray | None = None,
    done: Mapping[int, DataPromptUpdate] | None = None,
) -> SparseRoundAggregation:
    """:func:`aggregate_round` when each client evaluated only some peers (FedFomo-style).

    Client k's peers are the models evaluated on its validation set; the global weights use
    ``S_i = m x mean of model i's evaluated losses``. With every pair evaluated it gives the
    same prompts as ``aggregate_round``. Memory is O(pairs), never (m, m). ``done``: as for
    ``aggregate_round``.
    """
    pair_i, pair_j = np.asarray(pair_i, np.int64), np.asarray(pair_j, np.int64)
    losses = np.asarray(losses, np.float64)
    data = np.asarray(updated_data, np.float64)
    m = data.shape[0]
    counts = np.bincount(pair_i, minlength=m)
    totals = np.bincount(pair_i, weights=losses, minlength=m) * m / np.maximum(counts, 1)  # (m,) S_i
    o = options
    weights = global_weights(totals[:, None], o.global_weights, o.tau, sizes)
    new_data = np.empty_like(data)
    sets = np.empty(len(losses), np.int8)
    raw, norm, dist = (np.empty(len(losses)) for _ in range(3))
    done = done or {}
    for k, rows in enumerate(pairs_by_set(pair_j, m)):
        update = done[k] if k in done else aggregate_data_prompt(
            np.asarray(previous_data[k], np.float64), data[pair_i[rows]], losses[rows], float(baselines[k]),
            o.alpha, o.beta, o.rnc_direction, o.eps,
        )  # fmt: skip
        new_data[k] = update.new_prompt
        sets[rows], raw[rows], norm[rows], dist[rows] = (
            update.sets,
            update.raw_weights,
            update.weights,
            update.distances,
        )
    task = np.asarray(updated_task, np.float64)
    return SparseRoundAggregation(
        weights, weighted_average(task, weights), weighted_average(data, weights), new_data,
        pair_i, pair_j, sets, raw, norm, dist,
    )  # fmt: skip


# --- the method ---------------------------------------------------------------------------


@dataclass
class EarlyDataPrompts(EarlyAggregation):
    """One round's step 5, filled in block by block while the cross-evaluation runs.

    Client k's new data prompt needs only column k of the loss matrix: every model's loss on
    k's validation set. The cross-evaluation comes back in set-major blocks (a block holds all
    the pairs of its validation sets), so as soon as a block's losses arrive the aggregator
    computes its clients' data prompts while the workers evaluate the other blocks. Only the
    global weights (the row sums, step 4) wait for the whole matrix. The result equals
    computing every column at the end, bit for bit: the same function gets the same float64
    inputs in the same order.
    """

    updated: np.ndarray  # (m, Dd) every client's trained P~d_i, float64
    previous: np.ndarray  # (m, Dd) each client's Pd_k^(r-1) (its InitGlo start when first seen)
    baselines: np.ndarray  # (m,) L_k
    options: DP2FLOptions
    done: dict[int, DataPromptUpdate] = field(default_factory=dict)

    @classmethod
    def start(
        cls, updated: np.ndarray, previous: np.ndarray, baselines: np.ndarray, options: DP2FLOptions
    ) -> EarlyDataPrompts:
        """The round's inputs in float64 (as ``aggregate_round`` converts them)."""
        return cls(
            np.asarray(updated, np.float64),
            np.asarray(previous, np.float64),
            np.asarray(baselines, np.float64),
            options,
        )

    def absorb(self, pair_i: np.ndarray, pair_j: np.ndarray, losses: np.ndarray) -> None:
        """Step 5 for every validation set of a block: ``pair_j`` holds each set's cohort row and
        the block holds all of those sets' pairs."""
        pair_i, pair_j = np.asarray(pair_i, np.int64), np.asarray(pair_j, np.int64)
        losses = np.asarray(losses, np.float64)
        o = self.options
        for k, rows in enumerate(pairs_by_set(pair_j, len(self.updated))):
            if len(rows) == 0:
                continue
            self.done[k] = aggregate_data_prompt(
                self.previous[k], self.updated[pair_i[rows]], losses[rows], float(self.baselines[k]),
                o.alpha, o.beta, o.rnc_direction, o.eps,
            )  # fmt: skip

    @property
    def clients_done(self) -> int:
        return len(self.done)

    def matches(self, updated: np.ndarray, previous: np.ndarray, baselines: np.ndarray) -> bool:
        """Whether these are the inputs the early work was started from (else it is discarded)."""
        pairs = ((self.updated, updated), (self.previous, previous), (self.baselines, baselines))
        return all(
            np.array_equal(mine, np.asarray(theirs, np.float64), equal_nan=True) for mine, theirs in pairs
        )


class DP2FL(Algorithm):
    """Global task prompt from cross-evaluation weights; per-client data prompts aggregated
    from the PC/RNC/DNC peers of each client (ALGORITHM.md).

    The store keeps each client's data prompt ``Pd_k``; a first-timer starts from the global
    data prompt (InitGlo). The baseline ``L_k`` is measured before training for first-timers
    (and for everyone with ``baseline: refresh``).
    """

    name = "dp2fl"
    options_type = DP2FLOptions
    cross_evaluates = True
    needs_validation_loss = True
    options: DP2FLOptions

    def start_rows(
        self, state: ServerState, stored: Sequence[np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        task = np.repeat(state.global_task[None], len(stored), axis=0)  # (m, Dt)
        data = np.stack([initglo_start(row, state.global_data) for row in stored])  # (m, Dd)
        return task, data

    def needs_baseline(self, first_time: np.ndarray) -> np.ndarray:
        return np.asarray(first_time, bool) | (self.options.baseline == "refresh")

    def early_aggregation(
        self, start: RoundStart, data: np.ndarray, baselines: np.ndarray
    ) -> EarlyDataPrompts:
        return EarlyDataPrompts.start(data, start.data, baselines, self.options)

    def aggregate(
        self, state: ServerState, results: RoundResults, early: EarlyAggregation | None = None
    ) -> RoundUpdate:
        cross, baselines, task, data = results.cross, results.baselines, results.task, results.data
        if cross is None:
            raise ValueError("dp2fl needs the cross-evaluation")
        check_finite_losses(cross, baselines)
        m, start = len(task), results.start
        usable = isinstance(early, EarlyDataPrompts) and early.matches(data, start.data, baselines)
        done = early.done if usable and isinstance(early, EarlyDataPrompts) else {}
        sizes = np.asarray(results.n_train, np.float64)
        result: RoundAggregation | SparseRoundAggregation
        if cross.is_exact(m):
            result = aggregate_round(
                cross.dense(m), task, data, start.data, baselines, self.options, sizes=sizes, done=done
            )
        else:
            result = aggregate_round_sparse(
                cross.pair_i, cross.pair_j, cross.loss, task, data, start.data, baselines, self.options,
                sizes=sizes, done=done,
            )  # fmt: skip
        global_task = result.global_task.astype(np.float32)
        personal_task = np.repeat(global_task[None], m, axis=0)
        return RoundUpdate(
            global_task, result.global_data.astype(np.float32),
            personal_task, result.new_data.astype(np.float32),
            result.global_weights, result, len(done),
        )  # fmt: skip

    def aggregation_table(
        self, update: RoundUpdate, results: RoundResults, cohort: np.ndarray
    ) -> pd.DataFrame | None:
        """One row per evaluated (model i, validation set j): enough to recompute the round's maths.

        The set, distance and weights are those of peer i for client k = j.
        """
        a, cross = update.details, results.cross
        if a is None or cross is None:
            return None
        i, j = cross.pair_i, cross.pair_j
        if isinstance(a, SparseRoundAggregation):
            sets, distances, raw, weights = a.sets, a.distances, a.raw_weights, a.weights
        else:
            sets, distances, raw, weights = (
                a.sets[i, j],
                a.distances[i, j],
                a.raw_weights[i, j],
                a.weights[i, j],
            )
        frame = pd.DataFrame(
            {
                "i": cohort[i],
                "j": cohort[j],
                "loss": cross.loss,
                "baseline_j": results.baselines[j],
                "set": [PeerSet(int(x)).name for x in sets],
                "distance": distances,
                "raw_weight": raw,
                "weight": weights,
                "global_weight_i": a.global_weights[i],
            }
        )
        return frame.sort_values(["i", "j"], kind="stable").reset_index(drop=True)
