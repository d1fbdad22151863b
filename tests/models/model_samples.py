"""Inputs shared by the model tests (a plain module: ``tests/models`` is on ``sys.path``)."""

from __future__ import annotations

import torch

from dp2fl_ray.models.base import DualPromptModel

# Four intents, two utterances each: a tiny random BERT's vocabulary is built from TEXTS.
NAMES = ["weather", "alarm", "play_music", "book_flight"]
TEXTS = [
    "will it rain tomorrow",
    "is it sunny in paris",
    "wake me up at seven",
    "set an alarm for noon",
    "put on some jazz",
    "play my running playlist",
    "get me a plane ticket to rome",
    "book a flight home",
]
LABELS = [0, 0, 1, 1, 2, 2, 3, 3]


def prompt_rows(model: DualPromptModel, m: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` task and data prompt rows near ``model``'s initial prompts, drawn with ``seed``."""
    task, data = model.initial_prompts(0)
    gen = torch.Generator().manual_seed(seed)
    return (
        task + 0.05 * torch.randn(m, task.shape[0], generator=gen),
        data + 0.05 * torch.randn(m, data.shape[0], generator=gen),
    )
