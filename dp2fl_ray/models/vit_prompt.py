"""A frozen timm vision transformer with VPT-deep dual prompts (ALGORITHM.md section 1, [ours]).

Task prompt ``Pt`` (shared, server-aggregated): ``n_ctx`` prompt tokens for each of the first
J blocks plus a linear head (C x d weight, C bias). Data prompt ``Pd_k`` (per client): the
couplings ``F_j: Linear(d -> d)``, identity at the start, applied to the task tokens of block
j. Block 0 sees ``F_0(P_0)`` inserted after the prefix (CLS/register) tokens; before each block
0 < j < J those slots are overwritten with ``F_j(P_j)``; later blocks carry them along. The
prompt tokens are dropped before the final norm, so timm's own pooling (CLS token, mean or
attention pool) sees exactly the token layout it was trained with.

Head init: uniform in +-1/sqrt(d) (``nn.Linear``'s weight range), zero bias, seeded. A zero
head would give every prompt a zero gradient on the first step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import DTYPES, TINY_BACKBONE_SEED, DualPromptModel, pad_small_gemms
from dp2fl_ray.models.prompt_ops import (
    coupled_prompts,
    deep_prompt_layouts,
    head_class_features,
    head_logits,
    identity_coupling,
    pad_samples,
    replace_prompt_tokens,
)

TINY_TEMPLATE = "vit_base_patch16_224"  # any ViT arch: model.tiny replaces its sizes
TINY_WEIGHT_INIT = "moco"  # timm's default init maps every image of a tiny ViT to ~one point
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HEAD_KEYS = ("head.weight", "head.bias")  # the classifier we replace (num_classes=0)


class ViTPrompt(DualPromptModel):
    """Frozen timm ``VisionTransformer`` + VPT-deep prompts supplied per client as flat rows."""

    pixel_mean: torch.Tensor  # buffers (1, 3, 1, 1)
    pixel_std: torch.Tensor

    def __init__(
        self,
        vit: VisionTransformer,
        num_classes: int,
        n_ctx: int,
        depth: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(device, dtype)
        blocks = len(vit.blocks)
        if not 1 <= depth <= blocks:
            raise ModelError(
                f"model.prompt.depth={depth} but this ViT has {blocks} blocks; "
                f"set model.prompt.depth to 1..{blocks}"
            )
        pad_small_gemms(vit)  # a slice's 1-sample batch rounds as in a full one
        self.vit = vit
        self.n_ctx, self.depth, self.num_classes = n_ctx, depth, num_classes
        self.dim = int(vit.embed_dim)
        self.prefix = int(vit.num_prefix_tokens)  # CLS (+ register/distillation) tokens
        self.image_size = tuple(int(s) for s in vit.patch_embed.img_size)
        self.task_layout, self.data_layout = deep_prompt_layouts(depth, n_ctx, self.dim, num_classes)
        data_cfg = timm.data.resolve_model_data_config(vit)
        self.interpolation = (
            data_cfg["interpolation"] if data_cfg["interpolation"] in ("bilinear", "bicubic") else "bilinear"
        )
        self.register_buffer("pixel_mean", torch.tensor(data_cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(data_cfg["std"]).view(1, 3, 1, 1), persistent=False)
        self.freeze()
        self.to(device)

    def initial_prompts(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        (_, prompt_shape), (_, weight_shape), (_, bias_shape) = self.task_layout.entries
        # VPT's prompt init: uniform in +-sqrt(6 / (fan_in of a patch + d)).
        patch = self.vit.patch_embed.proj
        fan_in = patch.in_channels * math.prod(patch.kernel_size)
        bound = math.sqrt(6.0 / (fan_in + self.dim))
        prompts = (torch.rand(prompt_shape, generator=gen) * 2 - 1) * bound
        head = (torch.rand(weight_shape, generator=gen) * 2 - 1) * self.dim**-0.5
        task = self.task_layout.flatten(
            {"prompts": prompts, "head_weight": head, "head_bias": torch.zeros(bias_shape)}
        )
        return task, identity_coupling(self.data_layout)

    def class_features(self, task: torch.Tensor) -> torch.Tensor:
        return head_class_features(self.task_layout, task)  # (M, C, d + 1)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] at any size -> the model's normalisation at its input resolution."""
        images = images.to(self.device, non_blocking=True)
        if tuple(images.shape[-2:]) != self.image_size:
            images = F.interpolate(
                images, size=self.image_size, mode=self.interpolation, align_corners=False, antialias=True
            ).clamp(0, 1)
        return (images - self.pixel_mean) / self.pixel_std  # (N, 3, H, W)

    def image_features(
        self, images: torch.Tensor, task: torch.Tensor, data: torch.Tensor, owner: torch.Tensor
    ) -> torch.Tensor:
        """Pooled features ``(N, d)``, sample n run with the prompts of row ``owner[n]``."""
        vit, batch = self.vit, images.shape[0]
        tokens = self.prefix + self.n_ctx + vit.patch_embed.num_patches
        prompts = coupled_prompts(self.task_layout, self.data_layout, task, data)[owner]  # (N, J, n, d)
        prompts = pad_samples(prompts, tokens)  # (N', J, n, d), N' >= N
        x = vit.patch_embed(pad_samples(self.preprocess(images), tokens))  # (N', patches, d)
        # timm's own embedding steps (VisionTransformer.forward_features), then our prompt slots.
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))  # (N', prefix + patches, d)
        x = replace_prompt_tokens(x, prompts[:, 0], self.prefix, insert=True)  # (N', prefix + n + patches, d)
        for j, block in enumerate(vit.blocks):
            if 1 <= j < self.depth:
                x = replace_prompt_tokens(x, prompts[:, j], self.prefix, insert=False)
            x = block(x)
        end = self.prefix + self.n_ctx
        x = torch.cat([x[:, : self.prefix], x[:, end:]], dim=1)  # (N', prefix + patches, d): prompts out
        return vit.forward_head(vit.norm(x), pre_logits=True)[:batch]  # (N, d)

    def logits(
        self,
        inputs: torch.Tensor,
        task: torch.Tensor,
        data: torch.Tensor,
        owner: torch.Tensor,
        class_feats: torch.Tensor,
    ) -> torch.Tensor:
        return head_logits(self.image_features(inputs, task, data, owner), class_feats, owner)  # (N, C)


