"""Pieces the ViT and BERT dual-prompt models share (ALGORITHM.md section 1, [ours] rows).

Both keep deep prompt tokens plus a linear head in the task prompt and per-layer coupling
functions ``F_j: Linear(d -> d)`` in the data prompt. The head travels to ``logits`` as the
class side of the classifier: its weight rows with the bias appended, ``(M, C, d + 1)``, so
one product with ``[features, 1]`` gives ``W f + b`` for every sample's own model.

Results here never depend on the batch a sample shares (bit for bit on CPU): a cohort cut
into slices differently must give the same numbers (DESIGN.md, Determinism).
"""

from __future__ import annotations

import torch

from dp2fl_ray.models.base import MIN_GEMM_ROWS
from dp2fl_ray.models.layout import PromptLayout


def deep_prompt_layouts(
    depth: int, n_ctx: int, dim: int, num_classes: int
) -> tuple[PromptLayout, PromptLayout]:
    """Task layout (prompt tokens + head) and data layout (couplings) for width ``dim``."""
    task = PromptLayout(
        (("prompts", (depth, n_ctx, dim)), ("head_weight", (num_classes, dim)), ("head_bias", (num_classes,)))
    )
    data = PromptLayout((("couple_weight", (depth, dim, dim)), ("couple_bias", (depth, dim))))
    return task, data


def identity_coupling(layout: PromptLayout) -> torch.Tensor:
    """The flat data prompt whose every ``F_j`` is the identity (weight I, bias 0): ``(Dd,)``."""
    (_, (depth, dim, _)), _ = layout.entries
    weight = torch.eye(dim).expand(depth, dim, dim)  # (J, d, d)
    return layout.flatten({"couple_weight": weight, "couple_bias": torch.zeros(depth, dim)})


def coupled_prompts(
    task_layout: PromptLayout, data_layout: PromptLayout, task: torch.Tensor, data: torch.Tensor
) -> torch.Tensor:
    """``F_j(P_j)`` for every model row and layer: ``(M, J, n_ctx, d)``."""
    tokens = task_layout.unflatten(task)["prompts"]  # (M, J, n, d)
    parts = data_layout.unflatten(data)
    weight, bias = parts["couple_weight"], parts["couple_bias"]  # (M, J, d, d) as (out, in), (M, J, d)
    # One fixed-shape product per model row, not one (M*J)-batched product: CPU kernels round
    # differently for other batch sizes, and a client's prompts must not depend on its slice.
    # (The clones give every product freshly aligned memory: MKL rounds by alignment too.)
    rows = [torch.matmul(tokens[m].clone(), weight[m].clone().transpose(-1, -2)) for m in range(len(tokens))]
    return torch.stack(rows) + bias.unsqueeze(2)  # (M, J, n, d)


def head_class_features(task_layout: PromptLayout, task: torch.Tensor) -> torch.Tensor:
    """The head of each model row as class features: weight rows with the bias appended, ``(M, C, d + 1)``."""
    parts = task_layout.unflatten(task)
    return torch.cat([parts["head_weight"], parts["head_bias"].unsqueeze(-1)], dim=-1)  # (M, C, d + 1)


def head_logits(features: torch.Tensor, class_feats: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """``W_k f_n + b_k``, k = ``owner[n]``: features ``(N, d)``, class_feats ``(M, C, d+1)`` -> ``(N, C)``."""
    ones = torch.ones(features.shape[0], 1, device=features.device)
    x = torch.cat([features.float(), ones], dim=-1)  # (N, d + 1)
    # A product and a sum, not bmm: bmm rounds by batch size and alignment, and a sample's
    # logits must not depend on the batch it shares.
    return (class_feats[owner].float() * x.unsqueeze(1)).sum(dim=-1)  # (N, C, d+1) * (N, 1, d+1) -> (N, C)


def replace_prompt_tokens(x: torch.Tensor, prompts: torch.Tensor, start: int, insert: bool) -> torch.Tensor:
    """Put ``prompts (N, n, d)`` at token positions ``start .. start + n`` of ``x (N, T, d)``.

    ``insert`` adds them there (the input layer, ``(N, T + n, d)``); otherwise they overwrite
    the prompt slots the previous layer produced (``(N, T, d)``).
    """
    n = prompts.shape[1]
    rest = x[:, start:] if insert else x[:, start + n :]
    return torch.cat([x[:, :start], prompts.to(x.dtype), rest], dim=1)  # (N, T [+ n], d)


def pad_samples(x: torch.Tensor, tokens_per_sample: int) -> torch.Tensor:
    """Repeat sample 0 until the backbone's linear layers see at least ``MIN_GEMM_ROWS`` token rows.

    CPU GEMM kernels take another code path (and round differently) for a handful of rows,
    so a lone sample would not match the same sample in a bigger batch. Only tiny batches of
    tiny models are padded; callers keep the first ``len(x)`` outputs.
    """
    missing = -(-MIN_GEMM_ROWS // tokens_per_sample) - x.shape[0]
    if missing <= 0:
        return x
    return torch.cat([x, x[:1].expand(missing, *x.shape[1:])])  # (N + missing, ...)
