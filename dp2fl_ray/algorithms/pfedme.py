"""pFedMe (Dinh et al., 2020) on prompts: Moreau-envelope personalisation.

Each client keeps a local copy ``w`` of the global prompts and a personalised ``theta``
(``engine/pfedme.py``); the server moves the global prompts a fraction ``server_beta``
towards the data-size weighted average of the clients' ``w``; each client is evaluated with
its ``theta``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from dp2fl_ray.algorithms.base import (
    Algorithm,
    EarlyAggregation,
    LocalUpdate,
    RoundResults,
    RoundUpdate,
    ServerState,
)
from dp2fl_ray.algorithms.baselines import fedavg_weights, pfedme_server
from dp2fl_ray.config import AlgorithmOptions, option
from dp2fl_ray.engine.batched import ClientData, LocalTraining
from dp2fl_ray.engine.pfedme import train_clients_pfedme
from dp2fl_ray.errors import ConfigError

if TYPE_CHECKING:
    from dp2fl_ray.config import ExperimentConfig
    from dp2fl_ray.models.base import DualPromptModel


@dataclass(frozen=True)
class PFedMeOptions(AlgorithmOptions):
    lam: float = option(15.0, "(0, inf)", hint="pFedMe regularisation lambda")
    inner_steps: int = option(3, "[1, inf)", hint="pFedMe inner steps per batch")
    server_beta: float = option(1.0, "(0, 1]", hint="pFedMe server mixing beta")


class PFedMe(Algorithm):
    """Global prompts from the clients' local copies; personal models are their ``theta``."""

    name = "pfedme"
    options_type = PFedMeOptions
    options: PFedMeOptions

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        lam, lr = config.algorithm.options.lam, config.train.lr  # type: ignore[union-attr]
        if lr * lam >= 1:
            raise ConfigError(
                "algorithm.lam", lam, f"train.lr x algorithm.lam < 1 (train.lr is {lr:g})",
                "pFedMe's updates overshoot and diverge otherwise; lower train.lr or algorithm.lam",
            )  # fmt: skip

    def train(
        self,
        model: DualPromptModel,
        task: torch.Tensor,
        data: torch.Tensor,
        clients: Sequence[ClientData],
        hp: LocalTraining,
        seeds: Sequence[int],
    ) -> LocalUpdate:
        o = self.options
        out = train_clients_pfedme(model, task, data, clients, hp, seeds, o.lam, o.inner_steps)
        return LocalUpdate(
            out.local_task, out.local_data, out.mean_loss, out.personal_task, out.personal_data
        )

    def aggregate(
        self, state: ServerState, results: RoundResults, early: EarlyAggregation | None = None
    ) -> RoundUpdate:
        if results.personal_task is None or results.personal_data is None:
            raise ValueError("pfedme needs the personalised rows")
        beta, n = self.options.server_beta, results.n_train
        global_task = pfedme_server(state.global_task, results.task, n, beta).astype(np.float32)
        global_data = pfedme_server(state.global_data, results.data, n, beta).astype(np.float32)
        weights = fedavg_weights(n)
        return RoundUpdate(global_task, global_data, results.personal_task, results.personal_data, weights)