def create_vit(name: str | None, **kwargs: Any) -> VisionTransformer:
    """``timm.create_model(name, pretrained=False, num_classes=0)``; only VisionTransformer archs."""
    if not name:
        raise ModelError(
            "model.backbone is 'vit' but model.name is not set; set model.name to a timm ViT "
            f"architecture, e.g. {TINY_TEMPLATE} (with model.path null, model.tiny sets its sizes)"
        )
    if not timm.is_model(name):
        raise ModelError(
            f"model.name {name!r} is not a timm architecture; pick one from timm.list_models('vit_*'), "
            f"e.g. {TINY_TEMPLATE}"
        )
    try:
        vit = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except (RuntimeError, ValueError, TypeError) as exc:  # e.g. a CNN given ViT sizes
        raise ModelError(
            f"model.name {name!r} is not a VisionTransformer architecture timm can build here ({exc}); "
            f"backbone vit takes ViT/DeiT architectures, e.g. {TINY_TEMPLATE}"
        ) from exc
    if not isinstance(vit, VisionTransformer):
        raise ModelError(
            f"model.name {name!r} is a timm {type(vit).__name__}, not a VisionTransformer; "
            f"backbone vit takes ViT/DeiT architectures, e.g. {TINY_TEMPLATE}"
        )
    return vit.eval()


def build_tiny_vit(name: str | None, tiny: Any, seed: int) -> VisionTransformer:
    """A small random ViT of arch ``name`` with ``model.tiny``'s sizes, the same on every worker."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_vit(
            name,
            img_size=tiny.image_size,
            patch_size=tiny.patch_size,
            embed_dim=tiny.hidden,
            depth=tiny.layers,
            num_heads=tiny.heads,
            weight_init=TINY_WEIGHT_INIT,
        )


def weight_file(path: str) -> str:
    """The weight file at ``model.path``: the file itself, or a known file in the directory."""
    if os.path.isdir(path):
        for candidate in WEIGHT_FILES:
            if os.path.isfile(os.path.join(path, candidate)):
                return os.path.join(path, candidate)
        raise ModelError(
            f"model.path {path!r} has no weights ({' or '.join(WEIGHT_FILES)}); point model.path at a "
            "weight file or save one there with safetensors.torch.save_file(vit.state_dict(), ...)"
        )
    if not os.path.isfile(path):
        raise ModelError(
            f"model.path {path!r} does not exist; point it at a .safetensors/.pth/.bin file or a directory"
        )
    return path


def load_vit(name: str | None, path: str) -> VisionTransformer:
    """ViT ``name`` with the weights at ``path``; every backbone weight must be there."""
    file = weight_file(path)
    vit = create_vit(name)
    try:
        state = timm.models.load_state_dict(file, weights_only=True)
        state = checkpoint_filter_fn(state, vit)  # timm's own conversions (pos-embed resize...)
        result = vit.load_state_dict({k: v for k, v in state.items() if k not in HEAD_KEYS}, strict=False)
    except Exception as exc:  # torch/safetensors raise many types for a truncated or foreign file
        raise ModelError(
            f"cannot load ViT weights from model.path {file!r} for model.name {name!r}: {exc}. The file "
            "must be a complete state dict of that architecture (torch.save(vit.state_dict()) or safetensors)"
        ) from exc
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"weights at model.path {file!r} do not fit model.name {name!r}: missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}; set model.name to the "
            "architecture the weights were saved from"
        )
    return vit.eval()


def build_vit(model_cfg: Any, class_names: Sequence[str], texts: Sequence[str],
              device: torch.device) -> DualPromptModel:  # fmt: skip
    """The ``vit`` backbone's builder (``models/loader.py``): timm weights or a tiny random ViT."""
    if model_cfg.path is None:
        vit = build_tiny_vit(model_cfg.name, model_cfg.tiny, TINY_BACKBONE_SEED)
    else:
        vit = load_vit(model_cfg.name, model_cfg.path)
    prompt = model_cfg.prompt
    return ViTPrompt(vit, len(class_names), prompt.n_ctx, prompt.depth, device, DTYPES[model_cfg.dtype])
