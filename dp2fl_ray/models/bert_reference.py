"""The BERT dual-prompt model as a researcher would write it: the reference for tests and
for the throughput benchmark's baseline arms.

``ReferenceBertPrompt`` computes the same function as ``BertPrompt`` (same weights,
prompts, pooling and head: ``tests/models/test_bert_prompt.py`` checks that logits and
gradients agree) the straightforward way: every text padded to ``model.max_length``, the
prompts inserted after ``[CLS]``, and the transformers encoder layers called one after
another on the padded ``(N, L + n, d)`` states with an additive attention mask, the deep
prompts overwritten before layers 1..J-1 (P-tuning v2 style). That is what the issue's
"obvious script" and a competent Flower user run; the package's packed encoder
(``bert_packed.py``) is one of the things being measured against it.

The throughput benchmark gives the naive and Flower arms this model (``--baseline-model
reference``) or the package's own (``package``) so that the share of the speed-up that
comes from the model's kernels and the share from the engine are both visible.
"""

from __future__ import annotations

import contextlib
import copy
from typing import cast

import torch

from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.bert_prompt import BertPrompt
from dp2fl_ray.models.prompt_ops import replace_prompt_tokens


class ReferenceBertPrompt(BertPrompt):
    """``BertPrompt`` with the encoder run padded, layer by layer through transformers."""

    def hidden_states(
        self, ids: torch.Tensor, prompts: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask, attend = self.prompted_embeddings(ids, prompts)
        bias = torch.zeros(attend.shape, dtype=x.dtype, device=x.device).masked_fill(
            ~attend, torch.finfo(x.dtype).min
        )
        bias = bias[:, None, None, :]  # (N, 1, 1, T): additive key-padding mask
        for j, layer in enumerate(self.layers):
            if prompts is not None and 1 <= j < self.depth:
                x = replace_prompt_tokens(x, prompts[:, j], 1, insert=False)
            out = layer(x, bias)
            x = out[0] if isinstance(out, tuple) else out
        return x * mask.unsqueeze(-1).to(x.dtype), mask

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Plain autocast for bf16 (what a researcher would reach for); nothing in float32."""
        return DualPromptModel.autocast(self)


def reference_twin(model: BertPrompt) -> ReferenceBertPrompt:
    """The reference model over ``model``'s very weights and buffers (nothing is copied)."""
    twin = copy.copy(model)  # shares the frozen modules and buffers
    twin.__class__ = ReferenceBertPrompt
    return cast(ReferenceBertPrompt, twin)  # mypy does not narrow on a __class__ assignment
