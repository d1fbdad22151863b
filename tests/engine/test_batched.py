"""The batched engine equals training and evaluating each client alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.engine import ClientData, LocalTraining, evaluate_pairs, train_clients
from dp2fl_ray.engine.batched import client_batches
from dp2fl_ray.engine.scores import macro_f1, micro_f1
from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.loader import build_model

C = 5


@pytest.fixture(scope="module")
def model(tiny_config: ExperimentConfig) -> DualPromptModel:
    return build_model(tiny_config.model, [f"class{i}" for i in range(C)])


@pytest.fixture(scope="module")
def clients() -> list[ClientData]:
    gen = torch.Generator().manual_seed(7)
    return [
        ClientData(torch.rand(n, 3, 8, 8, generator=gen), torch.randint(0, C, (n,), generator=gen))
        for n in (9, 14, 5, 11)
    ]


def _starts(model: DualPromptModel, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    task, data = model.initial_prompts(0)
    gen = torch.Generator().manual_seed(2)
    return task + 0.02 * torch.randn(b, task.shape[0], generator=gen), data + 0.02 * torch.randn(
        b, data.shape[0], generator=gen
    )


def _train_alone(model: DualPromptModel, task: torch.Tensor, data: torch.Tensor, client: ClientData,
                 hp: LocalTraining, seed: int) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The obvious reference: one client, torch.optim.SGD, one batch at a time."""
    pt, pd = task[None].clone().requires_grad_(True), data[None].clone().requires_grad_(True)
    opt = torch.optim.SGD([pt, pd], lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    for idx in client_batches(len(client), hp, seed):
        owner = torch.zeros(len(idx), dtype=torch.long)
        logits = model.logits(client.inputs[idx], pt, pd, owner, model.class_features(pt))
        loss = F.cross_entropy(logits, client.labels[idx])
        if hp.proximal_mu:
            loss = loss + hp.proximal_mu / 2 * ((pt - task).pow(2).sum() + (pd - data).pow(2).sum())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return pt.detach()[0], pd.detach()[0]


@pytest.mark.parametrize("mu", [0.0, 0.5])
def test_batched_training_equals_training_each_client_alone(
    model: DualPromptModel, clients: list[ClientData], mu: float
) -> None:
    hp = LocalTraining(epochs=2, batch_size=4, lr=0.05, momentum=0.9, weight_decay=1e-3, proximal_mu=mu)
    task, data = _starts(model, len(clients))
    seeds = [11, 12, 13, 14]
    out = train_clients(model, task, data, clients, hp, seeds)
    worst = 0.0
    for k, client in enumerate(clients):
        t_k, d_k = _train_alone(model, task[k], data[k], client, hp, seeds[k])
        worst = max(worst, (t_k - out.task[k]).abs().max().item(), (d_k - out.data[k]).abs().max().item())
        assert (out.task[k] - task[k]).abs().max() > 1e-3  # it really trained
    print(f"max abs difference batched vs alone: {worst:.3g}")
    assert worst <= 1e-5
    assert out.steps.tolist() == [2 * -(-len(c) // 4) for c in clients]  # epochs x ceil(n / batch)


def test_training_does_not_mutate_its_inputs(model: DualPromptModel, clients: list[ClientData]) -> None:
    task, data = _starts(model, 2)
    before = task.clone(), data.clone()
    train_clients(model, task, data, clients[:2], LocalTraining(1, 4, 0.1, 0.9), [1, 2])
    assert torch.equal(task, before[0]) and torch.equal(data, before[1])


def test_shuffles_depend_on_the_seed_only() -> None:
    hp = LocalTraining(epochs=2, batch_size=3, lr=0.1)
    a, b, c = client_batches(10, hp, 5), client_batches(10, hp, 5), client_batches(10, hp, 6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert sorted(torch.cat(a[:4]).tolist()) == list(range(10))  # epoch 1 visits every sample once


def test_evaluate_pairs_equals_each_pair_alone(model: DualPromptModel, clients: list[ClientData]) -> None:
    task, data = _starts(model, 3)
    pairs = [(i, j) for i in range(3) for j in range(len(clients))]
    out = evaluate_pairs(model, task, data, clients, pairs, batch_size=7, keep_predictions=True)
    assert out.predictions is not None
    for p, (i, j) in enumerate(pairs):
        with torch.no_grad():
            logits = model.logits(clients[j].inputs, task[i : i + 1], data[i : i + 1],
                                  torch.zeros(len(clients[j]), dtype=torch.long),
                                  model.class_features(task[i : i + 1]))  # fmt: skip
        assert out.loss[p].item() == pytest.approx(
            F.cross_entropy(logits, clients[j].labels).item(), abs=1e-5
        )
        assert torch.equal(out.predictions[p], logits.argmax(-1))
        assert out.correct[p].item() == int((logits.argmax(-1) == clients[j].labels).sum())
        assert out.count[p].item() == len(clients[j])


def test_scores_by_hand() -> None:
    y, yhat = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1])
    assert micro_f1(y, yhat) == pytest.approx(0.5)  # 2 of 4 right: micro-F1 = accuracy
    # per class F1: c0: tp1 fp0 fn1 -> 2/3; c1: tp1 fp2 fn0 -> 2/4; c2: tp0 fp0 fn1 -> 0
    assert macro_f1(y, yhat) == pytest.approx((2 / 3 + 0.5 + 0) / 3)


def test_slices_of_any_size_give_bit_identical_prompts(
    model: DualPromptModel, clients: list[ClientData]
) -> None:
    """With one torch thread (a worker with cpus_per_worker 1), a client's result does not
    depend on which other clients share its slice: the determinism contract of the runtime."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hp = LocalTraining(epochs=2, batch_size=4, lr=0.05, momentum=0.9)
        task, data = _starts(model, len(clients))
        together = train_clients(model, task, data, clients, hp, [1, 2, 3, 4])
        for k in range(len(clients)):
            alone = train_clients(model, task[k : k + 1], data[k : k + 1], clients[k : k + 1], hp, [k + 1])
            assert torch.equal(alone.task[0], together.task[k]) and torch.equal(
                alone.data[0], together.data[k]
            )
        pairs = [(i, j) for i in range(2) for j in range(len(clients))]
        big = evaluate_pairs(model, together.task, together.data, clients, pairs, batch_size=256)
        small = evaluate_pairs(model, together.task, together.data, clients, pairs, batch_size=5)
        assert torch.equal(big.loss, small.loss)
    finally:
        torch.set_num_threads(threads)
