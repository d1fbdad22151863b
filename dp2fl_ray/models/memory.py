"""Does a backbone fit the GPU it is about to be placed on?

Ray's fractional GPUs (``runtime.gpus_per_worker: 0.5``) are bookkeeping, not isolation:
two workers on one card simply share its memory. So before a worker moves its backbone to
a GPU it checks the card's free memory and fails with the numbers instead of dying later
with an out-of-memory error mid-round.
"""

from __future__ import annotations

import torch
from torch import nn

from dp2fl_ray.errors import ModelError

GIB = 1024**3
# Weights plus the slice's activations, workspace and allocator slack, as a multiple of the
# weights: prompts train through the whole frozen network, so activations of a slice are
# of the order of the weights for the backbones and slice sizes here.
HEADROOM = 2.0


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def check_gpu_fits(free_bytes: int, backbone_bytes: int, workers_per_gpu: int) -> None:
    """Raise ``ModelError`` with the numbers when ``workers_per_gpu`` backbones (and their
    slices, ``HEADROOM`` x the weights) cannot fit in ``free_bytes``."""
    need = HEADROOM * backbone_bytes
    if need > free_bytes:
        raise ModelError(
            f"the backbone needs about {need / GIB:.2f} GiB on the GPU ({backbone_bytes / GIB:.2f} GiB of "
            f"weights x {HEADROOM:g} for activations and workspace) but only {free_bytes / GIB:.2f} GiB "
            f"is free with {workers_per_gpu} worker(s) per GPU; use fewer workers per GPU "
            "(raise runtime.gpus_per_worker), lower runtime.clients_per_slice, or model.dtype: bfloat16"
        )


def check_device_memory(model: nn.Module, device: torch.device, gpus_per_worker: float) -> None:
    """The check above for a model still on the CPU about to move to ``device``."""
    if device.type != "cuda":
        return
    free, _ = torch.cuda.mem_get_info(device)
    workers = max(1, int(1 / gpus_per_worker)) if gpus_per_worker > 0 else 1
    check_gpu_fits(free, module_bytes(model), workers)
