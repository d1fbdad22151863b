"""The interface every dual-prompt backbone offers the engine.

A model holds a frozen backbone and no trainable state of its own: the prompts of many
clients come in as rows of two matrices, the task prompts ``(M, Dt)`` and the data prompts
``(M, Dd)``, and every input sample names the row (``owner``) whose prompts it runs with.
That is what lets the engine push the samples of many clients through one forward pass.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.layout import PromptLayout

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # model.dtype
TINY_BACKBONE_SEED = 0  # every worker builds the same tiny random backbone


class DualPromptModel(nn.Module, abc.ABC):
    """A frozen backbone driven by per-client task and data prompts.

    Subclasses set ``task_layout``, ``data_layout``, ``num_classes`` and implement the
    three abstract methods. The backbone must be frozen (``requires_grad`` False) and in
    eval mode; gradients flow only into the prompt rows passed in.
    """

    task_layout: PromptLayout
    data_layout: PromptLayout
    num_classes: int

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        self.device = device
        self.compute_dtype = dtype

    def encode(self, inputs: Any) -> torch.Tensor:
        """Turn a source's raw inputs into the tensor ``logits`` takes, on CPU.

        Images arrive as float tensors ``(N, 3, H, W)`` in [0, 1] and pass through (the model
        resizes on its device); text backbones override this to tokenize a list of strings
        into ``(N, L)`` token ids.
        """
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"{type(self).__name__} takes image tensors, got {type(inputs).__name__}")
        return inputs

    @abc.abstractmethod
    def initial_prompts(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The round-0 task prompt ``(Dt,)`` and data prompt ``(Dd,)``, a function of ``seed``."""

    @abc.abstractmethod
    def class_features(self, task: torch.Tensor) -> torch.Tensor:
        """Per-model class side of the classifier: ``(M, Dt) -> (M, C, P)``."""

    @abc.abstractmethod
    def logits(
        self,
        inputs: torch.Tensor,
        task: torch.Tensor,
        data: torch.Tensor,
        owner: torch.Tensor,
        class_feats: torch.Tensor,
    ) -> torch.Tensor:
        """Class logits ``(N, C)`` of inputs ``(N, ...)``, sample n run with prompt row ``owner[n]``.

        ``class_feats`` is ``class_features(task)``, computed once per step by the caller.
        """

    def token_features(
        self, inputs: torch.Tensor, task: torch.Tensor, data: torch.Tensor, owner: torch.Tensor
    ) -> torch.Tensor:
        """Unit-norm per-token (per-patch) features ``(N, L, P)`` in the space of
        ``class_features``, sample n run with prompt row ``owner[n]``: what a method that
        matches local features to classes (FedOTP's optimal transport) compares by cosine.

        Only a backbone whose classifier is a cosine between image/text features and class
        features offers them (default: a ``ModelError`` naming the backbone).
        """
        raise ModelError(
            f"{type(self).__name__} has no per-token features in its class-feature space (its "
            "classifier is not a cosine similarity); use model.backbone clip for this method"
        )

    def token_logit_scale(self) -> torch.Tensor:
        """The scale that turns a cosine of ``token_features`` and class features into a logit."""
        raise ModelError(f"{type(self).__name__} has no cosine logit scale; use model.backbone clip")

    def use_compiled_layers(self) -> None:
        """``model.compile: true``: compile what this backbone compiles, and warm it up.

        The config admits ``model.compile`` only for the backbones that override this
        (``compiled.COMPILE_BACKBONES``); reaching the default is a programming error.
        """
        raise ModelError(f"model.compile is not implemented for {type(self).__name__}")

    def place(self, device: torch.device) -> DualPromptModel:
        """Move the backbone (and every buffer) to ``device``; prompts follow it per call."""
        self.to(device)
        self.device = device
        return self

    def freeze(self) -> None:
        """Freeze every backbone parameter and switch to eval mode (no dropout)."""
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Mixed precision as configured: autocast to bf16/fp16, or nothing for float32."""
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.compute_dtype)

    def trainable_report(self) -> str:
        """What trains, for the run log: the two prompt layouts and their sizes."""
        return (
            f"task prompt ({self.task_layout.size} params): {self.task_layout.describe()}; "
            f"data prompt ({self.data_layout.size} params): {self.data_layout.describe()}; "
            f"frozen backbone: {sum(p.numel() for p in self.parameters())} params"
        )


MIN_GEMM_ROWS = 32


def rowwise(layer: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a row-wise layer (Linear, LayerNorm) to ``x (R, d)`` so that each output row is
    bit-identical whatever the number of rows.

    CPU GEMM kernels switch to a different code path for a handful of rows, so the same
    sample could round differently in a slice of 1 client and in a slice of 8. Padding to a
    minimum row count keeps one code path, which makes results independent of how a cohort
    is cut into slices (the determinism contract). The cost is negligible.
    """
    rows = x.shape[0]
    if rows >= MIN_GEMM_ROWS:
        return layer(x)
    pad = x.new_zeros((MIN_GEMM_ROWS - rows, *x.shape[1:]))
    return layer(torch.cat([x, pad]))[:rows]  # (R, d_out)


class RowwiseLinear(nn.Linear):
    """An ``nn.Linear`` whose every output row is bit-identical whatever the number of rows
    (``rowwise`` over the flattened leading dimensions).

    A backbone's own layers see few rows when a slice's last batch holds one sample: a CLIP or
    ViT block then multiplies a handful of token rows, and on AVX-512 CPUs the fc2 GEMM
    (256 -> 64) rounds differently below 11 rows. ``pad_small_gemms`` turns a frozen
    backbone's layers into this class in place: same parameters, same state-dict keys.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        return rowwise(super().forward, flat).reshape(*x.shape[:-1], self.out_features)


def pad_small_gemms(module: nn.Module) -> None:
    """Make every plain ``nn.Linear`` inside ``module`` a ``RowwiseLinear`` (in place)."""
    for layer in module.modules():
        if type(layer) is nn.Linear:
            layer.__class__ = RowwiseLinear


def iter_chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of at most ``size`` elements."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def require_pretrained_weights(path: str, save_hint: str) -> None:
    """Fail with a ``ModelError`` naming the fix when directory ``path`` holds no weight file
    of a ``save_pretrained`` model, before transformers gives a less direct error."""
    if os.path.isdir(path) and not any(f.endswith((".safetensors", ".bin")) for f in os.listdir(path)):
        raise ModelError(f"model.path {path!r} has no weights (*.safetensors or *.bin); save {save_hint}")
