"""Where a worker's time goes: torch.profiler over one slice of training and one
cross-evaluation block, as a backbone worker runs them (one torch thread).

    .venv/bin/python experiments/benchmarks/profile_engine.py [--workload minilm] [--dtype bfloat16]
        [--compile] [--no-profile] [--phases train,crosseval]

Prints the top operators by self CPU time for the two phases (training: a slice of 5
clients; cross-evaluation: 10 models on 5 validation sets, one worker's half of a 10 x 10
round) and the wall time of each, so optimisations can be judged against where the time
really goes. Each phase runs once to warm up, once timed, once profiled (``--no-profile``:
wall times only). ``--compile`` sets ``model.compile: true`` (bert only): the build time
printed first then includes the torch.compile warm-up; the phases are timed after it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import workload_config

from dp2fl_ray.engine import LocalTraining, evaluate_pairs, train_clients
from dp2fl_ray.runtime.work import WorkerCore


def phases(core: WorkerCore, slice_size: int = 5, models: int = 10) -> dict[str, Callable[[], None]]:
    """Closures running one training slice and one cross-evaluation block."""
    cfg, model = core.config, core.model
    ids = list(range(max(models, slice_size)))
    task0, data0 = (torch.from_numpy(a) for a in core.initial_prompts())
    task = task0[None].repeat(max(models, slice_size), 1)  # (rows, Dt): rows for the slice and the models
    data = data0[None].repeat(max(models, slice_size), 1)
    train_sets = [core.client_data(c, "train") for c in ids[:slice_size]]
    val_sets = [core.client_data(c, "val") for c in ids[:slice_size]]
    hp = LocalTraining(cfg.train.local_epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.momentum)
    pairs = [(i, j) for i in range(models) for j in range(slice_size)]

    def train() -> None:
        train_clients(model, task[:slice_size], data[:slice_size], train_sets, hp, list(range(slice_size)))

    def crosseval() -> None:
        evaluate_pairs(model, task[:models], data[:models], val_sets, pairs, cfg.train.eval_batch_size)

    return {"train": train, "crosseval": crosseval}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", default="minilm")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="model.compile: true (bert only)")
    parser.add_argument("--no-profile", action="store_true", help="wall times only, no operator tables")
    parser.add_argument("--phases", default="train,crosseval", help="comma-separated subset of the two")
    parser.add_argument("--out", help="also write the tables to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = workload_config(args.workload, dtype=args.dtype)
    if args.compile:
        config = config.with_overrides(["model.compile=true"])
    start = time.perf_counter()
    core = WorkerCore(config, num_threads=args.threads)
    mode = "compiled" if args.compile else "eager"
    built = time.perf_counter() - start
    print(f"== build ({mode}): {built:.2f} s wall (data, backbone and any compile warm-up) ==", flush=True)
    text = []
    for name, run in phases(core).items():
        if name not in args.phases.split(","):
            continue
        run()  # warm-up (first-call allocations, kernel selection)
        start, cpu = time.perf_counter(), time.process_time()
        run()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        what = f"{args.workload}, {args.dtype}, {mode}, {args.threads} thread"
        lines = [f"\n== {name}: {wall:.2f} s wall, {cpu:.2f} s CPU ({what}) =="]
        if not args.no_profile:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                run()
            table = prof.key_averages().table(
                sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=48
            )
            lines.append(table)
        print("\n".join(lines), flush=True)
        text.extend(lines)
    if args.out:
        Path(args.out).write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
