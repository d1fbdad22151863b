"""The aggregator process never imports torch for the numpy-only methods.

An aggregator starts once per run; torch would cost it ~2-3 CPU-seconds and ~600 MiB of
resident memory for nothing, since its server maths is numpy. A top-level ``import torch``
slipping into ``algorithms/base.py`` or the runtime's server modules fails this test."""

from __future__ import annotations

import subprocess
import sys

import pytest

SERVER_ONLY = ["dp2fl", "promptfl", "local", "fedprox"]


@pytest.mark.parametrize("name", SERVER_ONLY)
def test_the_aggregator_side_of_a_numpy_method_imports_no_torch(name: str) -> None:
    code = (
        "import sys\n"
        "import dp2fl_ray.runtime.aggregator_actor\n"
        "from dp2fl_ray.algorithms.registry import build_algorithm\n"
        "from dp2fl_ray.config import AlgorithmConfig\n"
        f"build_algorithm(AlgorithmConfig(name={name!r}))\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_worker_side_still_gets_the_default_training_loop() -> None:
    """The hooks that moved their torch imports inside still answer on a worker."""
    from dp2fl_ray.algorithms.registry import build_algorithm
    from dp2fl_ray.config import AlgorithmConfig, TrainConfig
    from dp2fl_ray.engine.batched import PROMPT_FORWARD, LocalTraining

    algorithm = build_algorithm(AlgorithmConfig(name="fedprox"))
    hp = algorithm.local_training(TrainConfig())
    assert isinstance(hp, LocalTraining) and hp.proximal_mu == pytest.approx(0.01)
    assert algorithm.forward() is PROMPT_FORWARD
