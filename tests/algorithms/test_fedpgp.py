"""FedPGP: the low-rank personal prompt, the contrastive loss, batched training, a run on Ray."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dp2fl_ray.algorithms.base import PromptSizes, RoundResults, RoundStart, ServerState
from dp2fl_ray.algorithms.fedpgp import (
    FedPGP,
    FedPGPOptions,
    factor_size,
    low_rank_delta,
    prompt_blocks,
    prompt_contrastive_loss,
)
from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.engine import ClientData, LocalTraining, train_clients
from dp2fl_ray.engine.batched import client_batches
from dp2fl_ray.metrics import read_table
from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.layout import PromptLayout
from dp2fl_ray.models.loader import build_model

LAYOUT = PromptLayout((("ctx", (2, 3)), ("deep", (2, 2, 3)), ("bias", (4,))))


def test_blocks_and_factor_sizes_follow_the_layout() -> None:
    blocks = prompt_blocks(LAYOUT)
    assert [(b.count, b.rows, b.cols) for b in blocks] == [(1, 2, 3), (2, 2, 3), (0, 0, 0)]
    assert factor_size(blocks, rank=1) == 1 * (2 + 3) + 2 * (2 + 3)  # bias: not personalised


def test_low_rank_delta_by_hand() -> None:
    blocks = prompt_blocks(LAYOUT)
    # rank 1. ctx: U = [1, 2], V = [1, 0, -1]; deep[0]: U = [1, 1], V = [0, 1, 0]; deep[1]: U = 0
    factors = torch.tensor(
        [[1.0, 2, 1, 0, -1, 1, 1, 0, 0, 0, 1, 0, 2, 2, 2]]
    )  # U ctx (2), V ctx (3), U deep (2 x 2), V deep (2 x 3)
    delta = low_rank_delta(blocks, factors, rank=1)
    assert delta.shape == (1, LAYOUT.size)
    expected = [1, 0, -1, 2, 0, -2] + [0, 1, 0, 0, 1, 0] + [0] * 6 + [0] * 4
    assert delta[0].tolist() == expected


def test_contrastive_loss_on_two_classes_by_hand() -> None:
    # class 0: hand-crafted = global, personal orthogonal -> pos 1, neg 0
    # class 1: hand-crafted orthogonal to global, personal = global -> pos 0, neg 1
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    p = torch.tensor([[[0.0, 3.0], [2.0, 0.0]]])
    loss = prompt_contrastive_loss(h, g, p, temperature=0.5)
    ce0 = math.log(1 + math.exp((0 - 1) / 0.5))  # -log softmax([2, 0])[0]
    ce1 = math.log(1 + math.exp((1 - 0) / 0.5))  # -log softmax([0, 2])[0]
    assert loss.shape == (1,) and loss.item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)


def _server(m: int) -> tuple[ServerState, RoundResults]:
    init_t, init_d = np.zeros(3, np.float32), np.full(2, 7.0, np.float32)
    state = ServerState(init_t, init_d, init_t, init_d)
    start = RoundStart(
        init_t, init_d, np.zeros((m, 3)), np.zeros((m, 2)), np.full(m, np.nan), np.ones(m, bool)
    )
    task = np.array([[1.0, 2, 3], [3, 2, 1]])
    data = np.array([[1.0, 1], [2, 2]])
    return state, RoundResults(start, task, data, np.array([1, 3]), np.full(m, np.nan))


def test_server_averages_sigma_only_and_keeps_the_factors() -> None:
    state, results = _server(2)
    update = FedPGP().aggregate(state, results)
    assert update.global_task.tolist() == [2.5, 2.0, 1.5]  # (1 x row0 + 3 x row1) / 4
    assert np.array_equal(update.personal_task, np.repeat(update.global_task[None], 2, axis=0))
    assert np.array_equal(FedPGP().stored_rows(update), results.data)  # U, V stay per client
    assert update.global_data.tolist() == [7.0, 7.0]  # the global model: round-0 factors (U = 0)
    _, data = FedPGP().start_rows(state, [None, np.array([5.0, 5.0])])
    assert data.tolist() == [[7.0, 7.0], [5.0, 5.0]]


@pytest.fixture(scope="module")
def model(tiny_config: ExperimentConfig) -> DualPromptModel:
    return build_model(tiny_config.model, [f"class{i}" for i in range(5)])


def test_rows_and_round_zero_personal_model_equal_the_global_one(model: DualPromptModel) -> None:
    algo = FedPGP().for_model(model)
    t, d = (x.numpy() for x in model.initial_prompts(0))
    sizes = algo.row_sizes(PromptSizes(len(t), len(d)))
    task, data = algo.initial_rows(t, d, seed=0)
    assert (
        (len(task), len(data)) == (sizes.task, sizes.data) == (len(t) + len(d), len(t) + sizes.data - len(t))
    )
    fwd = algo.forward()
    with torch.no_grad():
        prep = fwd.prepare(model, torch.from_numpy(task)[None], torch.from_numpy(data)[None])
    assert torch.equal(prep.personal[0], torch.from_numpy(t))  # U = 0 at round 0
    with pytest.raises(RuntimeError, match="for_model"):
        FedPGP().initial_rows(t, d, seed=0)


def _reference(model: DualPromptModel, task: torch.Tensor, data: torch.Tensor, client: ClientData,
               hp: LocalTraining, seed: int, o: FedPGPOptions,
               ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """One client alone, torch.optim.SGD, FedPGP's loss written out."""
    dt = model.task_layout.size
    pt, pd = task[None].clone().requires_grad_(True), data[None].clone().requires_grad_(True)
    opt = torch.optim.SGD([pt, pd], lr=hp.lr, momentum=hp.momentum)
    blocks = prompt_blocks(model.task_layout)
    for idx in client_batches(len(client), hp, seed):
        sigma, dprompt, hand, factors = pt[:, :dt], pt[:, dt:], pd[:, :dt], pd[:, dt:]
        personal = sigma + low_rank_delta(blocks, factors, o.rank)
        feats = model.class_features(personal)
        owner = torch.zeros(len(idx), dtype=torch.long)
        loss = F.cross_entropy(
            model.logits(client.inputs[idx], personal, dprompt, owner, feats), client.labels[idx]
        )
        glob, h = model.class_features(sigma), model.class_features(hand).detach()
        loss = loss + o.mu * prompt_contrastive_loss(h, glob, feats, o.temperature)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return pt.detach()[0], pd.detach()[0]


