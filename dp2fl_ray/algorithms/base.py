"""The Algorithm interface: everything a federated method decides, in one class.

The runtime schedules a round as six phases (sample, train, cross-evaluate, aggregate,
evaluate, commit) and asks the algorithm at each one what to do; it never names a method.
A method is one module holding one ``Algorithm`` subclass, its options dataclass and its
maths as free functions. A user's own method is ``algorithm.name: package.module:ClassName``
(see ``registry.py`` and ``experiments/custom_algorithm/``).

What moves between the phases are *client rows*: two float32 matrices per round,
``task (m, Dt')`` and ``data (m, Dd')``, one row per cohort client. For the methods that
train the backbone's two prompts as they are (DP2FL and the baselines) a row is exactly the
model's task prompt and data prompt. A method may give the rows a meaning of its own
(FedPGP keeps low-rank factors after the data prompt, FedOTP a local task prompt): it sets
``row_sizes`` and ``initial_rows``, and its ``forward`` turns rows into the model's inputs
on the worker. The runtime only slices, ships and stores rows.

Hooks run in two places:

- on the aggregator (server side): ``start_rows``, ``needs_baseline``, ``early_aggregation``,
  ``aggregate``, ``stored_rows``, ``global_rows``, ``aggregation_table``;
- on the backbone workers (client side): ``local_training``, ``train``, ``forward``.

Hooks never mutate their inputs; what passes between them is frozen dataclasses.

This module imports no torch: the client-side hooks import the engine when they run, so an
aggregator running a numpy-only method (DP2FL, PromptFL, FedProx, Local) starts without it
(~1 CPU-second and ~160 MiB instead of ~3.5 s and ~770 MiB; ``test_light_imports.py``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dp2fl_ray.config import AlgorithmOptions

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from dp2fl_ray.config import ExperimentConfig, TrainConfig
    from dp2fl_ray.engine.batched import ClientData, ClientForward, LocalTraining
    from dp2fl_ray.models.base import DualPromptModel


@dataclass(frozen=True)
class CrossEval:
    """A round's cross-evaluation as evaluated pairs (cohort positions), not a dense matrix."""

    pair_i: np.ndarray  # (P,) model row
    pair_j: np.ndarray  # (P,) validation-set row
    loss: np.ndarray  # (P,)
    models_per_client: int

    def is_exact(self, m: int) -> bool:
        return self.models_per_client >= m

    def dense(self, m: int) -> np.ndarray:
        """The (m, m) matrix (NaN where not evaluated); only for the exact case or small m."""
        matrix = np.full((m, m), np.nan)
        matrix[self.pair_i, self.pair_j] = self.loss
        return matrix


@dataclass(frozen=True)
class NoOptions(AlgorithmOptions):
    """A method without options of its own."""


@dataclass(frozen=True)
class PromptSizes:
    """Sizes of the two row kinds: the model's prompts, or an algorithm's rows."""

    task: int
    data: int


@dataclass(frozen=True)
class ServerState:
    """The aggregator's state between rounds, in the algorithm's row space."""

    global_task: np.ndarray  # (Dt',)
    global_data: np.ndarray  # (Dd',)
    initial_task: np.ndarray  # (Dt',) round-0 rows, a function of the seed
    initial_data: np.ndarray  # (Dd',)


@dataclass(frozen=True)
class RoundStart:
    """Where each cohort client starts a round (rows in cohort order)."""

    global_task: np.ndarray  # (Dt',)
    global_data: np.ndarray  # (Dd',)
    task: np.ndarray  # (m, Dt')
    data: np.ndarray  # (m, Dd')
    baselines: np.ndarray  # (m,) stored L_k, NaN for first-timers
    first_time: np.ndarray  # (m,) bool

    def subset(self, keep: np.ndarray) -> RoundStart:
        """The rows of the clients in ``keep`` (positions), e.g. those whose training succeeded."""
        return RoundStart(
            self.global_task,
            self.global_data,
            self.task[keep],
            self.data[keep],
            self.baselines[keep],
            self.first_time[keep],
        )


