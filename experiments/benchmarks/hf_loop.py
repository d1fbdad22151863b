"""The honest naive backbone: the transformers model as it is, with dynamic padding.

What a competent researcher's script runs when it puts deep soft prompts into a frozen
``AutoModel`` (issue 15, part 7): each batch is padded to its own longest utterance (what
``tokenizer(..., padding=True)`` gives per batch), the model's own embedding layer runs on
the token ids, layer 0's prompts are inserted right after ``[CLS]``, and the model's own
encoder (``AutoModel(...).encoder``, its default SDPA attention) runs on the result with
the bidirectional mask ``BertModel.forward`` itself builds. Deeper prompts (depth > 1)
overwrite their slots in forward pre-hooks on layers 1..J-1, P-tuning v2 style.

It computes the function of ``BertPrompt`` (same weights, prompts, pooling and head:
``tests/test_benchmarks.py`` checks logits and gradients against it) without any of the
package's kernels: no packing, no K/V-only prompt slots, no length buckets. Trimming the
padding changes only the rounding of masked-out work, so accuracies agree with the
package's to the rounding of float32, not bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any, cast

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.bert_prompt import BertPrompt
from dp2fl_ray.models.prompt_ops import replace_prompt_tokens


class TransformersBertPrompt(BertPrompt):
    """``BertPrompt`` with the encoder run through transformers, padded per batch."""

    def hidden_states(
        self, ids: torch.Tensor, prompts: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ids = ids.to(self.device)
        longest = int((ids != self.pad_id).sum(dim=1).max())  # right padding: real tokens come first
        x, mask, attend = self.prompted_embeddings(ids[:, :longest], prompts)  # (N, T, d), T = longest + n
        attention = create_bidirectional_mask(
            config=self.bert.config, inputs_embeds=x, attention_mask=attend.long()
        )
        with self.deep_prompts(prompts):
            encoder = cast(nn.Module, self.bert.encoder)
            x = encoder(x, attention_mask=attention).last_hidden_state  # (N, T, d)
        return x * mask.unsqueeze(-1).to(x.dtype), mask

    @contextlib.contextmanager
    def deep_prompts(self, prompts: torch.Tensor | None) -> Iterator[None]:
        """Hooks that overwrite the prompt slots with ``prompts[:, j]`` before layers 1..J-1."""
        handles = []
        if prompts is not None:
            for j in range(1, self.depth):

                def overwrite(module: Any, args: tuple[Any, ...], j: int = j) -> tuple[Any, ...]:
                    return (replace_prompt_tokens(args[0], prompts[:, j], 1, insert=False), *args[1:])

                handles.append(self.layers[j].register_forward_pre_hook(overwrite))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Plain autocast for bf16 (what a researcher would reach for); nothing in float32."""
        return DualPromptModel.autocast(self)


def transformers_twin(model: BertPrompt) -> TransformersBertPrompt:
    """The transformers-run model over ``model``'s very weights and buffers (nothing is copied)."""
    twin = copy.copy(model)  # shares the frozen modules and buffers
    twin.__class__ = TransformersBertPrompt
    return cast(TransformersBertPrompt, twin)
