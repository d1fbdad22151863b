"""FedOTP (Li et al., CVPR 2024): a global and a local prompt matched to image patches by OT.

Each client holds the global task prompt and its own local one. For an image and a class c,
the cost between patch m and prompt k is ``1 - cos(patch_m, class feature_{k,c})``; an
entropic unbalanced optimal transport plan ``T (patches x 2)`` moves mass from the patches
(at most ``1/L`` each) to the prompts (exactly ``top_percent / 2`` each), and the class logit
is ``scale * sum_{m,k} T_mk cos_mk``. The plan is computed without gradient. The global prompt
is FedAvg'd by data size; the local prompt never leaves the client.

Theirs (``HongxiaLee/FedOTP``, ``trainers/GLP_OT.py``, ``federated_main.py``,
``scripts/fedotp_few_shot.sh``): two prompts (1 averaged, 1 local), cost ``1 - cos``,
Kernel ``exp(-cost / eps)`` with eps 0.01, the unbalanced ("COT") iteration
``u = min(a / (K v), 1)``, ``v = b / (K^T u)`` with uniform patch marginal ``a = 1/L`` and
prompt marginal ``b = top_percent / N`` (top_percent 0.8), at most 100 iterations and a
threshold 1e-3 on the change of ``v``; the balanced Sinkhorn as the alternative (``ot``);
logits ``logit_scale * sum T * sim``; the plan under ``no_grad``.

Ours (to fit dual-prompt backbones and the engine's determinism):
- the vision prompts (MaPLe couplings of the data prompt) come from the *global* task
  prompt, so the patches are the same for both prompts, as with FedOTP's frozen image encoder;
  the data prompt is shared and FedAvg'd with the global prompt;
- the local prompt starts as the round-0 task prompt (theirs: both prompts random);
- each transport problem stops on its own (relative change of ``v`` below ``thresh``), not
  when the batch's mean change does, so a sample's logits do not depend on its batch; and the
  kernel is shifted per prompt column (``cost - min_m cost``), which leaves the plan unchanged
  in exact arithmetic but keeps ``exp(-cost / 0.01)`` from underflowing to 0, and the plan is
  computed in float64 (v grows like ``exp(cost / eps)`` for far patches);
- the global model (held-out clients) is the global prompt alone: its rows put the global
  prompt in the local slot, and two equal prompts give the one-prompt plan exactly.
- only ``clip`` offers patch features in its class-feature space; ViT and BERT classify with a
  linear head (not a cosine), so ``check_config`` refuses them.

Rows: task ``[global prompt (Dt) | data prompt (Dd)]``, averaged whole; data ``local prompt (Dt)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from dp2fl_ray.algorithms.base import (
    Algorithm,
    EarlyAggregation,
    PromptSizes,
    RoundResults,
    RoundUpdate,
    ServerState,
    global_task_own_data,
)
from dp2fl_ray.algorithms.baselines import fedavg_weights
from dp2fl_ray.config import AlgorithmOptions, option
from dp2fl_ray.engine.batched import ClientForward
from dp2fl_ray.errors import ConfigError

if TYPE_CHECKING:
    from dp2fl_ray.config import ExperimentConfig
    from dp2fl_ray.models.base import DualPromptModel

BACKBONES = ("clip",)


@dataclass(frozen=True)
class FedOTPOptions(AlgorithmOptions):
    ot: Literal["unbalanced", "sinkhorn"] = "unbalanced"
    eps: float = option(0.01, "(0, inf)", hint="entropic regularisation of the transport")
    top_percent: float = option(0.8, "(0, 1]", hint="mass each image sends to the prompts (unbalanced)")
    max_iter: int = option(100, "[1, inf)", hint="most Sinkhorn iterations")
    thresh: float = option(1e-3, "(0, inf)", hint="stop when v changes less than this (relative)")


def transport_plan(
    sim: torch.Tensor, eps: float, mass: float, max_iter: int, thresh: float, unbalanced: bool = True
) -> torch.Tensor:
    """Entropic OT plans of a batch of problems: similarities ``(..., L, K)`` -> plans ``(..., L, K)``.

    Rows (patches) have marginal ``a = 1/L``, columns (prompts) ``b = mass/K``. ``unbalanced``:
    row sums may fall short of ``a`` (``u = min(a / K v, 1)``), column sums are exactly ``b``,
    so a total of ``mass`` moves from the best-matching patches. Otherwise the balanced
    Sinkhorn (``mass`` is then 1). Each problem iterates until its own relative change of
    ``v`` is below ``thresh`` or ``max_iter`` is reached.
    """
    length, k = sim.shape[-2], sim.shape[-1]
    a, b = 1.0 / length, (mass if unbalanced else 1.0) / k
    out_dtype, sim = sim.dtype, sim.double()  # float64: v grows like exp(cost / eps) for far patches
    cost = 1.0 - sim
    # A per-column factor in the kernel is absorbed by v: same plan, no exp underflow.
    kernel = torch.exp(-(cost - cost.amin(dim=-2, keepdim=True)) / eps)  # (..., L, K)
    u = torch.ones(sim.shape[:-1], dtype=sim.dtype, device=sim.device)  # (..., L)
    v = torch.ones((*sim.shape[:-2], k), dtype=sim.dtype, device=sim.device)  # (..., K)
    done = torch.zeros(sim.shape[:-2], dtype=torch.bool, device=sim.device)  # (...,)
    for _ in range(max_iter):
        u_new = a / (kernel * v.unsqueeze(-2)).sum(dim=-1)  # (..., L)
        if unbalanced:
            u_new = u_new.clamp(max=1.0)
        v_new = b / (kernel * u_new.unsqueeze(-1)).sum(dim=-2)  # (..., K)
        change = ((v_new - v).abs() / v_new).mean(dim=-1)  # (...,)
        u = torch.where(done.unsqueeze(-1), u, u_new)
        v = torch.where(done.unsqueeze(-1), v, v_new)
        done = done | (change < thresh)
        if bool(done.all()):
            break
    return (u.unsqueeze(-1) * kernel * v.unsqueeze(-2)).to(out_dtype)  # (..., L, K)


def plan_logits(sim: torch.Tensor, plan: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Class logits ``scale * sum_{L,K} T * sim``: sim and plan ``(N, C, L, K)`` -> ``(N, C)``."""
    return scale * (plan * sim).sum(dim=(-1, -2))


