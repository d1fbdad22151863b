"""Partitioners: each client's train/val/test indices, computed on demand from (seed, client id).

Nothing is stored per client. :meth:`Partitioner.client` derives a client's random stream
from ``(seed, "partition", client_id, purpose)`` alone, so the same id yields the same
indices in any process, in any order, and a population of 10^7 clients costs nothing until a
client is sampled (ALGORITHM.md section 5).
"""

from __future__ import annotations

import difflib
import math
import operator
from dataclasses import dataclass

import numpy as np

from dp2fl_ray.data.base import DataSource
from dp2fl_ray.errors import ConfigError, DataError
from dp2fl_ray.seeding import rng_for

SCHEMES = ("paper", "iid", "dirichlet", "domain")
_FIELD = "data.partition"


@dataclass(frozen=True, eq=False)
class ClientIndices:
    """One client's data, as read-only sorted int64 positions into the source's pools.

    When the source has no val split, ``val`` and ``test`` index the same pool
    (``source.test``) and never share an index: a client does not validate on its test data.

    Attributes:
        client_id: the client these indices belong to.
        train: ``(n_train,)`` positions into ``source.train``.
        val: ``(n_val,)`` positions into ``source.val_pool``.
        test: ``(n_test,)`` positions into ``source.test``.
    """

    client_id: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def majority_class(labels: np.ndarray) -> int:
    """The most frequent label; ties go to the smallest label.

    This is the honest "predict your most frequent class" baseline of each client.

    Raises:
        ValueError: ``labels`` is empty (there is no majority).
    """
    values, counts = np.unique(np.asarray(labels), return_counts=True)  # values sorted
    if len(values) == 0:
        raise ValueError("majority_class: got no labels; expected at least one")
    return int(values[int(np.argmax(counts))])  # argmax takes the first, i.e. smallest, max


def _round_half_up(x: float) -> int:
    """Round to the nearest int, halves up (Python's round() sends 2.5 to 2)."""
    return math.floor(x + 0.5)


