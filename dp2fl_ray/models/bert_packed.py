"""The BERT encoder's layers run on packed tokens: padding and dead prompt states never
reach a weight matrix.

CLINC150 utterances fill ~12 of 32 token slots, so a padded forward spends about half its
FLOPs on padding whose outputs nobody reads (pad keys are masked out of attention, pad
states out of the pooling). Here every row-wise piece of a layer (Q/K/V, attention
output, feed-forward, LayerNorm) runs on the packed rows ``(R, d)`` of the tokens that are
attended. Attention, too, sees little padding: each sample's attended tokens (text and
prompt slots, in order) are laid out at the front of a row block of its own length rounded
up to a multiple of ``ATTENTION_BUCKET``, samples with equal block length are attended in
one call, and the block's tail is masked. A sample's block depends on that sample alone.

Prompt slots are cheaper still. Their states after layer j are read by nobody when layer
j + 1 overwrites them with fresh prompts (1 <= j + 1 < depth) or when j is the last layer
(features pool text tokens only). At such a layer the prompt slots serve only as keys and
values: they get the K/V projection (2d^2 per token instead of 12d^2) and skip the query,
the attention output and the feed-forward. With MiniLM (6 layers), depth 3 and 8 prompt
tokens that removes ~17% of the FLOPs of a forward and backward; at full depth ~30%. The
text tokens' arithmetic is unchanged, so the maths is exactly the encoder's (tests compare
against the padded transformers layers, with prompts, forward and backward).

Results stay independent of the batch a sample shares (bit for bit on CPU): every GEMM
sees at least ``MIN_GEMM_ROWS`` rows (``rowwise``), attention is per sample over a
length that is a function of the sample, and gathers and scatters are exact.

Precision: with ``bfloat16`` the matrices are cast to bf16 ONCE here (autocast would cast
every frozen weight again on every call) and the GEMMs run in bf16 with float32
residuals, LayerNorms and attention (the CPU's bf16 flash-attention backward is several
times slower than float32's, and attention is a small share of the FLOPs).

``model.compile: true`` runs the Q/K/V projection and the post-attention tail of every layer
through torch.compile (``compiled.py``); the bucketed attention loop stays eager.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from dp2fl_ray.models.base import rowwise
from dp2fl_ray.models.compiled import compiled_projection, compiled_tail, pure_activation

ATTENTION_BUCKET = 8  # a sample's attention block: its attended tokens, rounded up to a multiple of this


@dataclass(frozen=True)
class AttentionLayout:
    """Where each attended token sits in the attention buffer, and the buffer's blocks.

    ``groups``: (first buffer row, samples, block length, key mask ``(samples, length)``)
    for each block length present, in buffer order; sample blocks are contiguous.
    """

    rows: int
    groups: tuple[tuple[int, int, int, torch.Tensor], ...]

    @staticmethod
    def build(attend: torch.Tensor) -> tuple[AttentionLayout, torch.Tensor]:
        """The layout for ``attend (N, T)``, and each padded position's buffer row ``(N*T,)``
        (meaningful where ``attend`` is True)."""
        n = attend.shape[0]
        lengths = attend.sum(dim=1)  # (N,)
        block = (lengths + ATTENTION_BUCKET - 1).div(ATTENTION_BUCKET, rounding_mode="floor").clamp(
            min=1
        ) * ATTENTION_BUCKET
        order = torch.argsort(
            block * n + torch.arange(n, device=attend.device)
        )  # by block length, then sample
        sizes = block[order]  # (N,) in buffer order
        start = torch.cumsum(sizes, 0) - sizes
        base = torch.empty_like(start).index_copy_(0, order, start)  # (N,) first buffer row of each sample
        dest = base[:, None] + torch.cumsum(attend.long(), dim=1) - 1  # (N, T)
        groups, first, lo = [], 0, 0
        for length, count in zip(*(t.tolist() for t in torch.unique_consecutive(sizes, return_counts=True))):
            members = order[lo : lo + count]
            keys = (
                torch.arange(length, device=attend.device)[None, :] < lengths[members][:, None]
            )  # (count, length)
            groups.append((first, count, length, keys))
            first, lo = first + count * length, lo + count
        return AttentionLayout(first, tuple(groups)), dest.reshape(-1)


class _SelfAttention(Protocol):
    num_attention_heads: int
    attention_head_size: int
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear


class _DenseNorm(Protocol):
    dense: nn.Linear
    LayerNorm: nn.LayerNorm


class _Attention(Protocol):
    self: _SelfAttention
    output: _DenseNorm


class _Intermediate(Protocol):
    dense: nn.Linear
    intermediate_act_fn: nn.Module | Callable[[torch.Tensor], torch.Tensor]


class _EncoderLayer(Protocol):
    """What ``PackedLayer`` reads of a transformers BERT encoder layer (``BertLayer``)."""

    attention: _Attention
    intermediate: _Intermediate
    output: _DenseNorm


class PackedLayer(nn.Module):
    """One encoder layer's frozen weights, Q/K/V fused, in the compute dtype."""

    qkv_w: torch.Tensor  # buffers, registered in __init__
    qkv_b: torch.Tensor
    out_w: torch.Tensor
    out_b: torch.Tensor
    ffn_w: torch.Tensor
    ffn_b: torch.Tensor
    ffo_w: torch.Tensor
    ffo_b: torch.Tensor
    ln1: nn.LayerNorm
    ln2: nn.LayerNorm
    act: nn.Module | Callable[[torch.Tensor], torch.Tensor]

    def __init__(self, layer: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        src = cast(_EncoderLayer, layer)
        att = src.attention.self
        self.heads, self.head_dim = int(att.num_attention_heads), int(att.attention_head_size)
        self.scaling = float(self.head_dim**-0.5)
        self.dtype = dtype
        qkv_w = torch.cat([att.query.weight, att.key.weight, att.value.weight])  # (3d, d)
        qkv_b = torch.cat([att.query.bias, att.key.bias, att.value.bias])  # (3d,)
        for name, tensor in (
            ("qkv_w", qkv_w), ("qkv_b", qkv_b),
            ("out_w", src.attention.output.dense.weight), ("out_b", src.attention.output.dense.bias),
            ("ffn_w", src.intermediate.dense.weight), ("ffn_b", src.intermediate.dense.bias),
            ("ffo_w", src.output.dense.weight), ("ffo_b", src.output.dense.bias),
        ):  # fmt: skip
            self.register_buffer(name, tensor.detach().to(dtype).contiguous(), persistent=False)
        self.ln1, self.ln2 = src.attention.output.LayerNorm, src.output.LayerNorm
        self.act = src.intermediate.intermediate_act_fn
        self.pure_act = pure_activation(self.act)  # the same function, one compiled graph for all layers
        self.compiled = False  # model.compile: the row-wise pieces run torch.compile'd (compiled.py)

    def _linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return rowwise(lambda t: F.linear(t, w, b), x.to(self.dtype))  # (R, d_out) in the compute dtype

    def _project(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``x (R, d)`` -> ``(R, d_out)`` float32: the Q/K/V (or K/V-only) projection."""
        if self.compiled:
            return compiled_projection(x, w, b, self.dtype)
        return self._linear(x, w, b).float()

    def _tail(self, o: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Attention output ``o (R, d)`` and layer input ``h (R, d)`` -> the layer's output ``(R, d)``."""
        if self.compiled:
            weights = (
                self.out_w, self.out_b, self.ln1.weight, self.ln1.bias, self.ffn_w, self.ffn_b,
                self.ffo_w, self.ffo_b, self.ln2.weight, self.ln2.bias,
            )  # fmt: skip
            eps = (float(self.ln1.eps), float(self.ln2.eps))
            return compiled_tail(o, h, weights, eps, self.pure_act, self.dtype)
        a = self.ln1(self._linear(o, self.out_w, self.out_b).float() + h)  # (R, d)
        inner = self.act(self._linear(a, self.ffn_w, self.ffn_b))  # (R, ffn)
        return self.ln2(self._linear(inner, self.ffo_w, self.ffo_b).float() + a)  # (R, d)

    def forward(
        self,
        h: torch.Tensor,
        rows: torch.Tensor,
        layout: AttentionLayout,
        kv: torch.Tensor | None = None,
        kv_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """States ``h (R, d)`` float32 of the tokens at ``rows`` of the attention buffer ->
        their next states ``(R, d)``. ``kv (P, d)`` at ``kv_rows``: more tokens that are only
        attended to (their own next states are not computed)."""
        d = h.shape[1]
        qkv = self._project(h, self.qkv_w, self.qkv_b)  # (R, 3d)
        at = rows
        if kv is not None and kv_rows is not None:
            kv_only = self._project(kv, self.qkv_w[d:], self.qkv_b[d:])  # (P, 2d): no query
            qkv = torch.cat([qkv, F.pad(kv_only, (d, 0))])  # (R + P, 3d), zero queries for the K/V-only rows
            at = torch.cat([rows, kv_rows])
        buffer = qkv.new_zeros(layout.rows, 3 * d).index_copy_(0, at, qkv)  # in place: no clone
        blocks = []
        for first, count, length, keys in layout.groups:
            part = buffer[first : first + count * length].view(count, length, 3, self.heads, self.head_dim)
            q, k, v = part.permute(2, 0, 3, 1, 4).unbind(0)  # (count, h, length, hd)
            with torch.autocast(device_type=h.device.type, enabled=False):
                o = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=keys[:, None, None, :], scale=self.scaling
                )
            blocks.append(o.transpose(1, 2).reshape(count * length, d))
        o = torch.cat(blocks)[rows] if len(blocks) > 1 else blocks[0][rows]  # (R, d)
        return self._tail(o, h)  # (R, d)


class PackedEncoder(nn.Module):
    """The encoder's layers over packed tokens, with deep prompts overwritten at layers 1..J-1."""

    def __init__(self, layers: Sequence[nn.Module], dtype: torch.dtype) -> None:
        super().__init__()
        self.layers = nn.ModuleList(PackedLayer(layer, dtype) for layer in layers)

    def use_compiled(self, on: bool = True) -> None:
        """Run every layer's row-wise pieces torch.compile'd (``model.compile``; ``compiled.py``)."""
        for layer in self.layers:
            cast(PackedLayer, layer).compiled = on

    def prompt_states_read(self, j: int, depth: int) -> bool:
        """Whether anybody reads the prompt slots' states after layer ``j``: only when layer
        j + 1 exists and does not overwrite them with its own prompts."""
        return j + 1 < len(self.layers) and j + 1 >= depth

    def forward(
        self, x: torch.Tensor, attend: torch.Tensor, prompts: torch.Tensor | None, start: int, depth: int
    ) -> torch.Tensor:
        """Padded input states ``x (N, T, d)`` -> last-layer states ``(N, T, d)``: zeros
        where not attended and at the prompt slots (their last states are never computed).

        ``prompts (N, J, n, d)`` fill slots ``start .. start + n`` before each layer
        ``j < depth`` (layer 0's are already in ``x`` and must equal ``prompts[:, 0]``)."""
        n_samples, t, d = x.shape
        flat = x.reshape(n_samples * t, d)
        text = attend
        slots = torch.zeros(0, dtype=torch.long, device=x.device)
        if prompts is not None:
            n = prompts.shape[2]
            text = attend.clone()
            text[:, start : start + n] = False
            # flat position of every prompt slot, sample-major: (N*n,),
            # the order of prompts[:, j].reshape(-1, d)
            slots = (
                torch.arange(n_samples, device=x.device)[:, None] * t
                + start
                + torch.arange(n, device=x.device)
            ).reshape(-1)
        rows = text.reshape(-1).nonzero().squeeze(1)  # (R,) flat positions of attended text tokens
        h = flat[rows]  # (R, d)
        p = flat[slots]  # (N*n, d): prompt-slot states
        layout, dest = AttentionLayout.build(attend)
        at_text, at_slots = dest[rows], dest[slots]  # their rows in the attention buffer
        for j, layer in enumerate(self.layers):
            if prompts is None:
                h = layer(h, at_text, layout)
                continue
            if 1 <= j < depth:
                p = prompts[:, j].reshape(-1, d).to(h.dtype)  # (N*n, d)
            if self.prompt_states_read(j, depth):
                both = layer(torch.cat([h, p]), torch.cat([at_text, at_slots]), layout)  # (R + N*n, d)
                h, p = both[: len(rows)], both[len(rows) :]
            else:
                h = layer(h, at_text, layout, kv=p, kv_rows=at_slots)
        return h.new_zeros(n_samples * t, d).index_copy_(0, rows, h).view(n_samples, t, d)  # (N, T, d)
