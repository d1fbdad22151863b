"""The fixed workloads every arm of the throughput benchmark runs (one config each).

``minilm``: the packaged all-MiniLM-L6-v2 on CLINC150, 20 clients of one domain each
(``domain`` partition, 8 shots: 8 training and 4 validation utterances per intent), 8
soft-prompt tokens at depth 1 (layer 0 only), cohort 10, 1 local epoch, batch 8, plain SGD
(lr 0.05, no momentum), 32 tokens, 3 rounds (the DP2FL round too).
``clip``: the same federation with the tiny random CLIP on scikit-learn's digits (the
``paper`` partition: digits has no domains).

No held-out clients (``new_clients: 0``): every arm's round is train, aggregate, and
evaluate the cohort's models on their own validation and test sets, nothing else, so
the arms do the same work. ``--quick`` shrinks the federation for a smoke run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dp2fl_ray.config import ExperimentConfig, config_from_dict

REPO = Path(__file__).resolve().parents[2]
CLINC150 = os.environ.get("DP2FL_CLINC150", str(REPO.parent / "shared" / "data" / "clinc150"))
WORKLOADS = ("minilm", "clip")

_COMMON: dict[str, Any] = {
    "seed": 0,
    "federation": {"population": 20, "cohort": 10, "rounds": 3, "new_clients": 0},
    "algorithm": {"name": "promptfl"},
    "train": {"local_epochs": 1, "batch_size": 8, "lr": 0.05, "eval_batch_size": 256},
    "runtime": {"workers": 2, "cpus_per_worker": 1, "clients_per_slice": 8},
    "output": {"checkpoint_every": 0},
}
_MODELS: dict[str, dict[str, Any]] = {
    "minilm": {
        "model": {
            "backbone": "bert",
            "path": "minilm",
            "prompt": {"n_ctx": 8, "depth": 1},
            "max_length": 32,
            "device": "cpu",
        },
        "train": {"momentum": 0.0},  # plain SGD
        "data": {
            "source": "clinc150",
            "path": CLINC150,
            "partition": {"scheme": "domain", "shots": 8, "val_fraction": 0.5},
        },
    },
    "clip": {
        "model": {"backbone": "clip", "path": None, "prompt": {"n_ctx": 8}, "device": "cpu"},
        "data": {"source": "digits", "partition": {"scheme": "paper"}},
    },
}
_QUICK = {"federation": {"population": 4, "cohort": 2, "rounds": 1, "new_clients": 0}}
DP2FL_ROUNDS = 3  # the DP2FL round comparison (issue 15: 3 rounds of 10 of 20 clients)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def workload_config(
    workload: str, *, algorithm: str = "promptfl", dtype: str = "float32", quick: bool = False
) -> ExperimentConfig:
    """The config of one workload; ``algorithm`` promptfl or dp2fl, ``dtype`` as ``model.dtype``."""
    if workload not in _MODELS:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
    data = _merge(_COMMON, _MODELS[workload])
    data = _merge(data, {"name": f"bench-{workload}-{algorithm}", "algorithm": {"name": algorithm}})
    data = _merge(data, {"model": {"dtype": dtype}})
    if algorithm == "dp2fl":
        data = _merge(data, {"federation": {"rounds": DP2FL_ROUNDS}})
    if quick:
        data = _merge(data, _QUICK)
    return config_from_dict(data)
