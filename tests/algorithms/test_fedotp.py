"""FedOTP: the unbalanced transport plan, logits from it, batched training, a run on Ray."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dp2fl_ray.algorithms.base import RoundResults, RoundStart, ServerState
from dp2fl_ray.algorithms.fedotp import FedOTP, FedOTPForward, FedOTPOptions, plan_logits, transport_plan
from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.engine import ClientData, LocalTraining, evaluate_pairs, train_clients
from dp2fl_ray.errors import ConfigError
from dp2fl_ray.metrics import read_table
from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.loader import build_model


def test_balanced_sinkhorn_on_a_symmetric_2x2_by_hand() -> None:
    sim = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # cost [[0, 1], [1, 0]]
    plan = transport_plan(sim, eps=1.0, mass=1.0, max_iter=100, thresh=1e-12, unbalanced=False)
    diag = 1 / (2 * (1 + math.exp(-1)))  # K = [[1, 1/e], [1/e, 1]], T = K / (2 (1 + 1/e))
    assert plan.flatten().tolist() == pytest.approx([diag, 0.5 - diag, 0.5 - diag, diag], abs=1e-9)


def test_unbalanced_plan_saturates_the_best_patch_first() -> None:
    # 2 patches (a = 1/2 each), 1 prompt receiving mass 0.8: the fixed point is T = [0.5, 0.3]
    # (the near patch gives all it has, the far one the rest), whatever eps (a small eps needs
    # more iterations: v grows by a bounded factor per step)
    sim = torch.tensor([[[1.0], [0.0]]], dtype=torch.float64)
    for eps in (1.0, 0.1):
        plan = transport_plan(sim, eps=eps, mass=0.8, max_iter=200, thresh=1e-12)
        assert plan[0, :, 0].tolist() == pytest.approx([0.5, 0.3], abs=1e-9)


def test_unbalanced_marginals_on_a_3x2() -> None:
    sim = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.4]], dtype=torch.float64)
    plan = transport_plan(sim, eps=0.1, mass=0.8, max_iter=500, thresh=1e-14)
    assert plan.sum(dim=0).tolist() == pytest.approx([0.4, 0.4], abs=1e-9)  # columns: exactly mass / K
    assert (plan.sum(dim=1) <= 1 / 3 + 1e-12).all()  # rows: at most 1 / L
    assert plan.sum().item() == pytest.approx(0.8, abs=1e-9)
    assert plan[0, 0] > plan[0, 1] and plan[1, 1] > plan[1, 0]  # mass goes where similarity is


def test_a_tiny_eps_does_not_underflow() -> None:
    sim = torch.tensor([[[-0.9, -0.95], [-0.8, -0.99]]])  # exp(-(1 - sim) / 0.01) is 0 in float32
    plan = transport_plan(sim, eps=0.01, mass=0.8, max_iter=100, thresh=1e-3)
    assert torch.isfinite(plan).all() and plan.sum().item() == pytest.approx(0.8, rel=1e-4)


def test_logits_from_the_plan_by_hand() -> None:
    sim = torch.tensor([[[[1.0], [0.0]], [[0.2], [0.6]]]])  # (N=1, C=2, L=2, K=1)
    plan = torch.tensor([[[[0.5], [0.3]], [[0.3], [0.5]]]])
    assert plan_logits(sim, plan, 10.0).flatten().tolist() == pytest.approx([5.0, 10 * (0.06 + 0.30)])


def test_two_equal_prompts_give_the_one_prompt_plan() -> None:
    sim = torch.tensor([[0.3], [0.7], [0.1]], dtype=torch.float64)
    one = transport_plan(sim, 0.05, 0.8, 300, 1e-14).sum(dim=-1)
    two = transport_plan(sim.repeat(1, 2), 0.05, 0.8, 300, 1e-14).sum(dim=-1)
    assert two.tolist() == pytest.approx(one.tolist(), abs=1e-10)


def test_server_averages_the_global_prompt_and_keeps_the_local_one() -> None:
    init_t, init_d = np.zeros(3, np.float32), np.zeros(2, np.float32)  # task row (Dt + Dd), local (Dt)
    state = ServerState(init_t, init_d, init_t, init_d)
    start = RoundStart(
        init_t, init_d, np.zeros((2, 3)), np.zeros((2, 2)), np.full(2, np.nan), np.ones(2, bool)
    )
    results = RoundResults(
        start,
        np.array([[1.0, 2, 3], [3, 2, 1]]),
        np.array([[1.0, 1], [2, 2]]),
        np.array([3, 1]),
        np.full(2, np.nan),
    )
    update = FedOTP().aggregate(state, results)
    assert update.global_task.tolist() == [1.5, 2.0, 2.5]
    assert update.global_data.tolist() == [1.5, 2.0]  # the global prompt in the local slot
    assert np.array_equal(FedOTP().stored_rows(update), results.data)


def test_vit_and_bert_fail_at_config_time(tiny_config: ExperimentConfig) -> None:
    with pytest.raises(ConfigError, match="model.backbone"):
        tiny_config.with_overrides(
            ["algorithm.name=fedotp", "model.backbone=vit", "model.name=vit_base_patch16_224"]
        )


@pytest.fixture(scope="module")
def model(tiny_config: ExperimentConfig) -> DualPromptModel:
    return build_model(tiny_config.model, [f"class{i}" for i in range(5)])


def _clients(n: tuple[int, ...]) -> list[ClientData]:
    gen = torch.Generator().manual_seed(4)
    return [
        ClientData(torch.rand(k, 3, 8, 8, generator=gen), torch.randint(0, 5, (k,), generator=gen)) for k in n
    ]


def _rows(model: DualPromptModel, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    t, d = (x.numpy() for x in model.initial_prompts(0))
    task, data = (torch.from_numpy(x) for x in FedOTP().initial_rows(t, d, seed=0))
    gen = torch.Generator().manual_seed(9)
    return task + 0.02 * torch.randn(b, len(task), generator=gen), data + 0.05 * torch.randn(
        b, len(data), generator=gen
    )


def test_batched_training_equals_training_each_client_alone(model: DualPromptModel) -> None:
    fwd = FedOTPForward(FedOTPOptions(eps=0.05))
    clients = _clients((7, 10, 4))
    task, data = _rows(model, 3)
    hp = LocalTraining(epochs=2, batch_size=4, lr=0.05, momentum=0.9)
    together = train_clients(model, task, data, clients, hp, [1, 2, 3], forward=fwd)
    for k, client in enumerate(clients):
        alone = train_clients(model, task[k : k + 1], data[k : k + 1], [client], hp, [k + 1], forward=fwd)
        assert (alone.task[0] - together.task[k]).abs().max() <= 1e-5
        assert (alone.data[0] - together.data[k]).abs().max() <= 1e-5
        assert (together.data[k] - data[k]).abs().max() > 1e-4  # the local prompt trained


def test_global_rows_evaluate_as_the_one_prompt_model(model: DualPromptModel) -> None:
    fwd = FedOTPForward(FedOTPOptions())
    task, _ = _rows(model, 1)
    dt = model.task_layout.size
    local_is_global = task[:, :dt].clone()
    out = evaluate_pairs(model, task, local_is_global, _clients((6,)), [(0, 0)], 8, forward=fwd)
    assert torch.isfinite(out.loss).all()


@pytest.mark.ray
def test_fedotp_runs_end_to_end(ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path) -> None:
    from dp2fl_ray.runtime.simulation import run_experiment

    config = tiny_config.with_overrides(["algorithm.name=fedotp", "train.lr=0.05"])
    summary = run_experiment(config, output_dir=tmp_path, run_name="otp", progress=False)
    clients = read_table(tmp_path / "otp", "clients")
    assert summary["status"] == "completed" and summary["algorithm"] == "fedotp"
    assert (clients["status"] == "ok").all() and clients["test_acc"].between(0, 1).all()
    assert 0 <= summary["global_acc"] <= 1
    assert {"personalized", "global", "init", "initglo"} <= set(
        read_table(tmp_path / "otp", "evals")["model"]
    )
