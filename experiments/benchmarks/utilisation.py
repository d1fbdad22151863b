"""Utilisation: the engine's FLOP/s in a worker against the dense-matmul ceiling.

One torch thread, as a backbone worker with ``cpus_per_worker: 1``. Phases are those of
``profile_engine.phases``: a training slice of 5 clients and a cross-evaluation block of
4 models x 5 validation sets. FLOPs are those executed (``FlopCounterMode``: matmuls;
the CPU flash-attention kernel is not counted, ~2% of the FLOPs here); seconds are CPU
seconds of the one thread. ``backbone="reference"`` measures the same phases on the padded
transformers twin the baseline arms run (``naive.baseline_model``): more FLOPs for the same
work, and its own utilisation.
"""

from __future__ import annotations

from typing import Any

import torch
from flops import achieved, matmul_ceiling
from naive import baseline_model
from profile_engine import phases

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.runtime.work import WorkerCore

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def measure_utilisation(
    config: ExperimentConfig, dtype: str, threads: int = 1, backbone: str = "package"
) -> list[dict[str, Any]]:
    """One row per phase: GFLOP per call, seconds per call, GFLOP/s, ceiling, utilisation."""
    torch.set_num_threads(threads)
    core = WorkerCore(config, num_threads=threads)
    core.model = baseline_model(core.model, backbone)
    slice_size = min(5, config.federation.cohort)
    ceiling = matmul_ceiling(DTYPES[dtype])
    rows = []
    for name, fn in phases(core, slice_size=slice_size, models=min(4, config.federation.cohort)).items():
        flop_s, flops, seconds = achieved(fn)
        rows.append({
            "workload": "minilm" if config.model.backbone == "bert" else config.model.backbone,
            "dtype": dtype, "backbone": backbone, "phase": name, "gflop": flops / 1e9,
            "seconds": seconds, "gflops": flop_s / 1e9, "ceiling_gflops": ceiling / 1e9,
            "utilisation": flop_s / ceiling,
        })  # fmt: skip
    return rows
