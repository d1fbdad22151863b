"""An offline word-level tokenizer for tiny random CLIP models.

CLIP's BPE tokenizer files come from the hub; a smoke run or a test cannot fetch them.
This builds a ``tokenizers`` WordLevel model over the words of the prompt template, the
context init text and the class names, wrapped in ``PreTrainedTokenizerFast`` so that it
saves with ``save_pretrained`` and reloads with ``AutoTokenizer.from_pretrained`` offline,
through the same code path as a real checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>"
# Id 2 is deliberately not the EOS token: HF CLIP pools at argmax(input_ids) when
# eos_token_id == 2, which would pick the wrong position with a small vocabulary.
SPECIAL_IDS = {PAD: 0, UNK: 1, BOS: 3, EOS: 4}
_WORD = re.compile(r"\w+|[^\w\s]+")


def build_word_tokenizer(texts: Iterable[str], max_length: int) -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer covering every word of ``texts``.

    Args:
        texts: every text the model will ever tokenize (template, init text, class names).
        max_length: padded sequence length (including start and end tokens).
    """
    vocab = dict(SPECIAL_IDS)
    vocab["x"] = 2  # the context placeholder; never an EOS
    for text in texts:
        for word in _WORD.findall(text.lower()):
            if word not in vocab:
                vocab[word] = max(vocab.values()) + 1
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, SPECIAL_IDS[BOS]), (EOS, SPECIAL_IDS[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=max_length,
    )
