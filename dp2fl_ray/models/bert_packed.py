"""The BERT encoder's layers run on packed tokens: padding never reaches a weight matrix.

CLINC150 utterances fill ~12 of 32 token slots, so a padded forward spends about half its
FLOPs on padding whose outputs nobody reads (pad keys are masked out of attention, pad
states out of the pooling). Here every row-wise piece of a layer (Q/K/V, attention
output, feed-forward, LayerNorm) runs on the packed rows ``(R, d)`` of the tokens that are
attended (text and prompt slots); only the attention itself sees the padded ``(N, T)``
layout, with the key-padding mask, so its per-sample arithmetic is what it was. The
maths is exactly the encoder's (an equivalence test checks it against transformers).

Results stay independent of the batch a sample shares (bit for bit on CPU): every GEMM
sees at least ``MIN_GEMM_ROWS`` rows (``rowwise``), attention is per sample over the
fixed length T, and gathers and scatters are exact.

Precision: with ``bfloat16`` the matrices are cast to bf16 ONCE here (autocast would cast
every frozen weight again on every call) and the GEMMs run in bf16 with float32
residuals, LayerNorms and attention (the CPU's bf16 flash-attention backward is several
times slower than float32's, and attention is a small share of the FLOPs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dp2fl_ray.models.base import rowwise


class PackedLayer(nn.Module):
    """One encoder layer's frozen weights, Q/K/V fused, in the compute dtype."""

    def __init__(self, layer: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        att = layer.attention.self
        self.heads, self.head_dim = int(att.num_attention_heads), int(att.attention_head_size)
        self.scaling = float(self.head_dim**-0.5)
        self.dtype = dtype
        qkv_w = torch.cat([att.query.weight, att.key.weight, att.value.weight])  # (3d, d)
        qkv_b = torch.cat([att.query.bias, att.key.bias, att.value.bias])  # (3d,)
        for name, tensor in (
            ("qkv_w", qkv_w), ("qkv_b", qkv_b),
            ("out_w", layer.attention.output.dense.weight), ("out_b", layer.attention.output.dense.bias),
            ("ffn_w", layer.intermediate.dense.weight), ("ffn_b", layer.intermediate.dense.bias),
            ("ffo_w", layer.output.dense.weight), ("ffo_b", layer.output.dense.bias),
        ):  # fmt: skip
            self.register_buffer(name, tensor.detach().to(dtype).contiguous(), persistent=False)
        self.ln1, self.ln2 = layer.attention.output.LayerNorm, layer.output.LayerNorm
        self.act = layer.intermediate.intermediate_act_fn

    def _linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return rowwise(lambda t: F.linear(t, w, b), x.to(self.dtype))  # (R, d_out) in the compute dtype

    def forward(self, h: torch.Tensor, rows: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """Packed states ``h (R, d)`` float32 -> ``(R, d)``; ``rows``: their flat positions in
        the padded ``(N, T)`` layout; ``attend (N, T)``: True where a token is attended."""
        n, t = attend.shape
        d = h.shape[1]
        qkv = self._linear(h, self.qkv_w, self.qkv_b).float()  # (R, 3d)
        padded = qkv.new_zeros(n * t, 3 * d).index_copy_(0, rows, qkv)  # (N*T, 3d); in place: no clone
        q, k, v = padded.view(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # (N, h, T, hd)
        with torch.autocast(device_type=h.device.type, enabled=False):
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=attend[:, None, None, :], scale=self.scaling)
        o = o.transpose(1, 2).reshape(n * t, d)[rows]  # (N, h, T, hd) -> (R, d)
        a = self.ln1(self._linear(o, self.out_w, self.out_b).float() + h)  # (R, d)
        inner = self.act(self._linear(a, self.ffn_w, self.ffn_b))  # (R, ffn)
        return self.ln2(self._linear(inner, self.ffo_w, self.ffo_b).float() + a)  # (R, d)


class PackedEncoder(nn.Module):
    """The encoder's layers over packed tokens, with deep prompts overwritten at layers 1..J-1."""

    def __init__(self, layers: Sequence[nn.Module], dtype: torch.dtype) -> None:
        super().__init__()
        self.layers = nn.ModuleList(PackedLayer(layer, dtype) for layer in layers)

    def forward(
        self, x: torch.Tensor, attend: torch.Tensor, prompts: torch.Tensor | None, start: int, depth: int
    ) -> torch.Tensor:
        """Padded input states ``x (N, T, d)`` -> last-layer states ``(N, T, d)`` (zeros where
        not attended). ``prompts (N, J, n, d)`` overwrite slots ``start .. start + n`` before
        each layer 1 <= j < ``depth`` (layer 0's are already in ``x``)."""
        n_samples, t, d = x.shape
        rows = attend.reshape(-1).nonzero().squeeze(1)  # (R,) flat positions of attended tokens
        h = x.reshape(n_samples * t, d)[rows]  # (R, d)
        slots = None
        if prompts is not None:
            n = prompts.shape[2]
            flat = (torch.arange(n_samples, device=x.device)[:, None] * t + start + torch.arange(n, device=x.device))
            # packed index of every prompt slot, sample-major: (N*n,)
            slots = torch.searchsorted(rows, flat.reshape(-1))
        for j, layer in enumerate(self.layers):
            if slots is not None and prompts is not None and 1 <= j < depth:
                h = h.index_copy(0, slots, prompts[:, j].reshape(-1, d).to(h.dtype))  # (R, d)
            h = layer(h, rows, attend)
        return h.new_zeros(n_samples * t, d).index_copy_(0, rows, h).view(n_samples, t, d)  # (N, T, d)
