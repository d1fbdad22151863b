"""A frozen BERT-family encoder with deep soft prompts (ALGORITHM.md section 1, [ours]).

Task prompt ``Pt`` (shared, server-aggregated): ``n_ctx`` soft prompt tokens for each of the
first J layers (P-tuning v2 style, as tokens rather than key/value prefixes) plus a linear
head. Data prompt ``Pd_k`` (per client): couplings ``F_j: Linear(d -> d)``, identity at the
start, applied to the task tokens of layer j. Layer 0 sees ``F_0(P_0)`` inserted right after
``[CLS]`` (after the embedding layer, so the text keeps its own position ids); before each
layer 0 < j < J those slots are overwritten with ``F_j(P_j)``. The attention mask covers
the prompt tokens.

Features: mean over the real text tokens of the last layer (prompt tokens excluded, so with
no prompts this is exactly sentence-transformers' mean pooling), L2-normalised.

Head (a zero-shot start): rows = ``LOGIT_SCALE`` x the normalised features of each class
name (underscores read as spaces) computed by this model with the initial prompts in
place, bias 0. At round 0 the logits are therefore ``LOGIT_SCALE`` x the cosine similarity
between a text and each class name, under the very prompts the text runs with. The scale
is a constant (20: all-MiniLM-L6-v2 then puts ~0.95 probability on the right intent of
everyday queries); training moves the rows, and so their norm.

Inputs: ``encode`` turns strings into ``(N, model.max_length)`` token ids; ``logits``
recomputes the mask from the pad id. The length is never cut to the batch's longest text:
that would make a sample's rounding depend on the batch it shares.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.bert_packed import PackedEncoder
from dp2fl_ray.models.compiled import warm_up
from dp2fl_ray.models.prompt_ops import (
    coupled_prompts,
    deep_prompt_layouts,
    head_class_features,
    head_logits,
    identity_coupling,
    replace_prompt_tokens,
)

LOGIT_SCALE = 20.0  # fixed, not learned: the head rows themselves train
PROMPT_INIT_STD = 0.02


class BertPrompt(DualPromptModel):
    """Frozen BERT-style encoder + deep soft prompts supplied per client as flat rows."""

    class_ids: torch.Tensor  # buffer (C, L): the class names, tokenized
    init_ctx: torch.Tensor  # buffer (<= n_ctx, d): the init text after the embedding layer

    def __init__(
        self,
        bert: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        class_names: Sequence[str],
        n_ctx: int,
        depth: int,
        init_text: str,
        max_length: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(device, dtype)
        cfg = bert.config
        if not 1 <= depth <= cfg.num_hidden_layers:
            raise ModelError(
                f"model.prompt.depth={depth} but this encoder has {cfg.num_hidden_layers} layers; "
                f"set model.prompt.depth to 1..{cfg.num_hidden_layers}"
            )
        if tokenizer.pad_token_id is None:
            raise ModelError("the tokenizer at model.path has no pad token; save one with the tokenizer")
        self.bert, self.tokenizer = bert, tokenizer
        self.n_ctx, self.depth, self.max_length = n_ctx, depth, max_length
        self.num_classes = len(class_names)
        self.pad_id = int(tokenizer.pad_token_id)
        self.task_layout, self.data_layout = deep_prompt_layouts(
            depth, n_ctx, cfg.hidden_size, len(class_names)
        )
        self.register_buffer(
            "class_ids", self.encode([n.replace("_", " ") for n in class_names]), persistent=False
        )
        init_ids = torch.tensor([tokenizer(init_text)["input_ids"]])  # (1, 2 + words): [CLS] init [SEP]
        with torch.no_grad():
            # What the init words look like right after [CLS]: the embedding layer's output there.
            init_ctx = self.embeddings(input_ids=init_ids)[0, 1 : init_ids.shape[1] - 1][:n_ctx]  # (<=n, d)
        self.register_buffer("init_ctx", init_ctx.clone(), persistent=False)
        self.freeze()
        self.to(device)
        # after .to: in float32 its matrices are views of the encoder's (only Q/K/V fused is new)
        self.packed = PackedEncoder(list(self.layers), dtype).eval()

    def use_compiled_layers(self) -> None:
        """``model.compile: true``: torch.compile the packed layers' row-wise pieces, and pay
        the compile cost now, on the model's device.

        Warms up every autograd mode the engine runs (training with a backward, ``no_grad``
        as in ``initial_prompts``, ``inference_mode`` as in evaluation) on two class names,
        so no round pays for compiling and a broken compiler fails here (``ModelError``).
        """
        self.packed.use_compiled(True)
        ids = self.class_ids[:2]  # (2, L)
        shape = (ids.shape[0], self.depth, self.n_ctx, self.bert.config.hidden_size)

        def passes() -> None:
            prompts = torch.zeros(shape, device=self.device, requires_grad=True)  # (2, J, n, d): any values
            self.text_features(ids, prompts).sum().backward()
            with torch.no_grad():
                self.text_features(ids, prompts)
            with torch.inference_mode():
                self.text_features(ids, prompts)

        warm_up(passes, self.device)

    @property
    def embeddings(self) -> nn.Module:
        """The encoder's embedding layer (word + position + type embeddings, LayerNorm)."""
        return cast(nn.Module, self.bert.embeddings)

    @property
    def layers(self) -> nn.ModuleList:
        """The encoder's transformer layers, in order."""
        return cast(nn.ModuleList, cast(nn.Module, self.bert.encoder).layer)

    def encode(self, inputs: Any) -> torch.Tensor:
        """Strings (list, tuple or array) -> token ids ``(N, max_length)`` int64, padded and truncated."""
        if isinstance(inputs, (str, torch.Tensor)):
            raise TypeError(
                f"{type(self).__name__}.encode takes a sequence of strings, got {type(inputs).__name__}"
            )
        texts = [str(t) for t in (inputs.tolist() if isinstance(inputs, np.ndarray) else inputs)]
        out = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return out["input_ids"].long()  # (N, L)

    def initial_prompts(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        (_, prompt_shape), _, (_, bias_shape) = self.task_layout.entries
        prompts = torch.randn(prompt_shape, generator=gen) * PROMPT_INIT_STD  # (J, n, d)
        prompts[0, : self.init_ctx.shape[0]] = self.init_ctx.float().cpu()
        data = identity_coupling(self.data_layout)
        rows = prompts.to(self.device).expand(self.num_classes, *prompt_shape)  # (C, J, n, d); F_j = I
        with torch.no_grad():
            head = LOGIT_SCALE * self.text_features(self.class_ids, rows).float().cpu()  # (C, d)
        task = self.task_layout.flatten(
            {"prompts": prompts, "head_weight": head, "head_bias": torch.zeros(bias_shape)}
        )
        return task, data

    def class_features(self, task: torch.Tensor) -> torch.Tensor:
        return head_class_features(self.task_layout, task)  # (M, C, d + 1)

    def hidden_states(
        self, ids: torch.Tensor, prompts: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-layer states and the text mask, with prompts ``(N, J, n, d)`` or none.

        Returns ``(N, T, d)`` (zeros at padding) and ``(N, T)`` (True on real text tokens,
        False on padding and prompt slots); T = L (+ n_ctx with prompts). The layers run on
        packed tokens (``bert_packed.py``): padding costs no FLOPs.
        """
        x, mask, attend = self.prompted_embeddings(ids, prompts)
        return self.packed(x.float(), attend, prompts, 1, self.depth), mask

    def prompted_embeddings(
        self, ids: torch.Tensor, prompts: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder's input: embeddings ``(N, T, d)`` with layer 0's prompts inserted right
        after ``[CLS]``, the pooling mask ``(N, T)`` (real text tokens) and the attention mask
        ``(N, T)`` (text tokens and prompt slots); T = L (+ n_ctx with prompts)."""
        ids = ids.to(self.device)
        mask = ids != self.pad_id  # (N, L)
        x = self.embeddings(input_ids=ids)  # (N, L, d), position ids 0..L-1
        attend = mask
        if prompts is not None:
            x = replace_prompt_tokens(x, prompts[:, 0], 1, insert=True)  # (N, L + n, d)
            slots = torch.zeros(mask.shape[0], self.n_ctx, dtype=torch.bool, device=mask.device)  # (N, n)
            mask = torch.cat([mask[:, :1], slots, mask[:, 1:]], dim=1)  # (N, L + n): pooling mask
            attend = torch.cat([attend[:, :1], ~slots, attend[:, 1:]], dim=1)  # (N, L + n): prompts attended
        return x, mask, attend

    def text_features(self, ids: torch.Tensor, prompts: torch.Tensor | None) -> torch.Tensor:
        """L2-normalised mean of the real text tokens' last-layer states: ``(N, d)``."""
        x, mask = self.hidden_states(ids, prompts)  # (N, T, d), (N, T)
        weights = mask.unsqueeze(-1).to(x.dtype)  # (N, T, 1)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)  # (N, d)
        return F.normalize(pooled.float(), dim=-1)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """No autocast: the packed encoder holds its matrices in the compute dtype already."""
        return contextlib.nullcontext()

    def logits(
        self,
        inputs: torch.Tensor,
        task: torch.Tensor,
        data: torch.Tensor,
        owner: torch.Tensor,
        class_feats: torch.Tensor,
    ) -> torch.Tensor:
        prompts = coupled_prompts(self.task_layout, self.data_layout, task, data)[owner]  # (N, J, n, d)
        return head_logits(self.text_features(inputs, prompts), class_feats, owner)  # (N, C)