@dataclass(frozen=True)
class Prepared:
    """Per-model tensors: the global prompt, data prompt and both prompts' class features."""

    global_prompt: torch.Tensor  # (M, Dt)
    data: torch.Tensor  # (M, Dd)
    class_feats: torch.Tensor  # (M, K=2, C, P)


class FedOTPForward(ClientForward):
    """FedOTP rows to logits: patches of the global model transported to the two prompts' classes."""

    def __init__(self, options: FedOTPOptions) -> None:
        self.options = options

    def prepare(self, model: DualPromptModel, task: torch.Tensor, data: torch.Tensor) -> Prepared:
        dt, m = model.task_layout.size, task.shape[0]
        glob, data_prompt = task[:, :dt], task[:, dt:]  # (M, Dt), (M, Dd)
        feats = model.class_features(torch.cat([glob, data]))  # (2M, C, P): global rows, then local
        feats = feats.reshape(2, m, *feats.shape[1:]).transpose(0, 1)  # (M, 2, C, P)
        return Prepared(glob, data_prompt, feats)

    def logits(
        self,
        model: DualPromptModel,
        inputs: torch.Tensor,
        task: torch.Tensor,
        data: torch.Tensor,
        owner: torch.Tensor,
        prepared: Any,
    ) -> torch.Tensor:
        o = self.options
        patches = model.token_features(inputs, prepared.global_prompt, prepared.data, owner)  # (N, L, P)
        feats = prepared.class_feats[owner].float()  # (N, K, C, P)
        # a product and a sum, not einsum/bmm: a sample's numbers must not depend on its batch
        sim = (patches.unsqueeze(1).unsqueeze(1) * feats.unsqueeze(3)).sum(dim=-1)  # (N, K, C, L)
        sim = sim.permute(0, 2, 3, 1)  # (N, C, L, K)
        with torch.no_grad():
            plan = transport_plan(
                sim.detach(), o.eps, o.top_percent, o.max_iter, o.thresh, o.ot == "unbalanced"
            )
        return plan_logits(sim, plan, model.token_logit_scale())  # (N, C)


class FedOTP(Algorithm):
    """Global prompt (FedAvg'd with the data prompt); a local prompt per client kept in the store."""

    name = "fedotp"
    options_type = FedOTPOptions
    options: FedOTPOptions

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        backbone = config.model.backbone
        if backbone not in BACKBONES:
            raise ConfigError(
                "model.backbone", backbone, " | ".join(BACKBONES) + " for algorithm fedotp",
                "FedOTP transports patch features to class features by cosine; the vit and bert "
                "backbones classify with a linear head, so they have no such features",
            )  # fmt: skip

    def row_sizes(self, prompts: PromptSizes) -> PromptSizes:
        return PromptSizes(prompts.task + prompts.data, prompts.task)

    def initial_rows(self, task: np.ndarray, data: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([task, data]).astype(np.float32), np.asarray(task, np.float32).copy()

    def start_rows(
        self, state: ServerState, stored: Sequence[np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        return global_task_own_data(state, stored)

    def aggregate(
        self, state: ServerState, results: RoundResults, early: EarlyAggregation | None = None
    ) -> RoundUpdate:
        m = len(results.task)
        weights = fedavg_weights(results.n_train)
        global_task = (weights @ results.task).astype(np.float32)
        dt = len(state.initial_data)  # the local prompt's size is the task prompt's
        global_data = global_task[:dt].copy()  # the global prompt in the local slot: one-prompt OT
        personal_task = np.repeat(global_task[None], m, axis=0)
        return RoundUpdate(global_task, global_data, personal_task, results.data.astype(np.float32), weights)

    def forward(self) -> ClientForward:
        return FedOTPForward(self.options)
