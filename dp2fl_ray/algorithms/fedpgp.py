"""FedPGP (Cui et al., ICML 2024): a global prompt plus a low-rank personal part per client.

Client k classifies with the personal task prompt ``sigma + U_k V_k``: ``sigma`` is the
global task prompt, and every 2-D block of it (``rows x cols``) gets a rank-``r`` update
``U (rows x r) @ V (r x cols)``. Its local loss adds a prompt-wise contrastive term on the
class features ``model.class_features``: the global prompt's features are the anchor, the
hand-crafted (round-0) prompt's features the positive and the personal prompt's the negative,
``mu * mean_c CE([cos(f0_c, fg_c), cos(fg_c, fp_c)] / T, 0)``. Only ``sigma`` is aggregated
(FedAvg by data size); ``U_k, V_k`` stay with the client.

Theirs (``TianyuCuiOvO/FedPGP``, ``trainers/fedpgp.py`` and ``federated_main.py``): the
reparameterisation ``sigma + U V``, rank (their "bottleneck") 4, the contrastive term's
positive (the frozen hand-crafted prompt), negative (the personal prompt), temperature 0.5
and weight mu 1, FedAvg of ``sigma`` only, personal evaluation with the new global ``sigma``
and the client's own ``U, V``.

Ours (to fit dual-prompt backbones):
- the update applies to every 2-D block of the task prompt (a 3-D entry is a stack of
  blocks: CLIP's deep text prompts, ViT/BERT's deep prompt tokens; the ViT/BERT head weight
  is one block; 1-D entries such as the head bias are not personalised);
- the model's data prompt (the couplings) is shared and FedAvg'd with ``sigma``, as in
  PromptFL: FedPGP has one personalisation mechanism, the low-rank part;
- the hand-crafted prompt is our round-0 task prompt (CLIP: "a photo of a" context; BERT:
  the zero-shot head; ViT: its seeded initial head);
- ``U`` starts at 0 and ``V`` at ``N(0, init_scale^2 / cols)`` (LoRA's start; theirs: both
  ``N(0, 0.02^2)``), so the round-0 personal model is the global one, the global model is
  exactly ``sigma``, and the personal path learns at the global prompt's pace;
- the global model (held-out clients) is ``(sigma, data prompt)`` with no personal part.

Rows: task ``[sigma (Dt) | data prompt (Dd)]``, averaged whole; data ``[hand-crafted
prompt (Dt) | U, V factors (F)]``, kept per client (the first part never trains: its
features are computed without gradient).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

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
from dp2fl_ray.seeding import derive_seed

if TYPE_CHECKING:
    from dp2fl_ray.models.base import DualPromptModel
    from dp2fl_ray.models.layout import PromptLayout


@dataclass(frozen=True)
class FedPGPOptions(AlgorithmOptions):
    rank: int = option(4, "[1, inf)", hint="rank of the personal update U V per prompt block")
    mu: float = option(1.0, "[0, inf)", hint="weight of the prompt-wise contrastive loss")
    temperature: float = option(0.5, "(0, inf)", hint="temperature of the contrastive loss")
    init_scale: float = option(1.0, "(0, inf)", hint="V starts at N(0, init_scale^2 / cols)")


@dataclass(frozen=True)
class Block:
    """``count`` stacked ``rows x cols`` blocks of a task-prompt entry (count 0: not personalised)."""

    size: int  # elements of the entry in the flat prompt
    count: int
    rows: int
    cols: int


def prompt_blocks(layout: PromptLayout) -> tuple[Block, ...]:
    """The 2-D blocks of every layout entry, in layout order (1-D entries: count 0)."""
    blocks = []
    for _, shape in layout.entries:
        size = math.prod(shape)
        if len(shape) < 2:
            blocks.append(Block(size, 0, 0, 0))
        else:
            rows, cols = shape[-2], shape[-1]
            blocks.append(Block(size, size // max(rows * cols, 1), rows, cols))
    return tuple(blocks)


def factor_size(blocks: Sequence[Block], rank: int) -> int:
    """Length of the flat ``U, V`` factors of all blocks: ``sum count * r * (rows + cols)``."""
    return sum(b.count * rank * (b.rows + b.cols) for b in blocks)


def low_rank_delta(blocks: Sequence[Block], factors: torch.Tensor, rank: int) -> torch.Tensor:
    """The personal update ``U V`` of every block, flat: factors ``(M, F)`` -> ``(M, Dt)``.

    Per block the factors hold ``U (count, rows, r)`` then ``V (count, r, cols)``. The product
    is a broadcast multiply and a sum over r, not a batched matmul, so a client's numbers do
    not depend on how many clients share the batch.
    """
    m, offset, pieces = factors.shape[0], 0, []
    for b in blocks:
        if b.count == 0:
            pieces.append(factors.new_zeros(m, b.size))  # (M, size)
            continue
        n_u, n_v = b.count * b.rows * rank, b.count * rank * b.cols
        u = factors[:, offset : offset + n_u].reshape(m, b.count, b.rows, rank)  # (M, c, rows, r)
        v = factors[:, offset + n_u : offset + n_u + n_v].reshape(m, b.count, rank, b.cols)  # (M, c, r, cols)
        offset += n_u + n_v
        product = (u.unsqueeze(-1) * v.unsqueeze(-3)).sum(
            dim=-2
        )  # (M, c, rows, r, cols) -> (M, c, rows, cols)
        pieces.append(product.reshape(m, b.size))  # (M, size)
    if offset != factors.shape[1]:
        raise ValueError(f"factors have {factors.shape[1]} values but the blocks take {offset}")
    return torch.cat(pieces, dim=1)  # (M, Dt)


def initial_factors(blocks: Sequence[Block], rank: int, init_scale: float, seed: int) -> np.ndarray:
    """Round-0 factors ``(F,)``: ``U = 0``, ``V ~ N(0, init_scale^2 / cols)``, seeded."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "fedpgp-factors"))
    parts = []
    for b in blocks:
        if b.count == 0:
            continue
        parts.append(torch.zeros(b.count * b.rows * rank))
        parts.append(torch.randn(b.count * rank * b.cols, generator=gen) * init_scale / math.sqrt(b.cols))
    return torch.cat(parts).numpy() if parts else np.zeros(0, np.float32)