def _by_class(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    """Positions of each class in a pool, ascending: ``result[c]`` is ``(n_c,)`` int64."""
    order = np.argsort(labels, kind="stable").astype(np.int64)  # (N,)
    counts = np.bincount(labels, minlength=num_classes)  # (C,)
    return tuple(np.split(order, np.cumsum(counts)[:-1]))


def _frozen(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate, sort and make read-only: the order of a client's indices carries nothing."""
    out = np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.empty(0, np.int64)
    out.setflags(write=False)
    return out


def _check_client_id(client_id: int) -> int:
    try:
        cid = operator.index(client_id)
    except TypeError:
        raise ValueError(f"client id must be an int; got {client_id!r}") from None
    if cid < 0:
        raise ValueError(f"client id must be >= 0; got {cid}")
    return cid


class Partitioner:
    """Gives each client its train/val/test indices under one partition scheme.

    Schemes (ALGORITHM.md section 5):

    * ``paper``: at most ``shots`` per class; a random ``drop_class_fraction`` of the classes
      dropped (at least one class kept); ``keep_fraction`` of each kept class's shots (at
      least 1); one random dominant class also gets ``dominant_fraction`` of its shots. On
      digits with the defaults: 8 classes x 4 + 12 = 44 samples, 16 of the dominant class.
    * ``iid``: ``samples_per_client`` uniformly without replacement.
    * ``dirichlet``: class proportions ~ Dirichlet(``alpha``), counts ~ Multinomial
      (``samples_per_client``), each capped at the class's size (so a client may get fewer).
    * ``domain`` (feature skew): client ``k`` gets domain ``k % D`` of the source's ``D``
      domains and, for each class of that domain, ``shots`` random training samples (all if
      the class has fewer). On CLINC150 with 8 shots: 15 intents x 8 = 120 samples.

    Validation and test of ``paper``, ``dirichlet`` and ``domain`` follow the client's
    training classes and proportions: per class ``max(1, round(fraction * train count))``;
    ``iid`` draws ``round(fraction * n_train)`` uniformly. A class with too few samples
    gives what it has. When val and test share a pool, test is drawn first (it is the larger
    set) and val from what is left, so they never overlap. Rounding is half up.

    Only classes with at least one training sample take part.
    """

    def __init__(
        self,
        source: DataSource,
        scheme: str,
        seed: int,
        *,
        alpha: float = 0.5,
        shots: int = 16,
        drop_class_fraction: float = 0.2,
        keep_fraction: float = 0.25,
        dominant_fraction: float = 0.75,
        val_fraction: float = 0.5,
        test_fraction: float = 1.0,
        samples_per_client: int = 40,
    ) -> None:
        """Validate the scheme and its parameters, and index each pool by class once.

        Args:
            source: the data every client draws from.
            scheme: one of :data:`SCHEMES` (``data.partition.scheme``).
            seed: the experiment seed.
            alpha: Dirichlet concentration (``dirichlet``); small means skewed clients.
            shots: most training samples per class before dropping/keeping (``paper``), or
                taken from each class of the client's domain (``domain``).
            drop_class_fraction: share of classes each client lacks (``paper``).
            keep_fraction: share of each kept class's shots the client keeps (``paper``).
            dominant_fraction: extra share of the dominant class's shots (``paper``).
            val_fraction: validation size relative to the training size (per class).
            test_fraction: test size relative to the training size (per class).
            samples_per_client: training samples per client (``iid``, ``dirichlet``).

        Raises:
            ConfigError: unknown scheme, ``domain`` on a source without domains, or a
                parameter out of range; the error names the ``data.partition`` field.
            DataError: ``domain`` on a source with a domain whose classes have no training
                samples.
        """
        if scheme not in SCHEMES:
            close = difflib.get_close_matches(str(scheme), SCHEMES, n=1)
            raise ConfigError(
                f"{_FIELD}.scheme",
                scheme,
                f"one of {', '.join(SCHEMES)}",
                f"did you mean {close[0]!r}?" if close else "",
            )
        if scheme == "domain" and source.domains is None:
            raise ConfigError(
                f"{_FIELD}.scheme",
                scheme,
                f"one of paper, iid, dirichlet for source {source.name!r}",
                "this source has no domains; use a source with domains (e.g. clinc150)",
            )
        _check_range("alpha", alpha, low=0.0, low_open=True)
        _check_range("shots", shots, low=1, integer=True)
        _check_range("drop_class_fraction", drop_class_fraction, low=0.0, high=1.0, high_open=True)
        _check_range("keep_fraction", keep_fraction, low=0.0, high=1.0, low_open=True)
        _check_range("dominant_fraction", dominant_fraction, low=0.0, high=1.0)
        _check_range("val_fraction", val_fraction, low=0.0, low_open=True)
        _check_range("test_fraction", test_fraction, low=0.0, low_open=True)
        _check_range("samples_per_client", samples_per_client, low=1, integer=True)

        self.source = source
        self.scheme = scheme
        self.seed = int(seed)
        self.alpha = float(alpha)
        self.shots = int(shots)
        self.drop_class_fraction = float(drop_class_fraction)
        self.keep_fraction = float(keep_fraction)
        self.dominant_fraction = float(dominant_fraction)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.samples_per_client = int(samples_per_client)

        c = source.num_classes
        self._train_by_class = _by_class(source.train.labels, c)
        self._test_by_class = _by_class(source.test.labels, c)
        self._val_by_class = _by_class(source.val_pool.labels, c)
        # Without a val split, val and test share source.test and must be drawn disjointly.
        self._shared_eval = source.val is None
        self._classes = np.flatnonzero([len(ix) > 0 for ix in self._train_by_class])
        self._domain_classes: tuple[np.ndarray, ...] = ()
        if scheme == "domain" and source.domains is not None:
            self._domain_classes = self._classes_by_domain(source.domains)

    def _classes_by_domain(self, domains: np.ndarray) -> tuple[np.ndarray, ...]:
        """The classes (with training samples) of each domain: ``result[d]`` is ``(C_d,)``."""
        by_domain = tuple(self._classes[domains[self._classes] == d] for d in range(self.source.num_domains))
        empty = [self.source.domain_names[d] for d, cs in enumerate(by_domain) if len(cs) == 0]
        if empty:
            raise DataError(
                f"source {self.source.name!r}: domain(s) {empty} have no class with training"
                " samples, so their clients would get no data; add training samples to them"
                " or use another scheme"
            )
        return by_domain

    def __repr__(self) -> str:
        return f"Partitioner(source={self.source.name!r}, scheme={self.scheme!r}, seed={self.seed})"

    def client(self, client_id: int) -> ClientIndices:
        """The indices of one client: a pure function of ``(seed, client_id)``.

        Costs O(pool size) at most and keeps nothing, whatever was asked before.

        Raises:
            ValueError: ``client_id`` is negative or not an int.
        """
        cid = _check_client_id(client_id)
        train_rng = rng_for(self.seed, "partition", cid, "train")
        eval_rng = rng_for(self.seed, "partition", cid, "eval")
        if self.scheme == "iid":
            train = self._iid_train(train_rng)
            val, test = self._uniform_eval(eval_rng, len(train))
        else:
            if self.scheme == "domain":
                train = self._domain_train(train_rng, cid)
            else:
                draw = self._paper_train if self.scheme == "paper" else self._dirichlet_train
                train = draw(train_rng)
            counts = np.bincount(self.source.train.labels[train], minlength=self.source.num_classes)
            val, test = self._stratified_eval(eval_rng, counts)
        return ClientIndices(client_id=cid, train=train, val=val, test=test)

    # -- training draws -------------------------------------------------------------------

    def _paper_train(self, rng: np.random.Generator) -> np.ndarray:
        classes = self._classes
        n_drop = min(_round_half_up(self.drop_class_fraction * len(classes)), len(classes) - 1)
        kept = np.sort(rng.choice(classes, size=len(classes) - n_drop, replace=False))
        dominant = int(rng.choice(kept))
        parts: list[np.ndarray] = []
        for c in kept:
            shots = rng.permutation(self._train_by_class[c])[: self.shots]  # random shots
            n_take = max(1, _round_half_up(self.keep_fraction * len(shots)))
            if c == dominant:  # add shots not already kept
                extra = _round_half_up(self.dominant_fraction * len(shots))
                n_take += min(extra, len(shots) - n_take)
            parts.append(shots[:n_take])
        return _frozen(parts)

    def _iid_train(self, rng: np.random.Generator) -> np.ndarray:
        pool = len(self.source.train)
        return _frozen([rng.permutation(pool)[: self.samples_per_client]])

    def _dirichlet_train(self, rng: np.random.Generator) -> np.ndarray:
        classes = self._classes
        p = rng.dirichlet(np.full(len(classes), self.alpha))  # (C',)
        counts = rng.multinomial(self.samples_per_client, p)  # (C',)
        parts = [
            rng.permutation(self._train_by_class[c])[:k]  # capped at the class's size
            for c, k in zip(classes, counts)
            if k > 0
        ]
        return _frozen(parts)

    def _domain_train(self, rng: np.random.Generator, client_id: int) -> np.ndarray:
        classes = self._domain_classes[client_id % len(self._domain_classes)]
        return _frozen([rng.permutation(self._train_by_class[c])[: self.shots] for c in classes])

    # -- validation and test draws --------------------------------------------------------

    def _stratified_eval(
        self, rng: np.random.Generator, train_counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        val_parts: list[np.ndarray] = []
        test_parts: list[np.ndarray] = []
        for c in np.flatnonzero(train_counts):
            k = int(train_counts[c])
            n_val = max(1, _round_half_up(self.val_fraction * k))
            n_test = max(1, _round_half_up(self.test_fraction * k))
            val, test = self._draw_eval(rng, self._val_by_class[c], self._test_by_class[c], n_val, n_test)
            val_parts.append(val)
            test_parts.append(test)
        return _frozen(val_parts), _frozen(test_parts)

    def _uniform_eval(self, rng: np.random.Generator, n_train: int) -> tuple[np.ndarray, np.ndarray]:
        n_val = _round_half_up(self.val_fraction * n_train)
        n_test = _round_half_up(self.test_fraction * n_train)
        all_val = np.arange(len(self.source.val_pool), dtype=np.int64)
        all_test = np.arange(len(self.source.test), dtype=np.int64)
        val, test = self._draw_eval(rng, all_val, all_test, n_val, n_test)
        return _frozen([val]), _frozen([test])

    def _draw_eval(
        self,
        rng: np.random.Generator,
        val_candidates: np.ndarray,
        test_candidates: np.ndarray,
        n_val: int,
        n_test: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw up to ``n_val``/``n_test`` without replacement; disjoint when pools are shared."""
        if self._shared_eval:
            order = rng.permutation(test_candidates)
            return order[n_test : n_test + n_val], order[:n_test]
        test = rng.permutation(test_candidates)[:n_test]
        val = rng.permutation(val_candidates)[:n_val]
        return val, test


def _check_range(
    name: str,
    value: float,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> None:
    """Raise ConfigError naming ``data.partition.<name>`` unless ``value`` is in range."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    kind = "an int" if integer else "a number"
    expected = f"{kind} in {left}{low}, {'inf' if high is None else high}{right}"
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value) == int(value)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v > low if low_open else v >= low)
        if ok and high is not None:
            ok = v < high if high_open else v <= high
    if not ok:
        raise ConfigError(f"{_FIELD}.{name}", value, expected)
