"""Slice sizing from a measured training step: what one more client costs, and what fits."""

from __future__ import annotations

import pytest
import torch

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.engine import ClientData
from dp2fl_ray.engine.slice_memory import bytes_per_client, step_bytes
from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.loader import build_model
from dp2fl_ray.models.memory import MIB, available_host_bytes, clients_per_slice_limit, slice_budget_bytes

C = 5


@pytest.fixture(scope="module")
def model(tiny_config: ExperimentConfig) -> DualPromptModel:
    return build_model(tiny_config.model, [f"class{i}" for i in range(C)])


@pytest.fixture(scope="module")
def client() -> ClientData:
    gen = torch.Generator().manual_seed(3)
    return ClientData(torch.rand(6, 3, 8, 8, generator=gen), torch.randint(0, C, (6,), generator=gen))


def test_a_step_grows_linearly_with_clients_and_batch(model: DualPromptModel, client: ClientData) -> None:
    task, data = model.initial_prompts(0)
    one, two, three = (step_bytes(model, task, data, client, k, 8) for k in (1, 2, 3))
    assert 0 < one < two < three
    assert (three - two) == pytest.approx(two - one, rel=0.1)  # linear in the clients of a slice
    per_8, per_16 = (bytes_per_client(model, task, data, client, b) for b in (8, 16))
    assert per_16 == pytest.approx(2 * per_8, rel=0.25)  # and in the batch each client brings


def test_a_client_without_samples_is_not_measured(model: DualPromptModel) -> None:
    task, data = model.initial_prompts(0)
    empty = ClientData(torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.long))
    assert bytes_per_client(model, task, data, empty, 8) == 1


def test_budget_is_the_configured_one_or_a_share_of_free_memory() -> None:
    cpu = torch.device("cpu")
    assert slice_budget_bytes(64.0, cpu, 1.0, 0.0) == 64 * MIB
    auto = slice_budget_bytes(0.0, cpu, 1.0, 0.0)
    assert 0 < auto <= available_host_bytes() // 2 + MIB  # at most half of what is available


def test_what_fits_and_the_error_when_nothing_does() -> None:
    assert clients_per_slice_limit(10 * MIB, 3 * MIB) == 3
    with pytest.raises(ModelError, match=r"runtime\.slice_memory_mib.*train\.batch_size"):
        clients_per_slice_limit(2 * MIB, 3 * MIB)
