"""Local training and evaluation of many clients at once, in pure torch.

Every step pushes the samples of all active clients of a slice through ONE forward and
backward pass of the frozen backbone; each sample runs with its own client's prompt row.
The loss is the sum over clients of each client's mean batch loss, so the gradient that
reaches client k's row is exactly the gradient of its own loss (LayerNorm backbones: samples
never interact). Optimiser state is per client (one momentum row each), and a client whose
steps are done is simply left out of later steps. The result therefore equals training
each client alone (``tests/engine`` proves it to 1e-5 in float32).

Functions here never mutate their inputs: they return new prompt rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from dp2fl_ray.models.base import DualPromptModel


@dataclass(frozen=True)
class ClientData:
    """One client's samples: inputs ``(n, ...)`` and int64 labels ``(n,)`` (on CPU)."""

    inputs: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class LocalTraining:
    """Hyperparameters of local SGD (torch.optim.SGD semantics, no dampening, no Nesterov)."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    proximal_mu: float = 0.0  # FedProx: + mu/2 ||P - P_start||^2 on both prompts


@dataclass(frozen=True)
class TrainOutput:
    """Updated prompt rows ``(B, Dt)``, ``(B, Dd)``, mean training loss and steps per client."""

    task: torch.Tensor
    data: torch.Tensor
    mean_loss: torch.Tensor
    steps: torch.Tensor


@dataclass(frozen=True)
class EvalOutput:
    """Per (model, set) pair: mean loss, correct count and sample count; predictions if asked."""

    loss: torch.Tensor
    correct: torch.Tensor
    count: torch.Tensor
    predictions: tuple[torch.Tensor, ...] | None = None

    @property
    def accuracy(self) -> torch.Tensor:
        return self.correct.double() / self.count.clamp(min=1).double()


class ClientForward:
    """How a method turns client rows into logits, and any extra loss term of its objective.

    The default runs the backbone's two prompts as they are: ``task (M, Dt)`` and
    ``data (M, Dd)`` rows straight into ``model.class_features`` and ``model.logits``. A
    method whose rows mean something else (``algorithms/base.py``) subclasses this; the
    engine calls it for training and for every evaluation, so the model evaluated is the
    model trained.
    """

    def prepare(self, model: DualPromptModel, task: torch.Tensor, data: torch.Tensor) -> Any:
        """Per-model work done once per step or evaluation (default: the class features)."""
        return model.class_features(task)

    def logits(
        self,
        model: DualPromptModel,
        inputs: torch.Tensor,
        task: torch.Tensor,
        data: torch.Tensor,
        owner: torch.Tensor,
        prepared: Any,
    ) -> torch.Tensor:
        """Class logits ``(N, C)``; sample n runs with row ``owner[n]`` of ``task``/``data``."""
        return model.logits(inputs, task, data, owner, prepared)

    def extra_loss(
        self, model: DualPromptModel, task: torch.Tensor, data: torch.Tensor, prepared: Any
    ) -> torch.Tensor | None:
        """A per-client term ``(A,)`` added to each client's mean cross-entropy (default: none)."""
        return None


PROMPT_FORWARD = ClientForward()


def client_batches(n: int, hp: LocalTraining, seed: int) -> list[torch.Tensor]:
    """The index batches client data of size ``n`` is visited in: a fresh shuffle per epoch."""
    gen = torch.Generator().manual_seed(seed)
    batches: list[torch.Tensor] = []
    for _ in range(hp.epochs):
        order = torch.randperm(n, generator=gen)
        batches.extend(order[i : i + hp.batch_size] for i in range(0, n, hp.batch_size))
    return batches