@dataclass(frozen=True)
class RoundResults:
    """What the clients of a round produced, as the server step sees it (cohort order)."""

    start: RoundStart
    task: np.ndarray  # (m, Dt') trained rows
    data: np.ndarray  # (m, Dd')
    n_train: np.ndarray  # (m,) training samples per client
    baselines: np.ndarray  # (m,) L_k: stored, or measured before training where asked
    cross: CrossEval | None = None  # the cross-evaluation, for methods that ask for one
    personal_task: np.ndarray | None = None  # (m, Dt') rows a method's training personalised
    personal_data: np.ndarray | None = None


@dataclass(frozen=True)
class RoundUpdate:
    """The server's answer to a round: new global rows and each client's personal model."""

    global_task: np.ndarray  # (Dt',)
    global_data: np.ndarray  # (Dd',)
    personal_task: np.ndarray  # (m, Dt') the model each client is evaluated with
    personal_data: np.ndarray  # (m, Dd')
    global_weights: np.ndarray  # (m,) each client's weight in the global rows (NaN: none)
    details: Any = None  # the method's own bookkeeping, for its aggregation table
    early_clients: int = 0  # clients whose server step ran during the cross-evaluation


@dataclass(frozen=True)
class LocalUpdate:
    """One slice's local training: trained rows and mean loss per client (torch, CPU)."""

    task: torch.Tensor  # (B, Dt')
    data: torch.Tensor  # (B, Dd')
    mean_loss: torch.Tensor  # (B,)
    personal_task: torch.Tensor | None = None  # rows the client keeps apart from what it sends
    personal_data: torch.Tensor | None = None


class EarlyAggregation(abc.ABC):
    """Server work started on blocks of the cross-evaluation while other blocks still run."""

    @abc.abstractmethod
    def absorb(self, pair_i: np.ndarray, pair_j: np.ndarray, losses: np.ndarray) -> None:
        """One finished block: pairs (model row, set row) in cohort positions, float64 losses."""

    @property
    @abc.abstractmethod
    def clients_done(self) -> int:
        """How many clients' server work is already done."""


