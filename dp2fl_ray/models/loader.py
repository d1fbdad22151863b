"""Build a dual-prompt model from the ``model`` section of the config.

``model.backbone`` picks the builder: ``clip`` (the paper's MaPLe model), ``vit`` (timm
vision transformer, VPT-deep prompts) or ``bert`` (BERT-family encoder, deep soft prompts).
Real checkpoints load with the real library from local files (or the hub cache when
online): ``CLIPModel.from_pretrained(model.path)``, timm weights at ``model.path`` for arch
``model.name``, ``AutoModel.from_pretrained(model.path)``. With ``model.path: null`` a tiny
random backbone is built from ``model.tiny`` (smoke runs and tests): deterministic, so every
worker builds the same backbone.

``model.compile: true`` (``bert`` only) torch.compiles the packed layers' row-wise pieces and
warms them up here, after the model is on its device (``compiled.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import DTYPES, DualPromptModel
from dp2fl_ray.models.compiled import check_supported
from dp2fl_ray.models.memory import check_device_memory

__all__ = ["BACKBONES", "DTYPES", "build_model", "resolve_device"]

# Each backbone's builder, imported only when that backbone is built: a clip worker does not
# pay for timm or the packed BERT encoder, nor a bert worker for timm (seconds per process).
BUILDERS: dict[str, str] = {
    "clip": "dp2fl_ray.models.clip_loading:build_clip",
    "vit": "dp2fl_ray.models.vit_prompt:build_vit",
    "bert": "dp2fl_ray.models.bert_loading:build_bert",
}
BACKBONES = tuple(BUILDERS)
_Builder = Callable[[Any, Sequence[str], Sequence[str], torch.device], DualPromptModel]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("model.device is 'cuda' but torch sees no GPU here; use 'auto' or 'cpu'")
    return torch.device(name)


def _builder(backbone: str) -> _Builder:
    module, name = BUILDERS[backbone].split(":")
    builder: _Builder = getattr(importlib.import_module(module), name)
    return builder


def build_model(
    model_cfg: Any, class_names: Sequence[str], texts: Sequence[str] = (), gpus_per_worker: float = 1.0
) -> DualPromptModel:
    """The configured backbone with dual prompts, frozen, on the configured device.

    Args:
        model_cfg: the ``model`` config section.
        class_names: one name per class, in label order.
        texts: for a tiny random ``bert`` only: the texts the run will tokenize, so that the
            offline word-level vocabulary covers them (unseen words become ``[UNK]``).
        gpus_per_worker: the worker's GPU share, for the free-memory check before placing
            the backbone on a GPU (``models/memory.py``).

    Raises:
        ModelError: unknown backbone, missing or broken weights, prompts deeper than the model,
            ``model.compile`` with a backbone other than ``bert`` or where torch.compile fails.
    """
    if model_cfg.backbone not in BUILDERS:
        raise ModelError(
            f"model.backbone {model_cfg.backbone!r} is not available in this version; "
            f"available: {', '.join(BACKBONES)}"
        )
    if model_cfg.compile:
        check_supported(model_cfg.backbone)
    device = resolve_device(model_cfg.device)
    model = _builder(model_cfg.backbone)(model_cfg, class_names, texts, torch.device("cpu"))
    check_device_memory(model, device, gpus_per_worker)
    model.place(device)
    if model_cfg.compile:
        model.use_compiled_layers()  # compiles on the device, once per process: the warm-up
    return model
