"""pFedMe's local update (Dinh et al., 2020) on prompts, batched like ``train_clients``.

Each client keeps a local copy ``w`` of the global prompts and a personalised copy
``theta``. On every batch, ``theta`` takes ``inner_steps`` gradient steps on
``f(theta) + lam/2 ||theta - w||^2`` (the Moreau envelope's inner problem); then ``w`` moves
towards ``theta``: ``w <- w - lr * lam * (w - theta)``. The server mixes the clients' ``w``
into the global prompts; ``theta`` is the client's personalised model. Both learning rates
are ``train.lr`` (pFedMe's personal and local rates are one knob here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dp2fl_ray.engine.batched import (
    ClientData,
    LocalTraining,
    active_batch,
    client_batches,
    client_losses_and_grads,
)
from dp2fl_ray.models.base import DualPromptModel


@dataclass(frozen=True)
class PFedMeOutput:
    """Local copies ``w`` (sent to the server) and personalised ``theta`` rows per client."""

    local_task: torch.Tensor  # (B, Dt)
    local_data: torch.Tensor  # (B, Dd)
    personal_task: torch.Tensor  # (B, Dt)
    personal_data: torch.Tensor  # (B, Dd)
    mean_loss: torch.Tensor  # (B,) loss of theta at the start of each batch, averaged
    steps: torch.Tensor  # (B,)


def train_clients_pfedme(
    model: DualPromptModel,
    task: torch.Tensor,
    data: torch.Tensor,
    clients: Sequence[ClientData],
    hp: LocalTraining,
    seeds: Sequence[int],
    lam: float,
    inner_steps: int,
) -> PFedMeOutput:
    """pFedMe local rounds for B clients at once, from start rows ``(B, Dt)``, ``(B, Dd)``."""
    b = len(clients)
    device = model.device
    local = [task.detach().to(device, torch.float32).clone(), data.detach().to(device, torch.float32).clone()]
    theta = [p.clone().requires_grad_(True) for p in local]
    plans = [client_batches(len(c), hp, s) for c, s in zip(clients, seeds)]
    steps = torch.tensor([len(p) for p in plans])
    loss_sum = torch.zeros(b, dtype=torch.float64)
    for step in range(int(steps.max()) if b else 0):
        batch = active_batch(clients, plans, step, device)
        act = batch.rows
        for inner in range(inner_steps):
            per_client, grads = client_losses_and_grads(model, theta, batch)
            if inner == 0:
                loss_sum[act.cpu()] += per_client.detach().double().cpu()
            with torch.no_grad():
                for th, g, w in zip(theta, grads, local):
                    th[act] = th[act] - hp.lr * (g[act] + lam * (th[act] - w[act]))
        with torch.no_grad():
            for th, w in zip(theta, local):
                w[act] = w[act] - hp.lr * lam * (w[act] - th[act])
    return PFedMeOutput(
        local_task=local[0].cpu(),
        local_data=local[1].cpu(),
        personal_task=theta[0].detach().cpu(),
        personal_data=theta[1].detach().cpu(),
        mean_loss=(loss_sum / steps.clamp(min=1)).float(),
        steps=steps,
    )