class Algorithm(abc.ABC):
    """One federated method. Subclasses set ``name`` and implement ``aggregate``.

    Class attributes:
        name: what ``algorithm.name`` says (the registry key of a built-in).
        options_type: a frozen ``AlgorithmOptions`` dataclass; its fields are the options
            the config accepts under ``algorithm:`` next to ``name``.
        has_global_model: whether the method has one model for everyone (reports, the
            global and new-client evaluations).
        cross_evaluates: whether a round evaluates every model on the cohort's validation
            sets (which pairs: ``federation.max_eval_models``).
        needs_validation_loss: whether the server needs each client's end-of-round
            validation loss (stored as its baseline ``L_k``) even on rounds whose evaluations
            ``federation.eval_every`` skips.
    """

    name: ClassVar[str] = ""
    options_type: ClassVar[type[AlgorithmOptions]] = NoOptions
    has_global_model: ClassVar[bool] = True
    cross_evaluates: ClassVar[bool] = False
    needs_validation_loss: ClassVar[bool] = False

    def __init__(self, options: AlgorithmOptions | None = None) -> None:
        self.options = options if options is not None else self.options_type()

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        """Rules between this method's options and other sections (raise ``ConfigError``)."""

    # --- rows -----------------------------------------------------------------------------

    def for_model(self, model: DualPromptModel) -> Algorithm:
        """This method as a worker whose backbone is ``model`` runs it (default: itself).

        ``row_sizes`` and ``initial_rows`` see the model's prompt *sizes* only; a method whose
        rows depend on the prompts' *layout* (FedPGP: low-rank factors per 2-D prompt block)
        returns a copy that knows it. Only workers bind: server hooks never need the layout.
        """
        return self

    def row_sizes(self, prompts: PromptSizes) -> PromptSizes:
        """This method's row sizes given the model's prompt sizes (default: the same)."""
        return prompts

    def initial_rows(self, task: np.ndarray, data: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Round-0 rows from the model's round-0 prompts ``(Dt,)``, ``(Dd,)`` (default: those)."""
        return task, data

    # --- server side ----------------------------------------------------------------------

    def start_rows(
        self, state: ServerState, stored: Sequence[np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each cohort client's start rows ``(m, Dt')``, ``(m, Dd')`` from the server state and
        what the store kept of it (None for a client never seen). Default: the global rows."""
        m = len(stored)
        return np.repeat(state.global_task[None], m, axis=0), np.repeat(state.global_data[None], m, axis=0)

    def needs_baseline(self, first_time: np.ndarray) -> np.ndarray:
        """Which clients' start model is evaluated on val before training (``L_k``)."""
        return np.zeros(len(first_time), bool)

    def early_aggregation(
        self, start: RoundStart, data: np.ndarray, baselines: np.ndarray
    ) -> EarlyAggregation | None:
        """Server work that can start on cross-evaluation blocks as they finish (default: none)."""
        return None

    @abc.abstractmethod
    def aggregate(
        self, state: ServerState, results: RoundResults, early: EarlyAggregation | None = None
    ) -> RoundUpdate:
        """The server step: new global rows and each client's personal model."""

    def stored_rows(self, update: RoundUpdate) -> np.ndarray:
        """What the store keeps per cohort client ``(m, S)`` (default: its personal data row)."""
        return update.personal_data

    def global_rows(self, update: RoundUpdate | ServerState) -> tuple[np.ndarray, np.ndarray]:
        """The global model's rows, evaluated on the held-out clients."""
        return update.global_task, update.global_data

    def aggregation_table(
        self, update: RoundUpdate, results: RoundResults, cohort: np.ndarray
    ) -> pd.DataFrame | None:
        """Rows of the round's ``aggregation`` table (None: this method writes none)."""
        return None

    # --- client side (on the workers) -----------------------------------------------------

    def local_training(self, train: TrainConfig) -> LocalTraining:
        """Local SGD hyperparameters from ``train`` (a method may add its own terms)."""
        from dp2fl_ray.engine.batched import LocalTraining

        return LocalTraining(
            train.local_epochs, train.batch_size, train.lr, train.momentum, train.weight_decay
        )

    def forward(self) -> ClientForward:
        """How rows become logits (and any extra loss term) on the backbone."""
        from dp2fl_ray.engine.batched import PROMPT_FORWARD

        return PROMPT_FORWARD

    def train(
        self,
        model: DualPromptModel,
        task: torch.Tensor,
        data: torch.Tensor,
        clients: Sequence[ClientData],
        hp: LocalTraining,
        seeds: Sequence[int],
    ) -> LocalUpdate:
        """Local training of a slice of clients together (default: batched SGD on ``forward``)."""
        from dp2fl_ray.engine.batched import train_clients

        out = train_clients(model, task, data, clients, hp, seeds, forward=self.forward())
        return LocalUpdate(out.task, out.data, out.mean_loss)


def global_task_own_data(
    state: ServerState, stored: Sequence[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Start rows of a method whose clients keep their data row: the global task row for
    everyone, each client's stored data row (the round-0 one for a first-timer)."""
    task = np.repeat(state.global_task[None], len(stored), axis=0)
    data = np.stack([state.initial_data if row is None else row for row in stored])
    return task, data


def check_finite_losses(cross: CrossEval, baselines: np.ndarray) -> None:
    """A method that weighs peers by validation loss cannot use a NaN or inf one."""
    from dp2fl_ray.errors import RunError

    if np.all(np.isfinite(cross.loss)) and np.all(np.isfinite(baselines)):
        return
    bad = [(int(cross.pair_i[p]), int(cross.pair_j[p])) for p in np.flatnonzero(~np.isfinite(cross.loss))[:5]]
    raise RunError(
        f"non-finite validation losses in the cross-evaluation at (model, set) {bad} or in the "
        "baselines; lower train.lr or check the data"
    )