def test_batched_training_equals_training_each_client_alone(model: DualPromptModel) -> None:
    o = FedPGPOptions(rank=2, mu=1.0, temperature=0.5)
    algo = FedPGP(o).for_model(model)
    t, d = (x.numpy() for x in model.initial_prompts(0))
    task0, data0 = (torch.from_numpy(x) for x in algo.initial_rows(t, d, seed=3))
    gen = torch.Generator().manual_seed(5)
    clients = [ClientData(torch.rand(n, 3, 8, 8, generator=gen), torch.randint(0, 5, (n,), generator=gen))
               for n in (7, 10, 4)]  # fmt: skip
    task = task0 + 0.02 * torch.randn(3, len(task0), generator=gen)
    data = data0.repeat(3, 1)
    hp = LocalTraining(epochs=2, batch_size=4, lr=0.05, momentum=0.9)
    out = train_clients(model, task, data, clients, hp, [1, 2, 3], forward=algo.forward())
    dt = model.task_layout.size
    for k, client in enumerate(clients):
        t_k, d_k = _reference(model, task[k], data[k], client, hp, k + 1, o)
        assert (t_k - out.task[k]).abs().max() <= 1e-5 and (d_k - out.data[k]).abs().max() <= 1e-5
        assert (out.data[k, dt:] - data[k, dt:]).abs().max() > 1e-4  # U, V really trained
        assert torch.equal(out.data[k, :dt], data[k, :dt])  # the hand-crafted prompt never trains


@pytest.mark.ray
@pytest.mark.parametrize("backbone", ["clip", "bert"])
def test_fedpgp_runs_end_to_end(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path, backbone: str
) -> None:
    extra = {
        "clip": [],
        "bert": ["model.backbone=bert", "data.source=clinc150", "data.partition.scheme=domain",
                 "data.partition.shots=2", "model.max_length=16", "federation.rounds=1"],
    }[backbone]  # fmt: skip
    config = tiny_config.with_overrides(["algorithm.name=fedpgp", "train.lr=0.05", *extra])
    summary = run(config, tmp_path, backbone)
    clients = read_table(tmp_path / backbone, "clients")
    assert summary["status"] == "completed" and summary["algorithm"] == "fedpgp"
    assert (clients["status"] == "ok").all() and clients["test_acc"].between(0, 1).all()
    assert 0 <= summary["global_acc"] <= 1
    evals = read_table(tmp_path / backbone, "evals")
    assert {"personalized", "global", "init", "initglo"} <= set(evals["model"])


def run(config: ExperimentConfig, out: Path, name: str) -> dict:
    from dp2fl_ray.runtime.simulation import run_experiment

    return run_experiment(config, output_dir=out, run_name=name, progress=False)
