"""FedProx (Li et al., 2020) on prompts: PromptFL plus ``mu / 2 ||P - P_global||^2`` locally.

The proximal term's gradient ``mu (P - P_start)`` is added to each SGD step of both prompts
(``engine.batched.LocalTraining.proximal_mu``); the server step is PromptFL's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from dp2fl_ray.algorithms.promptfl import PromptFL
from dp2fl_ray.config import AlgorithmOptions, option

if TYPE_CHECKING:
    from dp2fl_ray.config import TrainConfig
    from dp2fl_ray.engine.batched import LocalTraining


@dataclass(frozen=True)
class FedProxOptions(AlgorithmOptions):
    mu: float = option(0.01, "[0, inf)", hint="FedProx proximal weight")


class FedProx(PromptFL):
    """PromptFL whose local objective keeps the prompts near the round's global ones."""

    name = "fedprox"
    options_type = FedProxOptions
    options: FedProxOptions

    def local_training(self, train: TrainConfig) -> LocalTraining:
        return replace(super().local_training(train), proximal_mu=self.options.mu)
