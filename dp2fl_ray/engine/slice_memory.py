"""How much memory one more client adds to a training step: what sizes a worker's slices.

A slice of B clients trains in one forward and backward pass over B x ``batch_size``
samples, so its activation memory grows linearly in B while everything else (weights,
workspace) does not. The probe runs one real step with one client and one with two and
takes the difference, so fixed costs cancel:

- on CUDA, the difference of the allocator's peaks (``max_memory_allocated``): the true
  high-water mark of the step, transients included;
- on CPU, torch does not track allocations, so the probe counts the bytes autograd saves
  for the backward pass (``saved_tensors_hooks``), each storage once. Those live from the
  forward to the backward and are what grows with the slice; a layer's transients come
  and go and are of the order of one layer's share.

The probe uses the same code path as training (``client_losses_and_grads``), so a model
change is measured, not estimated.
"""

from __future__ import annotations

import torch

from dp2fl_ray.engine.batched import ActiveBatch, ClientData, client_losses_and_grads
from dp2fl_ray.models.base import DualPromptModel


def _probe_batch(client: ClientData, clients: int, batch_size: int, device: torch.device) -> ActiveBatch:
    """``clients`` copies of a full batch of ``client`` (its samples cycled to ``batch_size``)."""
    idx = torch.arange(batch_size) % len(client)
    inputs = torch.cat([client.inputs[idx]] * clients)
    labels = torch.cat([client.labels[idx]] * clients).to(device)
    sizes = torch.full((clients,), batch_size, device=device)
    owner = torch.repeat_interleave(torch.arange(clients, device=device), sizes)
    return ActiveBatch(torch.arange(clients, device=device), inputs, labels, owner, sizes)


def step_bytes(
    model: DualPromptModel,
    task: torch.Tensor,
    data: torch.Tensor,
    client: ClientData,
    clients: int,
    batch_size: int,
) -> int:
    """Memory of one training step of ``clients`` clients (see the module docstring for what
    is counted on each device). ``task``/``data``: one start row ``(Dt,)``/``(Dd,)``."""
    device = model.device
    params = [
        row.detach().to(device, torch.float32)[None].repeat(clients, 1).requires_grad_(True)
        for row in (task, data)
    ]
    batch = _probe_batch(client, clients, batch_size, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        client_losses_and_grads(model, params, batch)
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        client_losses_and_grads(model, params, batch)
    return total


def bytes_per_client(
    model: DualPromptModel, task: torch.Tensor, data: torch.Tensor, client: ClientData, batch_size: int
) -> int:
    """What one more client adds to a training step, in bytes (at least 1; 1 when ``client``
    has no samples to measure with)."""
    if len(client) == 0:
        return 1
    one = step_bytes(model, task, data, client, 1, batch_size)
    two = step_bytes(model, task, data, client, 2, batch_size)
    return max(1, two - one)
