"""``model.compile: true``: torch.compile of the packed BERT layers' row-wise pieces.

Why only pieces: compiling a whole ``PackedLayer.forward`` puts the Python loop over the
attention buckets (``AttentionLayout.groups``) into the graph; their number changes from
batch to batch, so every new combination is a new graph, grad mode hits dynamo's
recompile limit and the run ends up slower than eager. The pieces compiled here are pure
functions over packed rows ``(R, d)`` whose only varying size is R (marked dynamic), so
each compiles once per autograd mode and then serves every batch and every layer:

- ``project_rows``: a Linear on packed rows, in the compute dtype, returned as float32
  (the fused Q/K/V projection, and the K/V-only projection of prompt slots);
- ``layer_tail``: attention output + residual + LayerNorm + feed-forward + residual +
  LayerNorm, the part of a layer after attention.

The bucketed attention stays eager. Inductor fuses the bias, casts, residual adds,
LayerNorms and the activation around the GEMMs (which stay library calls), so the gain is
bounded by the non-GEMM share: on MiniLM, one CPU thread, cross-evaluation ran ~6-18%
faster and training no faster (``results/benchmarks/compile_minilm.md``).

Contract:
- compile off: nothing here runs; results are bit for bit what they were.
- compile on: the same maths in the same dtypes, rounded differently where inductor fuses
  (measured on the tiny test BERT: ~4e-6 on logits of magnitude ~20 and ~1e-7 on prompt
  gradients, float32 and bfloat16 alike; the tests allow 1e-5 and 1e-3 relative). Results
  stay independent of the batch a sample shares (tested bit for bit): every row is
  computed alone and every GEMM still sees at least ``MIN_GEMM_ROWS`` rows.
- the compile cost (25-35 s for MiniLM on CPU with a cold inductor cache, ~5 s warm) is paid
  at ``build_model`` by a warm-up of every autograd mode the engine uses (training,
  ``no_grad``, ``inference_mode``), so no round compiles and a worker reports a broken
  compiler when it starts, not in the middle of a round.
- only the ``bert`` backbone; ``clip`` and ``vit`` raise ``ModelError`` (``check_supported``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import GELUActivation

from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import MIN_GEMM_ROWS

COMPILE_BACKBONES = ("bert",)  # backbones model.compile supports
# Graphs per compiled piece in one process: 3 autograd modes (grad, no_grad, inference) x
# dtypes x model sizes. Above dynamo's default limit (8) a piece would silently fall back to
# eager (e.g. tests building several models); the calls below raise it for these two only.
RECOMPILE_LIMIT = 64

Activation = Callable[[torch.Tensor], torch.Tensor]


def project_rows(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Rows ``x (R, d)`` -> ``F.linear`` in ``dtype`` -> float32 ``(R, d_out)``."""
    return F.linear(x.to(dtype), w, b).float()


def layer_tail(
    o: torch.Tensor,
    h: torch.Tensor,
    weights: tuple[torch.Tensor, ...],
    eps: tuple[float, float],
    act: Activation,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Attention output ``o (R, d)`` and the layer's input ``h (R, d)`` float32 -> next states.

    ``weights``: out_w, out_b, ln1_w, ln1_b, ffn_w, ffn_b, ffo_w, ffo_b, ln2_w, ln2_b (the
    GEMM matrices in ``dtype``, the LayerNorms' in float32); the maths of ``PackedLayer``.
    """
    out_w, out_b, ln1_w, ln1_b, ffn_w, ffn_b, ffo_w, ffo_b, ln2_w, ln2_b = weights
    d = h.shape[1]
    a = F.layer_norm(F.linear(o.to(dtype), out_w, out_b).float() + h, (d,), ln1_w, ln1_b, eps[0])  # (R, d)
    inner = act(F.linear(a.to(dtype), ffn_w, ffn_b))  # (R, ffn) in dtype
    return F.layer_norm(F.linear(inner, ffo_w, ffo_b).float() + a, (d,), ln2_w, ln2_b, eps[1])  # (R, d)


@functools.cache
def _compiled(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``torch.compile(fn)``, made on first use: calling ``torch.compile`` imports inductor
    (about a CPU-second), which a process that never compiles should not pay at import."""
    return cast(Callable[..., torch.Tensor], torch.compile(fn))


def _pad_rows(x: torch.Tensor) -> torch.Tensor:
    """At least ``MIN_GEMM_ROWS`` rows (zeros appended), R marked dynamic: one graph for all R."""
    if x.shape[0] < MIN_GEMM_ROWS:
        x = torch.cat([x, x.new_zeros(MIN_GEMM_ROWS - x.shape[0], *x.shape[1:])])  # (MIN_GEMM_ROWS, d)
    torch._dynamo.maybe_mark_dynamic(x, 0)
    return x


def compiled_projection(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """``project_rows`` compiled, on ``x (R, d)`` padded to ``MIN_GEMM_ROWS`` rows -> ``(R, d_out)``."""
    torch._dynamo.maybe_mark_dynamic(w, 0)  # Q/K/V (3d, d) and K/V-only (2d, d): one graph
    torch._dynamo.maybe_mark_dynamic(b, 0)
    with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
        return _compiled(project_rows)(_pad_rows(x), w, b, dtype)[: x.shape[0]]


def compiled_tail(
    o: torch.Tensor,
    h: torch.Tensor,
    weights: tuple[torch.Tensor, ...],
    eps: tuple[float, float],
    act: Activation,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``layer_tail`` compiled, on rows padded to ``MIN_GEMM_ROWS`` -> ``(R, d)``."""
    with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
        return _compiled(layer_tail)(_pad_rows(o), _pad_rows(h), weights, eps, act, dtype)[: h.shape[0]]


def pure_activation(act: nn.Module | Activation) -> Activation:
    """The plain function behind a transformers activation module, when there is one.

    Every layer holds its own activation instance and dynamo guards on the callable's
    identity, so passing the instances would compile the tail once per layer; exact GELU
    (what BERT and MiniLM use) maps to ``F.gelu``. Others pass through unchanged (correct,
    one graph per layer).
    """
    if isinstance(act, GELUActivation) and act.act is F.gelu:
        return F.gelu
    if isinstance(act, nn.GELU) and act.approximate == "none":
        return F.gelu
    return act


def check_supported(backbone: str) -> None:
    """Fail fast when ``model.compile`` is asked of a backbone it does not cover."""
    if backbone not in COMPILE_BACKBONES:
        raise ModelError(
            f"model.compile: true is supported for model.backbone {', '.join(COMPILE_BACKBONES)} only, "
            f"got {backbone!r}; set model.compile: false for this backbone"
        )


def warm_up(run: Callable[[], Any], device: torch.device) -> None:
    """Run ``run`` (the warm-up passes) and turn any compile failure into an actionable error.

    Inductor needs a working C++ compiler on CPU (Triton on CUDA); without one the first
    compiled call fails deep inside torch. Doing it here makes a worker fail when it is
    built, with a message saying what to install or which setting to turn off.
    """
    try:
        run()
    except Exception as exc:  # any compile failure calls for the same fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelError(
            f"model.compile: true but torch.compile failed while warming up the backbone on {device}: "
            f"{type(exc).__name__}: {first[:300]}. Inductor needs a C++ compiler on CPU (install g++, or "
            "point the CXX environment variable at one) and Triton on CUDA; or set model.compile: false"
        ) from exc
