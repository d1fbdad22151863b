"""Memory a worker may use: does its backbone fit the GPU, how much is left for a slice?

Ray's fractional GPUs (``runtime.gpus_per_worker: 0.5``) are bookkeeping, not isolation:
two workers on one card simply share its memory. So before a worker moves its backbone to
a GPU it checks the card's free memory and fails with the numbers instead of dying later
with an out-of-memory error mid-round. Once placed, the memory it may give one training
slice (``slice_budget_bytes``) is its share of what is still free, and the slice size
follows from a measured step (``engine/slice_memory.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from dp2fl_ray.errors import ModelError

GIB = 1024**3
MIB = 1024**2
# The part of a worker's share of free memory a slice may take: the rest is for evaluation
# chunks, the allocator's fragmentation and whatever else the node runs.
SLICE_SHARE = 0.5
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


def available_host_bytes() -> int:
    """Memory the OS can still give this process: ``MemAvailable``, capped by the cgroup's
    limit (a container's) when one is set."""
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    limit, usage = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    if limit.is_file() and usage.is_file() and limit.read_text().strip().isdigit():
        available = min(available, int(limit.read_text()) - int(usage.read_text()))
    return max(0, available)


def slice_budget_bytes(
    configured_mib: float, device: torch.device, cpus_per_worker: float, gpus_per_worker: float
) -> int:
    """Bytes one training slice may use on this worker: ``runtime.slice_memory_mib`` when set,
    else ``SLICE_SHARE`` of the worker's share of free memory (its GPU fraction of the card's
    free memory; on CPU its fraction of the node's CPUs times the node's available memory)."""
    if configured_mib > 0:
        return int(configured_mib * MIB)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(SLICE_SHARE * free * min(1.0, gpus_per_worker or 1.0))
    share = min(1.0, cpus_per_worker / max(1, os.cpu_count() or 1))
    return int(SLICE_SHARE * available_host_bytes() * share)


def clients_per_slice_limit(budget_bytes: int, per_client_bytes: int) -> int:
    """How many clients' training steps fit in ``budget_bytes``; raises ``ModelError`` with the
    numbers (and what to change) when not even one does."""
    fits = budget_bytes // max(1, per_client_bytes)
    if fits < 1:
        raise ModelError(
            f"one client's training step needs about {per_client_bytes / MIB:.1f} MiB (measured) but a slice "
            f"may use {budget_bytes / MIB:.1f} MiB on this worker; raise runtime.slice_memory_mib, lower "
            "train.batch_size, use model.dtype: bfloat16, or give each worker more memory"
        )
    return int(fits)