def train_clients(
    model: DualPromptModel,
    task: torch.Tensor,
    data: torch.Tensor,
    clients: Sequence[ClientData],
    hp: LocalTraining,
    seeds: Sequence[int],
    forward: ClientForward = PROMPT_FORWARD,
) -> TrainOutput:
    """Train B clients together; row k of ``task``/``data`` is client k's start.

    Args:
        model: the frozen dual-prompt model.
        task: start task prompts ``(B, Dt)``; data: start data prompts ``(B, Dd)``.
        clients: each client's training data (B of them).
        hp: local SGD hyperparameters.
        seeds: one shuffle seed per client (derived from (seed, round, client id)).
        forward: the method's rows-to-logits map and extra loss (default: the prompts as is).
    """
    b = len(clients)
    if task.shape[0] != b or data.shape[0] != b or len(seeds) != b:
        raise ValueError(
            f"{b} clients but {task.shape[0]} task rows, {data.shape[0]} data rows, {len(seeds)} seeds"
        )
    device = model.device
    start_t = task.detach().to(device, torch.float32)
    start_d = data.detach().to(device, torch.float32)
    params = [start_t.clone().requires_grad_(True), start_d.clone().requires_grad_(True)]
    buffers = [torch.zeros_like(p) for p in params]
    plans = [client_batches(len(c), hp, s) for c, s in zip(clients, seeds)]
    loss_sum = torch.zeros(b, dtype=torch.float64)
    steps = torch.tensor([len(p) for p in plans])
    for step in range(int(steps.max()) if b else 0):
        batch = active_batch(clients, plans, step, device)
        act = batch.rows
        per_client, grads = client_losses_and_grads(model, params, batch, forward)
        with torch.no_grad():
            for p, g, buf, start in zip(params, grads, buffers, (start_t, start_d)):
                g = g[act]
                if hp.weight_decay:
                    g = g + hp.weight_decay * p[act]
                if hp.proximal_mu:
                    g = g + hp.proximal_mu * (p[act] - start[act])
                buf[act] = hp.momentum * buf[act] + g
                p[act] = p[act] - hp.lr * buf[act]
        loss_sum[act.cpu()] += per_client.detach().double().cpu()
    return TrainOutput(
        task=params[0].detach().cpu(),
        data=params[1].detach().cpu(),
        mean_loss=(loss_sum / steps.clamp(min=1)).float(),
        steps=steps,
    )


@dataclass(frozen=True)
class ActiveBatch:
    """One step's samples: clients still training (``rows``) and their batches, concatenated."""

    rows: torch.Tensor  # (A,) prompt rows of the active clients
    inputs: torch.Tensor  # (N, ...)
    labels: torch.Tensor  # (N,)
    owner: torch.Tensor  # (N,) index into rows
    sizes: torch.Tensor  # (A,) samples per active client


def active_batch(
    clients: Sequence[ClientData], plans: Sequence[Sequence[torch.Tensor]], step: int, device: torch.device
) -> ActiveBatch:
    """The step-th batch of every client that still has one."""
    active = [k for k in range(len(clients)) if step < len(plans[k])]
    batch = [plans[k][step] for k in active]
    sizes = torch.tensor([len(idx) for idx in batch], device=device)
    return ActiveBatch(
        rows=torch.tensor(active, device=device),
        inputs=torch.cat([clients[k].inputs[idx] for k, idx in zip(active, batch)]),  # (N, ...)
        labels=torch.cat([clients[k].labels[idx] for k, idx in zip(active, batch)]).to(device),  # (N,)
        owner=torch.repeat_interleave(torch.arange(len(active), device=device), sizes),  # (N,)
        sizes=sizes,
    )


def client_losses_and_grads(
    model: DualPromptModel,
    params: Sequence[torch.Tensor],
    batch: ActiveBatch,
    forward: ClientForward = PROMPT_FORWARD,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Each active client's batch loss ``(A,)`` (mean cross-entropy plus the method's extra
    term) and the gradients of their sum w.r.t. ``params = [task (B, Dt), data (B, Dd)]``:
    row k of a gradient is client k's own."""
    t_rows, d_rows = params[0][batch.rows], params[1][batch.rows]  # (A, Dt), (A, Dd)
    with model.autocast():
        prepared = forward.prepare(model, t_rows, d_rows)
        logits = forward.logits(model, batch.inputs, t_rows, d_rows, batch.owner, prepared)
    per_sample = F.cross_entropy(logits.float(), batch.labels, reduction="none")  # (N,)
    per_client = torch.zeros(len(batch.rows), device=per_sample.device).index_add(0, batch.owner, per_sample)
    per_client = per_client / batch.sizes
    extra = forward.extra_loss(model, t_rows, d_rows, prepared)
    if extra is not None:
        per_client = per_client + extra.float()
    return per_client, torch.autograd.grad(per_client.sum(), list(params))


