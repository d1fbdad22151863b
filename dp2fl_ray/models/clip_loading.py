"""The ``clip`` backbone: a real ``CLIPModel`` from local files, or a tiny random one.

Only ``models/loader.py`` names this module, and only when ``model.backbone`` is ``clip``:
a worker never imports the other backbones' libraries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, PreTrainedTokenizerBase

from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import DTYPES, TINY_BACKBONE_SEED, DualPromptModel, require_pretrained_weights
from dp2fl_ray.models.clip_maple import ClipMaple
from dp2fl_ray.models.tokenizer import BOS, EOS, PAD, SPECIAL_IDS, build_word_tokenizer

TINY_MAX_TOKENS = 77


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
    require_pretrained_weights(path, "the model there with CLIPModel.save_pretrained(path)")
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


def build_clip(model_cfg: Any, class_names: Sequence[str], texts: Sequence[str],
               device: torch.device) -> DualPromptModel:  # fmt: skip
    prompt = model_cfg.prompt
    if model_cfg.path is None:
        clip, tokenizer = build_tiny_clip(class_names, model_cfg.tiny, prompt.n_ctx, prompt.init)
    else:
        clip, tokenizer = load_clip(model_cfg.path)
    return ClipMaple(
        clip, tokenizer, class_names, prompt.n_ctx, prompt.depth, prompt.init, device, DTYPES[model_cfg.dtype]
    )
