"""The paper's model: tiny random CLIP with MaPLe dual prompts, saved and loaded for real."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_samples import prompt_rows
from transformers import AutoTokenizer, CLIPModel, CLIPTextConfig, CLIPVisionConfig

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.clip_loading import build_tiny_clip
from dp2fl_ray.models.clip_maple import ClipMaple
from dp2fl_ray.models.loader import build_model

NAMES = ["zero", "one", "two", "three"]


@pytest.fixture(scope="module")
def model(tiny_config: ExperimentConfig) -> ClipMaple:
    built = build_model(tiny_config.model, NAMES)
    assert isinstance(built, ClipMaple)
    return built


def test_backbone_is_frozen_and_in_eval_mode(model: ClipMaple) -> None:
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training and not model.clip.training


def test_prompt_layouts_follow_the_backbone_config(model: ClipMaple) -> None:
    text_cfg, vision_cfg = model.clip.config.text_config, model.clip.config.vision_config
    assert isinstance(text_cfg, CLIPTextConfig) and isinstance(vision_cfg, CLIPVisionConfig)
    d_t, d_v = text_cfg.hidden_size, vision_cfg.hidden_size
    assert model.task_layout.size == 2 * d_t + 1 * 2 * d_t  # ctx (n_ctx, d_t) + deep (J-1, n_ctx, d_t)
    assert model.data_layout.size == 2 * (d_v * d_t + d_v)  # J coupling layers d_t -> d_v


def test_only_prompt_rows_receive_gradients(model: ClipMaple) -> None:
    task, data = prompt_rows(model, 2)
    task.requires_grad_(True)
    data.requires_grad_(True)
    images = torch.rand(3, 3, 8, 8)
    owner = torch.tensor([0, 1, 1])
    logits = model.logits(images, task, data, owner, model.class_features(task))
    logits.sum().backward()
    assert task.grad is not None and task.grad.abs().sum() > 0
    assert data.grad is not None and data.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_each_sample_uses_its_owner_prompts(model: ClipMaple) -> None:
    task, data = prompt_rows(model, 3)
    images = torch.rand(4, 3, 8, 8)
    owner = torch.tensor([2, 0, 1, 2])
    together = model.logits(images, task, data, owner, model.class_features(task))
    for n in range(4):
        k = owner[n : n + 1]
        alone = model.logits(images[n : n + 1], task[k], data[k], torch.zeros(1, dtype=torch.long),
                             model.class_features(task[k]))  # fmt: skip
        torch.testing.assert_close(together[n : n + 1], alone, atol=1e-5, rtol=1e-5)


def test_text_path_equals_hf_text_features_without_prompts(tiny_config: ExperimentConfig) -> None:
    """With depth 1 and ctx set to the placeholder embeddings, the layer-by-layer text forward
    (causal attention, EOT pooling) must equal CLIPModel.get_text_features exactly."""
    clip, tok = build_tiny_clip(NAMES, tiny_config.model.tiny, 2, "a photo of a")
    model = ClipMaple(clip, tok, NAMES, 2, 1, "a photo of a", torch.device("cpu"), torch.float32)
    ids = tok([f"X X {n}." for n in NAMES], padding="longest", return_tensors="pt")["input_ids"]
    placeholder = clip.text_model.embeddings.token_embedding(ids[0, 1:3]).detach()
    task = model.task_layout.flatten(
        {"ctx": placeholder, "deep_text": torch.zeros(0, 2, placeholder.shape[1])}
    )
    ours = model.class_features(task[None])[0]
    with torch.no_grad():
        ref = clip.get_text_features(input_ids=ids).pooler_output
    torch.testing.assert_close(ours, torch.nn.functional.normalize(ref, dim=-1), atol=1e-5, rtol=1e-5)


def test_tiny_random_images_do_not_collapse(model: ClipMaple) -> None:
    """The default CLIP init maps every image of a tiny model to ~the same point; ours must not."""
    task, data = model.initial_prompts(0)
    gen = torch.Generator().manual_seed(0)
    feats = model.image_features(
        torch.rand(32, 3, 8, 8, generator=gen), task[None], data[None], torch.zeros(32, dtype=torch.long)
    )
    cos = feats @ feats.T
    assert cos[~torch.eye(32, dtype=torch.bool)].mean() < 0.99


def test_initial_prompts_are_a_function_of_the_seed(model: ClipMaple) -> None:
    a, b = model.initial_prompts(3), model.initial_prompts(3)
    c = model.initial_prompts(4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_saved_tiny_clip_loads_back_through_model_path(
    tiny_config: ExperimentConfig, model: ClipMaple, tmp_path: Path
) -> None:
    model.clip.save_pretrained(tmp_path)
    _clip, tok = build_tiny_clip(NAMES, tiny_config.model.tiny, 2, "a photo of a")
    tok.save_pretrained(tmp_path)
    assert isinstance(CLIPModel.from_pretrained(tmp_path), CLIPModel)
    assert AutoTokenizer.from_pretrained(tmp_path).eos_token_id == tok.eos_token_id
    loaded_cfg = tiny_config.with_overrides([f"model.path={tmp_path}"])
    loaded = build_model(loaded_cfg.model, NAMES)
    task, data = prompt_rows(model, 2)
    images = torch.rand(2, 3, 8, 8)
    owner = torch.tensor([0, 1])
    want = model.logits(images, task, data, owner, model.class_features(task))
    got = loaded.logits(images, task, data, owner, loaded.class_features(task))
    torch.testing.assert_close(got, want)


def test_model_dir_without_weights_is_a_clear_error(tiny_config: ExperimentConfig, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no weights"):
        build_model(tiny_config.with_overrides([f"model.path={tmp_path}"]).model, NAMES)


def test_missing_model_dir_is_a_clear_error(tiny_config: ExperimentConfig, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model.path"):
        build_model(tiny_config.with_overrides([f"model.path={tmp_path / 'nope'}"]).model, NAMES)


def test_depth_beyond_the_encoder_is_a_clear_error(tiny_config: ExperimentConfig) -> None:
    with pytest.raises(ModelError, match="model.prompt.depth"):
        build_model(tiny_config.with_overrides(["model.prompt.depth=9"]).model, NAMES)


def test_a_tiny_vit_without_an_architecture_name_gets_the_default_one(tiny_config: ExperimentConfig) -> None:
    config = tiny_config.with_overrides(["model.backbone=vit"])  # model.path null: model.tiny sets the sizes
    assert config.model.name == ExperimentConfig.tiny_vit_name
    assert build_model(config.model, NAMES).num_classes == len(NAMES)
