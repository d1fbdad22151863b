"""``model.compile: true``: the torch.compile'd packed BERT layers against the eager ones.

The compiled model uses inductor (torch.compile's default backend, what the feature runs).
On 2 cores the module takes ~35 s with a warm inductor cache (/tmp/torchinductor_$USER),
~80 s with a cold one (~25 s of compiling per dtype, ~15 s for the no-compiler subprocess).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_samples import LABELS, NAMES, TEXTS, prompt_rows

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.engine import ClientData, LocalTraining, evaluate_pairs, train_clients
from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.compiled import warm_up
from dp2fl_ray.models.loader import build_model

# How close compiled results stay to eager ones (inductor fuses and rounds differently).
# float32: measured ~4e-6 on logits of magnitude ~20, ~1e-7 on gradients.
TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-3}

Pair = tuple[DualPromptModel, DualPromptModel]
REPO = Path(__file__).resolve().parents[2]
NO_COMPILER = """
from dp2fl_ray.config import config_from_dict
from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.loader import build_model
tiny = {"hidden": 32, "layers": 1, "heads": 2}
cfg = {"backbone": "bert", "tiny": tiny, "prompt": {"n_ctx": 2, "depth": 1}, "device": "cpu", "compile": True}
try:
    build_model(config_from_dict({"model": cfg}).model, ["a", "b"], texts=["a b"])
except ModelError as exc:
    print(f"ModelError: {exc}")
"""


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def models(request: pytest.FixtureRequest, tiny_config: ExperimentConfig) -> tuple[str, Pair]:
    """(dtype, (eager, compiled)): the same tiny random BERT twice, compile off and on."""
    cfg = tiny_config.with_overrides(
        ["model.backbone=bert", "model.max_length=12", "model.prompt.depth=2", f"model.dtype={request.param}"]
    )
    eager = build_model(cfg.model, NAMES, texts=TEXTS)
    compiled = build_model(cfg.with_overrides(["model.compile=true"]).model, NAMES, texts=TEXTS)
    return request.param, (eager, compiled)


def _loss_and_grads(
    model: DualPromptModel, rows: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    task, data = (r.clone().requires_grad_() for r in rows)
    owner = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    logits = model.logits(model.encode(TEXTS), task, data, owner, model.class_features(task))
    loss = F.cross_entropy(logits, torch.tensor(LABELS))
    loss.backward()
    assert task.grad is not None and data.grad is not None
    return loss.detach(), task.grad, data.grad


def _clients(model: DualPromptModel) -> list[ClientData]:
    ids, labels = model.encode(TEXTS), torch.tensor(LABELS)
    return [ClientData(ids[p], labels[p]) for p in ([0, 2, 4, 6, 1], [1, 3, 5, 7, 0, 2, 6], [2, 5, 7])]


@pytest.mark.parametrize("backbone", ["clip", "vit"])
def test_compile_with_an_unsupported_backbone_fails_fast_naming_the_supported_one(
    tiny_config: ExperimentConfig, backbone: str
) -> None:
    cfg = tiny_config.with_overrides([f"model.backbone={backbone}", "model.compile=true"]).model
    with pytest.raises(ModelError, match=r"model.compile: true is supported for model.backbone bert only"):
        build_model(cfg, ["a", "b"])


def test_a_compiler_failure_during_warm_up_is_a_model_error_saying_what_to_do() -> None:
    def broken() -> None:
        raise torch._inductor.exc.InvalidCxxCompiler()

    with pytest.raises(ModelError, match=r"C\+\+ compiler.*set model.compile: false"):
        warm_up(broken, torch.device("cpu"))


def test_without_a_cxx_compiler_the_build_fails_with_a_model_error(tmp_path: Path) -> None:
    # A fresh process (dynamo and inductor cache compiled code in-process and on disk).
    env = {**os.environ, "CXX": str(tmp_path / "no-such-g++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-c", NO_COMPILER]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert "ModelError: model.compile: true but torch.compile failed" in done.stdout, done.stderr[-2000:]
    assert "No working C++ compiler" in done.stdout


def test_compiled_loss_and_prompt_gradients_match_eager(models: tuple[str, Pair]) -> None:
    dtype, (eager, compiled) = models
    tol = TOLERANCE[dtype]
    rows = prompt_rows(eager, 3)
    for want, got in zip(_loss_and_grads(eager, rows), _loss_and_grads(compiled, rows)):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * want.abs().max().item())


def test_compiled_local_training_and_evaluation_match_eager(models: tuple[str, Pair]) -> None:
    dtype, (eager, compiled) = models
    tol = TOLERANCE[dtype]
    hp = LocalTraining(epochs=2, batch_size=3, lr=0.1, momentum=0.9)
    outs = []
    task, data = prompt_rows(eager, 3)
    for model in (eager, compiled):
        trained = train_clients(model, task, data, _clients(model), hp, [21, 22, 23])
        pairs = [(i, j) for i in range(3) for j in range(3)]
        outs.append((trained, evaluate_pairs(model, trained.task, trained.data, _clients(model), pairs, 4)))
    (want, want_ev), (got, got_ev) = outs
    compared = ((want.task, got.task), (want.data, got.data), (want.mean_loss, got.mean_loss))
    for a, b in (*compared, (want_ev.loss, got_ev.loss)):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol * a.abs().max().item())


def test_compiled_results_do_not_depend_on_the_batch_a_sample_shares(models: tuple[str, Pair]) -> None:
    _, (eager, compiled) = models
    task, data = prompt_rows(eager, 2)
    ids = compiled.encode(TEXTS)
    owner = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    with torch.inference_mode():
        together = compiled.logits(ids, task, data, owner, compiled.class_features(task))
        for n in (0, 5):
            one = slice(n, n + 1)
            alone = compiled.logits(ids[one], task, data, owner[one], compiled.class_features(task))
            assert torch.equal(alone[0], together[n])


def test_after_the_build_no_batch_shape_or_autograd_mode_compiles_again(models: tuple[str, Pair]) -> None:
    _, (eager, compiled) = models
    hp = LocalTraining(epochs=1, batch_size=5, lr=0.1)
    task, data = prompt_rows(eager, 3)
    with torch._dynamo.config.patch(error_on_recompile=True):  # the warm-up at build covered everything
        trained = train_clients(compiled, task, data, _clients(compiled), hp, [1, 2, 3])
        evaluate_pairs(compiled, trained.task, trained.data, _clients(compiled), [(0, 1), (2, 2)], 7)
        with torch.no_grad():
            compiled.initial_prompts(3)
