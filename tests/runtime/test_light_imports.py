"""The aggregator and the driver import no model code; only the backbone workers do, and a
worker only its own backbone's.

An aggregator starts once per run, a driver once per CLI run or Tune trial; torch's model
stack and transformers would cost each several CPU-seconds and hundreds of MiB for nothing,
since the server maths is numpy and the driver handles ids, losses and metrics. A top-level
``import torch`` slipping into ``algorithms/base.py``, the runtime's server modules or the
worker actor's shell fails these tests. A worker pays only for the backbone it builds: timm
and the packed BERT encoder cost a clip worker seconds it does not use, and calling
``torch.compile`` at import pulls in inductor for runs that never compile."""

from __future__ import annotations

import subprocess
import sys

import pytest

SERVER_ONLY = ["dp2fl", "promptfl", "local", "fedprox"]
BERT = ["model.backbone=bert", "data.source=clinc150", "data.partition.shots=2", "model.max_length=16"]


def _loaded_after(code: str, modules: tuple[str, ...]) -> str:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = f"import sys\n{code}\nprint(sorted(m for m in {modules!r} if m in sys.modules))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize("name", SERVER_ONLY)
def test_the_aggregator_side_of_a_numpy_method_imports_no_torch(name: str) -> None:
    code = (
        "import dp2fl_ray.runtime.aggregator_actor\n"
        "from dp2fl_ray.algorithms.registry import build_algorithm\n"
        "from dp2fl_ray.config import AlgorithmConfig\n"
        f"build_algorithm(AlgorithmConfig(name={name!r}))"
    )
    # DP2FL's aggregator builds its aggregation table as a frame each round; the others need no pandas
    assert _loaded_after(code, ("torch",) if name == "dp2fl" else ("torch", "pandas")) == "[]"


def test_the_driver_side_imports_neither_torch_nor_transformers() -> None:
    """What ``dp2fl-ray run`` and a Tune trial import before the run starts its workers."""
    code = "import dp2fl_ray.cli, dp2fl_ray.runtime.simulation, dp2fl_ray.runtime.actors, dp2fl_ray.tune"
    assert _loaded_after(code, ("torch", "transformers", "timm")) == "[]"


def test_the_worker_side_still_gets_the_default_training_loop() -> None:
    """The hooks that moved their torch imports inside still answer on a worker."""
    from dp2fl_ray.algorithms.registry import build_algorithm
    from dp2fl_ray.config import AlgorithmConfig, TrainConfig
    from dp2fl_ray.engine.batched import PROMPT_FORWARD, LocalTraining

    algorithm = build_algorithm(AlgorithmConfig(name="fedprox"))
    hp = algorithm.local_training(TrainConfig())
    assert isinstance(hp, LocalTraining) and hp.proximal_mu == pytest.approx(0.01)
    assert algorithm.forward() is PROMPT_FORWARD


@pytest.mark.parametrize(
    ("sets", "absent"),
    [
        (["model.backbone=clip"], ("timm", "dp2fl_ray.models.bert_prompt", "torch._inductor.compile_fx")),
        (BERT, ("timm", "dp2fl_ray.models.clip_maple", "torch._inductor.compile_fx")),
    ],
    ids=["clip", "bert"],
)
def test_a_worker_imports_only_the_backbone_it_builds(sets: list[str], absent: tuple[str, ...]) -> None:
    code = (
        "from dp2fl_ray.config import load_config\n"
        "from dp2fl_ray.runtime.work import WorkerCore\n"
        f"core = WorkerCore(load_config('experiments/quickstart.yaml', {sets!r}), 1)\n"
        "print(type(core.model).__name__)"
    )
    built, loaded = _loaded_after(code, absent).splitlines()[-2:]
    assert built == ("ClipMaple" if "model.backbone=clip" in sets else "BertPrompt")
    assert loaded == "[]"
