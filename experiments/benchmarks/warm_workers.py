"""What ``runtime.keep_workers`` saves: the same tiny run started cold and on warm workers.

    .venv/bin/python experiments/benchmarks/warm_workers.py [--reps 3] [--out DIR]

One local Ray (2 CPUs), the suite's tiny CLIP on digits (4 clients, 2 rounds, 2 workers).
Each rep runs the config cold (``keep_workers: false``, so new worker processes import torch
and build the backbone) and then warm (``keep_workers: true`` after a run that kept its
workers), interleaved. Compares the summaries' ``wall_s`` and ``startup_s`` and checks that
the warm run's numbers equal the cold run's. Writes ``warm_workers.md`` to ``--out``
(default ``results/benchmarks``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
TINY = {"hidden": 64, "layers": 2, "heads": 4, "projection": 32, "image_size": 16, "patch_size": 8}


def tiny_config(keep: bool) -> Any:
    from dp2fl_ray.config import config_from_dict

    return config_from_dict(
        {
            "name": "warm",
            "model": {"tiny": TINY, "prompt": {"n_ctx": 2, "depth": 2}, "device": "cpu"},
            "data": {"source": "digits"},
            "federation": {"population": 4, "cohort": 4, "rounds": 2, "new_clients": 1},
            "train": {"local_epochs": 1, "batch_size": 8},
            "runtime": {"workers": 2, "cpus_per_worker": 1, "clients_per_slice": 2, "keep_workers": keep},
        }
    )


def numbers(run_dir: Path) -> pd.DataFrame:
    from dp2fl_ray.metrics import read_table

    frame = read_table(run_dir, "clients")
    frame = frame[[c for c in frame.columns if not c.endswith("_s")]]
    return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from dp2fl_ray.runtime import warm_workers
    from dp2fl_ray.runtime.simulation import run_experiment

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows, same = [], True
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for rep in range(args.reps):
            cold = run_experiment(tiny_config(False), output_dir=out, run_name=f"cold-{rep}", progress=False)
            run_experiment(tiny_config(True), output_dir=out, run_name=f"prime-{rep}", progress=False)
            warm = run_experiment(tiny_config(True), output_dir=out, run_name=f"warm-{rep}", progress=False)
            warm_workers.release()
            same &= numbers(out / f"cold-{rep}").equals(numbers(out / f"warm-{rep}"))
            for arm, summary in (("cold", cold), ("warm", warm)):
                rows.append(
                    {"arm": arm, "rep": rep, "wall_s": summary["wall_s"], "startup_s": summary["startup_s"]}
                )
                print(
                    f"rep {rep} {arm}: wall {summary['wall_s']:.1f} s, start-up {summary['startup_s']:.2f} s"
                )
    ray.shutdown()
    frame = pd.DataFrame(rows)
    med = frame.groupby("arm")[["wall_s", "startup_s"]].median()
    ratio = med.loc["cold", "wall_s"] / med.loc["warm", "wall_s"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    per_rep = frame.pivot(index="rep", columns="arm", values="wall_s")[["cold", "warm"]].to_numpy()
    lines = [
        "# What `runtime.keep_workers` saves",
        "",
        (
            f"Written by `experiments/benchmarks/warm_workers.py` on "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPU cores (load average "
            f"{load} at the end); the suite's tiny CLIP on digits, 2 workers, 2 rounds; {args.reps} "
            "interleaved rep(s), medians. Quote the ratio, not the seconds."
        ),
        "",
        "| arm | wall s (median) | start-up s (median) |",
        "|---|---|---|",
        *[
            f"| {arm} | {med.loc[arm, 'wall_s']:.1f} | {med.loc[arm, 'startup_s']:.2f} |"
            for arm in ("cold", "warm")
        ],
        "",
        f"Cold over warm wall time: {ratio:.2f}x. Warm runs' numbers equal the cold runs': {same}.",
        f"Per-rep wall seconds (cold, warm): {np.round(per_rep, 1).tolist()}.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "warm_workers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