@torch.inference_mode()
def evaluate_pairs(
    model: DualPromptModel,
    task: torch.Tensor,
    data: torch.Tensor,
    sets: Sequence[ClientData],
    pairs: Sequence[tuple[int, int]],
    batch_size: int,
    keep_predictions: bool = False,
    forward: ClientForward = PROMPT_FORWARD,
) -> EvalOutput:
    """Evaluate model rows on data sets, pair by pair, packing many pairs per forward pass.

    Args:
        task, data: prompt rows ``(M, Dt)``, ``(M, Dd)`` of the M models.
        sets: the data sets to evaluate on.
        pairs: ``(model row, set index)``; the m x m cross-evaluation is all pairs.
        batch_size: samples per forward pass (packed across pairs).
        keep_predictions: also return each pair's predicted labels (for F1 scores).
        forward: the method's rows-to-logits map (default: the prompts as they are).
    """
    device = model.device
    task = task.to(device, torch.float32)
    data = data.to(device, torch.float32)
    with model.autocast():
        prepared = forward.prepare(model, task, data)  # e.g. class features (M, C, P): once, not per sample
    n_pairs = len(pairs)
    loss_sum = torch.zeros(n_pairs, dtype=torch.float64)
    correct = torch.zeros(n_pairs, dtype=torch.long)
    count = torch.tensor([len(sets[j]) for _, j in pairs], dtype=torch.long)
    preds: list[list[torch.Tensor]] = [[] for _ in range(n_pairs)]
    for chunk in _pack(pairs, sets, batch_size):
        inputs = torch.cat([sets[j].inputs[lo:hi] for _, (_, j), lo, hi in chunk])  # (N, ...)
        labels = torch.cat([sets[j].labels[lo:hi] for _, (_, j), lo, hi in chunk]).to(device)
        owner = torch.cat([torch.full((hi - lo,), i) for _, (i, _), lo, hi in chunk]).to(device)  # (N,)
        pair_of = torch.cat([torch.full((hi - lo,), p) for p, _, lo, hi in chunk])  # (N,)
        with model.autocast():
            logits = forward.logits(model, inputs, task, data, owner, prepared)
        per_sample = F.cross_entropy(logits.float(), labels, reduction="none").double().cpu()
        predicted = logits.argmax(dim=-1)
        loss_sum.index_add_(0, pair_of, per_sample)
        correct.index_add_(0, pair_of, (predicted == labels).long().cpu())
        if keep_predictions:
            for p, _, lo, hi in chunk:
                preds[p].append(predicted[(pair_of == p).to(device)].cpu())
    return EvalOutput(
        loss=(loss_sum / count.clamp(min=1)).float(),
        correct=correct,
        count=count,
        predictions=tuple(torch.cat(p) if p else torch.zeros(0, dtype=torch.long) for p in preds)
        if keep_predictions
        else None,
    )


def _pack(
    pairs: Sequence[tuple[int, int]], sets: Sequence[ClientData], batch_size: int
) -> list[list[tuple[int, tuple[int, int], int, int]]]:
    """Cut the samples of all pairs into chunks of at most ``batch_size``: (pair, (i, j), lo, hi)."""
    chunks: list[list[tuple[int, tuple[int, int], int, int]]] = [[]]
    room = batch_size
    for p, pair in enumerate(pairs):
        n, lo = len(sets[pair[1]]), 0
        while lo < n:
            hi = min(n, lo + room)
            chunks[-1].append((p, pair, lo, hi))
            room -= hi - lo
            lo = hi
            if room == 0:
                chunks.append([])
                room = batch_size
    return [c for c in chunks if c]
