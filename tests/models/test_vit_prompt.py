"""The vit backbone: a timm ViT with VPT-deep task prompts and identity-initialised couplings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F
from model_samples import prompt_rows

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.engine import ClientData, LocalTraining, evaluate_pairs, train_clients
from dp2fl_ray.engine.batched import client_batches
from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.loader import build_model
from dp2fl_ray.models.vit_prompt import ViTPrompt

C = 4
NAMES = [f"class{i}" for i in range(C)]
SMALL_ARCH = "test_vit"  # timm's own 64-d, 6-block test ViT: a real registered arch to save and load


@pytest.fixture(scope="module")
def vit_config(tiny_config: ExperimentConfig) -> ExperimentConfig:
    return tiny_config.with_overrides(["model.backbone=vit", "model.name=vit_base_patch16_224"])


@pytest.fixture(scope="module")
def model(vit_config: ExperimentConfig) -> ViTPrompt:
    built = build_model(vit_config.model, NAMES)
    assert isinstance(built, ViTPrompt)
    return built


def _logits(
    model: DualPromptModel, x: torch.Tensor, task: torch.Tensor, data: torch.Tensor, owner: torch.Tensor
) -> torch.Tensor:
    return model.logits(x, task, data, owner, model.class_features(task))


def test_backbone_is_frozen_and_in_eval_mode(model: ViTPrompt) -> None:
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training and not model.vit.training


def test_prompt_layouts_follow_the_backbone_config(model: ViTPrompt, vit_config: ExperimentConfig) -> None:
    d, n, depth = model.vit.embed_dim, vit_config.model.prompt.n_ctx, vit_config.model.prompt.depth
    assert d == vit_config.model.tiny.hidden
    assert model.task_layout.size == depth * n * d + C * d + C  # prompt tokens + head weight + head bias
    assert model.data_layout.size == depth * (d * d + d)  # one Linear(d -> d) per prompted block
    assert "prompts" in model.trainable_report()


def test_initial_couplings_are_the_identity_and_prompts_a_function_of_the_seed(model: ViTPrompt) -> None:
    task, data = model.initial_prompts(3)
    parts = model.data_layout.unflatten(data[None])
    eye = torch.eye(model.vit.embed_dim).expand_as(parts["couple_weight"][0])
    assert torch.equal(parts["couple_weight"][0], eye) and not parts["couple_bias"].any()
    again, other = model.initial_prompts(3), model.initial_prompts(4)
    assert torch.equal(task, again[0]) and not torch.equal(task, other[0])


def test_logits_are_the_linear_head_on_image_features(model: ViTPrompt) -> None:
    task, data = prompt_rows(model, 1)
    images, owner = torch.rand(3, 3, 8, 8), torch.zeros(3, dtype=torch.long)
    head = model.task_layout.unflatten(task)
    feats = model.image_features(images, task, data, owner)
    want = feats @ head["head_weight"][0].T + head["head_bias"][0]
    torch.testing.assert_close(_logits(model, images, task, data, owner), want, atol=1e-5, rtol=1e-5)


def test_images_of_any_size_are_resized_and_normalised_with_timm_config(model: ViTPrompt) -> None:
    cfg = timm.data.resolve_model_data_config(model.vit)
    pixels = model.preprocess(torch.full((2, 3, 37, 23), 0.25))
    assert pixels.shape == (2, 3, *model.vit.patch_embed.img_size)
    want = (0.25 - torch.tensor(cfg["mean"])) / torch.tensor(cfg["std"])
    torch.testing.assert_close(pixels[0, :, 5, 5], want)


def test_only_prompt_rows_receive_gradients(model: ViTPrompt) -> None:
    task, data = (r.requires_grad_(True) for r in prompt_rows(model, 2))
    _logits(model, torch.rand(3, 3, 8, 8), task, data, torch.tensor([0, 1, 1])).sum().backward()
    assert task.grad is not None and task.grad.abs().sum() > 0
    assert data.grad is not None and data.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_each_sample_uses_its_owner_prompts_bit_for_bit_whatever_its_batch(model: ViTPrompt) -> None:
    task, data = prompt_rows(model, 3)
    images, owner = torch.rand(4, 3, 8, 8), torch.tensor([2, 0, 1, 2])
    together = _logits(model, images, task, data, owner)
    for n in range(4):
        k = owner[n : n + 1]
        alone = _logits(model, images[n : n + 1], task[k], data[k], torch.zeros(1, dtype=torch.long))
        assert torch.equal(together[n : n + 1], alone)  # slicing a cohort differently changes nothing


def test_tiny_random_images_do_not_collapse(model: ViTPrompt) -> None:
    task, data = model.initial_prompts(0)
    images = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    feats = F.normalize(
        model.image_features(images, task[None], data[None], torch.zeros(32, dtype=torch.long)), dim=-1
    )
    assert (feats @ feats.T)[~torch.eye(32, dtype=torch.bool)].mean() < 0.9


def _train_alone(
    model: DualPromptModel,
    task: torch.Tensor,
    data: torch.Tensor,
    client: ClientData,
    hp: LocalTraining,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The obvious reference: one client, torch.optim.SGD, one batch at a time."""
    pt, pd = task[None].clone().requires_grad_(True), data[None].clone().requires_grad_(True)
    opt = torch.optim.SGD([pt, pd], lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    for idx in client_batches(len(client), hp, seed):
        loss = F.cross_entropy(
            _logits(model, client.inputs[idx], pt, pd, torch.zeros(len(idx), dtype=torch.long)),
            client.labels[idx],
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return pt.detach()[0], pd.detach()[0]


def test_batched_engine_equals_training_and_evaluating_each_client_alone(model: ViTPrompt) -> None:
    gen = torch.Generator().manual_seed(7)
    clients = [
        ClientData(torch.rand(n, 3, 8, 8, generator=gen), torch.randint(0, C, (n,), generator=gen))
        for n in (7, 10, 5)
    ]
    hp = LocalTraining(epochs=2, batch_size=4, lr=0.1, momentum=0.9, weight_decay=1e-3)
    task, data = prompt_rows(model, 3, seed=2)
    seeds = [11, 12, 13]
    out = train_clients(model, task, data, clients, hp, seeds)
    worst = 0.0
    for k, client in enumerate(clients):
        t_k, d_k = _train_alone(model, task[k], data[k], client, hp, seeds[k])
        worst = max(worst, (t_k - out.task[k]).abs().max().item(), (d_k - out.data[k]).abs().max().item())
        assert (out.task[k] - task[k]).abs().max() > 1e-3 and (
            out.data[k] - data[k]
        ).abs().max() > 1e-4  # it trained
    print(f"vit: max abs difference batched vs alone: {worst:.3g}")
    assert worst <= 1e-5
    pairs = [(i, j) for i in range(3) for j in range(3)]
    ev = evaluate_pairs(model, out.task, out.data, clients, pairs, batch_size=6)
    for p, (i, j) in enumerate(pairs):
        with torch.no_grad():
            logits = _logits(
                model,
                clients[j].inputs,
                out.task[i : i + 1],
                out.data[i : i + 1],
                torch.zeros(len(clients[j]), dtype=torch.long),
            )
        assert ev.loss[p].item() == pytest.approx(F.cross_entropy(logits, clients[j].labels).item(), abs=1e-5)


@pytest.fixture(scope="module")
def saved_vit(tmp_path_factory: pytest.TempPathFactory) -> tuple[timm.models.VisionTransformer, Path]:
    """A random ``test_vit`` saved as a torch state dict, a safetensors file and an HF-style directory."""
    torch.manual_seed(5)
    vit = timm.create_model(SMALL_ARCH, pretrained=False, num_classes=0).eval()
    assert isinstance(vit, timm.models.VisionTransformer)
    root = tmp_path_factory.mktemp("vit")
    torch.save(vit.state_dict(), root / "weights.pth")
    safetensors.torch.save_file(vit.state_dict(), str(root / "weights.safetensors"))
    (root / "hf").mkdir()
    safetensors.torch.save_file(vit.state_dict(), str(root / "hf" / "model.safetensors"))
    return vit, root


@pytest.mark.parametrize("where", ["weights.pth", "weights.safetensors", "hf"])
def test_saved_weights_load_back_through_model_path(
    vit_config: ExperimentConfig, saved_vit: tuple, where: str
) -> None:
    vit, root = saved_vit
    cfg = vit_config.with_overrides(
        [f"model.name={SMALL_ARCH}", f"model.path={root / where}", "model.prompt.depth=3"]
    )
    loaded = build_model(cfg.model, NAMES)
    direct = ViTPrompt(vit, C, 2, 3, torch.device("cpu"), torch.float32)
    task, data = prompt_rows(direct, 2)
    images, owner = torch.rand(2, 3, 20, 20), torch.tensor([0, 1])
    torch.testing.assert_close(
        _logits(loaded, images, task, data, owner), _logits(direct, images, task, data, owner)
    )


def test_truncated_weight_file_is_a_clear_error(
    vit_config: ExperimentConfig, saved_vit: tuple, tmp_path: Path
) -> None:
    _, root = saved_vit
    for name in ("weights.pth", "weights.safetensors"):
        blob = (root / name).read_bytes()
        (tmp_path / name).write_bytes(blob[: len(blob) // 2])
        cfg = vit_config.with_overrides([f"model.name={SMALL_ARCH}", f"model.path={tmp_path / name}"])
        with pytest.raises(ModelError, match=f"model.path.*{name}"):
            build_model(cfg.model, NAMES)


def test_weights_of_another_architecture_are_a_clear_error(
    vit_config: ExperimentConfig, saved_vit: tuple
) -> None:
    _, root = saved_vit
    cfg = vit_config.with_overrides(["model.name=test_vit3", f"model.path={root / 'weights.pth'}"])
    with pytest.raises(ModelError, match="model.name"):
        build_model(cfg.model, NAMES)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["model.name=resnet18"], "model.name.*not a VisionTransformer"),
        (["model.name=vit_no_such_arch"], "model.name.*not a timm architecture"),
        (["model.prompt.depth=3"], "model.prompt.depth"),
    ],
)
def test_bad_architecture_or_depth_is_a_clear_error(
    vit_config: ExperimentConfig, overrides: list[str], match: str
) -> None:
    with pytest.raises(ModelError, match=match):
        build_model(vit_config.with_overrides(overrides).model, NAMES)


def test_missing_weights_are_a_clear_error(vit_config: ExperimentConfig, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no weights"):
        build_model(vit_config.with_overrides([f"model.path={tmp_path}"]).model, NAMES)
    with pytest.raises(ModelError, match="does not exist"):
        build_model(vit_config.with_overrides([f"model.path={tmp_path / 'nope.pth'}"]).model, NAMES)


def test_unknown_backbone_is_a_clear_error(vit_config: ExperimentConfig) -> None:
    cfg = SimpleNamespace(**{**vit_config.model.__dict__, "backbone": "resnet"})
    with pytest.raises(ModelError, match="model.backbone 'resnet'.*clip, vit, bert"):
        build_model(cfg, NAMES)