def prompt_contrastive_loss(
    handcrafted: torch.Tensor, global_: torch.Tensor, personal: torch.Tensor, temperature: float
) -> torch.Tensor:
    """FedPGP's prompt-wise contrastive loss per model: class features ``(M, C, P)`` -> ``(M,)``.

    Per class, the global features are the anchor, the hand-crafted ones the positive and the
    personal ones the negative: ``CE([cos(h, g), cos(g, p)] / T, target 0)``, averaged over C.
    """
    positive = F.cosine_similarity(handcrafted, global_, dim=-1)  # (M, C)
    negative = F.cosine_similarity(global_, personal, dim=-1)  # (M, C)
    logits = torch.stack([positive, negative], dim=-1) / temperature  # (M, C, 2)
    return -F.log_softmax(logits, dim=-1)[..., 0].mean(dim=-1)  # (M,)


@dataclass(frozen=True)
class Prepared:
    """One step's per-model tensors: the personal prompt, data prompt and class features."""

    personal: torch.Tensor  # (M, Dt)
    data: torch.Tensor  # (M, Dd)
    personal_feats: torch.Tensor  # (M, C, P)
    global_feats: torch.Tensor | None  # (M, C, P), training only
    handcrafted_feats: torch.Tensor | None  # (M, C, P), training only, no gradient


class FedPGPForward(ClientForward):
    """FedPGP rows to logits: the personal prompt ``sigma + U V`` with the shared data prompt."""

    def __init__(self, rank: int, mu: float, temperature: float) -> None:
        self.rank, self.mu, self.temperature = rank, mu, temperature

    def prepare(self, model: DualPromptModel, task: torch.Tensor, data: torch.Tensor) -> Prepared:
        dt = model.task_layout.size
        sigma, data_prompt = task[:, :dt], task[:, dt:]  # (M, Dt), (M, Dd)
        handcrafted, factors = data[:, :dt], data[:, dt:]  # (M, Dt), (M, F)
        personal = sigma + low_rank_delta(prompt_blocks(model.task_layout), factors, self.rank)
        feats = model.class_features(personal)
        if not (torch.is_grad_enabled() and self.mu > 0):  # evaluation needs the personal model only
            return Prepared(personal, data_prompt, feats, None, None)
        with torch.no_grad():
            fixed = model.class_features(handcrafted)
        return Prepared(personal, data_prompt, feats, model.class_features(sigma), fixed)

    def logits(
        self,
        model: DualPromptModel,
        inputs: torch.Tensor,
        task: torch.Tensor,
        data: torch.Tensor,
        owner: torch.Tensor,
        prepared: Any,
    ) -> torch.Tensor:
        return model.logits(inputs, prepared.personal, prepared.data, owner, prepared.personal_feats)

    def extra_loss(
        self, model: DualPromptModel, task: torch.Tensor, data: torch.Tensor, prepared: Any
    ) -> torch.Tensor | None:
        if prepared.global_feats is None:
            return None
        loss = prompt_contrastive_loss(
            prepared.handcrafted_feats, prepared.global_feats, prepared.personal_feats, self.temperature
        )
        return self.mu * loss  # (A,)


class FedPGP(Algorithm):
    """Global ``sigma`` (FedAvg'd with the data prompt); per-client low-rank ``U, V`` kept in the store."""

    name = "fedpgp"
    options_type = FedPGPOptions
    options: FedPGPOptions
    task_layout: PromptLayout | None = None  # set on workers by ``for_model``

    def for_model(self, model: DualPromptModel) -> FedPGP:
        bound = copy.copy(self)
        bound.task_layout = model.task_layout
        return bound

    def _blocks(self) -> tuple[Block, ...]:
        if self.task_layout is None:
            raise RuntimeError("FedPGP's row sizes need the model's task layout: call for_model(model) first")
        return prompt_blocks(self.task_layout)

    def row_sizes(self, prompts: PromptSizes) -> PromptSizes:
        f = factor_size(self._blocks(), self.options.rank)
        return PromptSizes(prompts.task + prompts.data, prompts.task + f)

    def initial_rows(self, task: np.ndarray, data: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        factors = initial_factors(self._blocks(), o.rank, o.init_scale, seed)
        task_row = np.concatenate([task, data]).astype(np.float32)
        return task_row, np.concatenate([task, factors]).astype(np.float32)

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
        # The global model has no personal part: the round-0 factors, whose U is 0.
        global_data = np.asarray(state.initial_data, np.float32)
        personal_task = np.repeat(global_task[None], m, axis=0)
        return RoundUpdate(global_task, global_data, personal_task, results.data.astype(np.float32), weights)

    def forward(self) -> ClientForward:
        o = self.options
        return FedPGPForward(o.rank, o.mu, o.temperature)
