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

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, PreTrainedModel, PreTrainedTokenizerBase

from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.bert_loading import build_tiny_bert, load_bert
from dp2fl_ray.models.bert_prompt import BertPrompt
from dp2fl_ray.models.clip_maple import ClipMaple
from dp2fl_ray.models.compiled import check_supported
from dp2fl_ray.models.memory import check_device_memory
from dp2fl_ray.models.tokenizer import BOS, EOS, PAD, SPECIAL_IDS, build_word_tokenizer
from dp2fl_ray.models.vit_prompt import ViTPrompt, build_tiny_vit, load_vit

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TINY_BACKBONE_SEED = 0
TINY_MAX_TOKENS = 77


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("model.device is 'cuda' but torch sees no GPU here; use 'auto' or 'cpu'")
    return torch.device(name)


def build_tiny_clip(
    class_names: Sequence[str], tiny: Any, n_ctx: int, init_text: str
) -> tuple[CLIPModel, PreTrainedTokenizerBase]:
    """A small random CLIP plus an offline tokenizer covering the class names.

    ``initializer_factor`` is raised (config default 3): with CLIP's default init every
    image of a tiny random model gets nearly the same embedding and prompts cannot learn.
    """
    texts = [init_text, " ".join(["X"] * n_ctx)] + [f"{name}." for name in class_names]
    tokenizer = build_word_tokenizer(texts, TINY_MAX_TOKENS)
    common = {
        "hidden_size": tiny.hidden,
        "intermediate_size": 4 * tiny.hidden,
        "num_hidden_layers": tiny.layers,
        "num_attention_heads": tiny.heads,
        "initializer_factor": tiny.initializer_factor,  # each sub-model reads its own config's factor
    }
    config = CLIPConfig(
        text_config=dict(
            common,
            vocab_size=len(tokenizer.get_vocab()),
            max_position_embeddings=TINY_MAX_TOKENS,
            bos_token_id=SPECIAL_IDS[BOS],
            eos_token_id=SPECIAL_IDS[EOS],
            pad_token_id=SPECIAL_IDS[PAD],
        ),
        vision_config=dict(common, image_size=tiny.image_size, patch_size=tiny.patch_size),
        projection_dim=tiny.projection,
        initializer_factor=tiny.initializer_factor,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_BACKBONE_SEED)
        clip = CLIPModel(config)
    return clip, tokenizer


def load_clip(path: str) -> tuple[CLIPModel, PreTrainedTokenizerBase]:
    """``CLIPModel`` and its tokenizer from a directory written by ``save_pretrained``."""
    if os.path.isdir(path) and not any(f.endswith((".safetensors", ".bin")) for f in os.listdir(path)):
        raise ModelError(
            f"model.path {path!r} has no weights (*.safetensors or *.bin); save the model "
            "there with CLIPModel.save_pretrained(path)"
        )
    try:
        clip = CLIPModel.from_pretrained(path, attn_implementation="sdpa")
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load a CLIP model from model.path {path!r}: {exc}. Point model.path at a "
            "directory written by CLIPModel.save_pretrained and tokenizer.save_pretrained "
            "(no network is used at run time)"
        ) from exc
    return clip, tokenizer


def _build_clip(model_cfg: Any, class_names: Sequence[str], texts: Sequence[str],
                device: torch.device) -> DualPromptModel:  # fmt: skip
    prompt = model_cfg.prompt
    if model_cfg.path is None:
        clip, tokenizer = build_tiny_clip(class_names, model_cfg.tiny, prompt.n_ctx, prompt.init)
    else:
        clip, tokenizer = load_clip(model_cfg.path)
    return ClipMaple(
        clip, tokenizer, class_names, prompt.n_ctx, prompt.depth, prompt.init, device, DTYPES[model_cfg.dtype]
    )


def _build_vit(model_cfg: Any, class_names: Sequence[str], texts: Sequence[str],
               device: torch.device) -> DualPromptModel:  # fmt: skip
    if model_cfg.path is None:
        vit = build_tiny_vit(model_cfg.name, model_cfg.tiny, TINY_BACKBONE_SEED)
    else:
        vit = load_vit(model_cfg.name, model_cfg.path)
    prompt = model_cfg.prompt
    return ViTPrompt(vit, len(class_names), prompt.n_ctx, prompt.depth, device, DTYPES[model_cfg.dtype])


def _build_bert(model_cfg: Any, class_names: Sequence[str], texts: Sequence[str],
                device: torch.device) -> DualPromptModel:  # fmt: skip
    prompt = model_cfg.prompt
    bert: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    if model_cfg.path is None:
        vocab_texts = [*texts, *(name.replace("_", " ") for name in class_names), prompt.init]
        tiny = model_cfg.tiny
        bert, tokenizer = build_tiny_bert(vocab_texts, tiny, model_cfg.max_length, TINY_BACKBONE_SEED)
    else:
        bert, tokenizer = load_bert(model_cfg.path)
    return BertPrompt(
        bert, tokenizer, class_names, prompt.n_ctx, prompt.depth, prompt.init, model_cfg.max_length, device,
        DTYPES[model_cfg.dtype],
    )  # fmt: skip


_Builder = Callable[[Any, Sequence[str], Sequence[str], torch.device], DualPromptModel]
BUILDERS: dict[str, _Builder] = {"clip": _build_clip, "vit": _build_vit, "bert": _build_bert}
BACKBONES = tuple(BUILDERS)


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
    builder = BUILDERS.get(model_cfg.backbone)
    if builder is None:
        raise ModelError(
            f"model.backbone {model_cfg.backbone!r} is not available in this version; "
            f"available: {', '.join(BACKBONES)}"
        )
    if model_cfg.compile:
        check_supported(model_cfg.backbone)
    device = resolve_device(model_cfg.device)
    model = builder(model_cfg, class_names, texts, torch.device("cpu"))
    check_device_memory(model, device, gpus_per_worker)
    model.place(device)
    if model_cfg.compile and isinstance(model, BertPrompt):
        model.use_compiled_layers()  # compiles on the device, once per process: the warm-up
    return model
