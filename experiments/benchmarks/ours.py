"""The dp2fl-ray arm: ``run_experiment`` exactly as a user runs it (local Ray, worker pool,
batched engine), timed from the rounds table the run itself writes (whole rounds and their
phases)."""

from __future__ import annotations

import tempfile
import time
from typing import Any

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.metrics import read_table
from dp2fl_ray.runtime.simulation import run_experiment


def run_ours(config: ExperimentConfig) -> dict[str, Any]:
    """Run one experiment in a scratch directory; start-up is everything before round 1."""
    ends: list[float] = []
    epochs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="dp2fl-bench-") as out:
        t0 = time.perf_counter()
        summary = run_experiment(
            config,
            output_dir=out,
            run_name="run",
            progress=False,
            on_round=lambda row: (ends.append(time.perf_counter()), epochs.append(time.time())),
        )
        rounds = read_table(f"{out}/run", "rounds").sort_values("round")
    round_s = [float(s) for s in rounds["wall_s"]]
    phases = {k: [float(s) for s in rounds[k]] for k in ("train_s", "crosseval_s", "aggregate_s", "eval_s")}
    return {
        "startup_s": ends[0] - round_s[0] - t0,  # Ray start, actors, backbone and data loads
        "round_s": round_s,
        "final_acc": float(summary["personalized_acc"]),
        "threads": int(config.runtime.cpus_per_worker),
        "rounds_epoch": [epochs[0] - round_s[0], epochs[-1]],
        **phases,  # per round, as the naive arm times them
    }
