"""What ``federation.eval_every`` saves: the same run evaluated every round and every N rounds.

    .venv/bin/python experiments/benchmarks/eval_every.py [--every 4] [--rounds 4] [--reps 1] [--quick]

One local Ray, the throughput benchmark's MiniLM workload (``workloads.py``; tiny CLIP on
digits with ``--quick``) with 2 held-out clients, PromptFL and DP2FL, each with
``eval_every: 1`` and ``eval_every: N``, runs interleaved. Compares the rounds' wall time
(the ``rounds`` table's ``wall_s``, start-up apart) and the evaluation phase's share
(``eval_s``); checks that the rounds both runs evaluated have the same numbers. Writes
``results/benchmarks/eval_every.md`` (``eval_every_quick.md`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import REPO, workload_config

from dp2fl_ray.metrics import read_table

METHODS = ("promptfl", "dp2fl")


def run_one(method: str, every: int, rounds: int, quick: bool, out: Path, tag: str) -> pd.DataFrame:
    """One run; its rounds table."""
    from dp2fl_ray.runtime.simulation import run_experiment

    config = workload_config("clip" if quick else "minilm", algorithm=method, quick=quick).with_overrides(
        [f"federation.rounds={rounds}", f"federation.eval_every={every}", "federation.new_clients=2",
         "federation.population=22" if not quick else "federation.population=6"]
        # the quick mode proves the script: its runs share one warm set of workers (same numbers);
        # the full mode starts each run cold, so no run's round times inherit another's warm caches
        + (["runtime.keep_workers=true"] if quick else [])
    )  # fmt: skip
    name = f"{method}-every{every}-{tag}"
    run_experiment(config, output_dir=out, run_name=name, progress=False)
    return read_table(out / name, "rounds").assign(method=method, every=every, rep=tag)


def table(runs: pd.DataFrame, every: int) -> list[str]:
    lines = [
        (
            "| method | eval_every | rounds evaluated | rounds wall s (median) | eval s | eval share | "
            "round time vs eval_every 1 |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for method in runs["method"].unique():
        per = runs[runs["method"] == method].groupby(["every", "rep"])
        sums = per.agg(
            wall=("wall_s", "sum"), eval=("eval_s", "sum"), evaluated=("evaluated", "sum")
        ).reset_index()
        med = sums.groupby("every").median(numeric_only=True)
        base = float(med.loc[1, "wall"])
        for e in (1, every):
            row = med.loc[e]
            lines.append(
                f"| {method} | {e} | {int(row['evaluated'])} | {row['wall']:.1f} | {row['eval']:.1f} | "
                f"{row['eval'] / row['wall']:.0%} | {row['wall'] / base:.2f}x |"
            )
    return lines


def same_numbers(runs: pd.DataFrame, every: int) -> bool:
    """Whether the rounds both runs evaluated agree exactly (first rep)."""
    cols = ["train_loss", "personalized_acc", "global_acc"]
    ok = True
    for method in runs["method"].unique():
        a = runs[(runs["method"] == method) & (runs["every"] == 1) & (runs["rep"] == "r1")]
        b = runs[(runs["method"] == method) & (runs["every"] == every) & (runs["rep"] == "r1")]
        kept = b[b["evaluated"]]["round"]
        before = a.set_index("round").loc[kept, cols].to_numpy()
        after = b.set_index("round").loc[kept, cols].to_numpy()
        ok &= bool(np.array_equal(before, after, equal_nan=True))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny CLIP on digits, 2 rounds, PromptFL only")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    every = min(args.every, rounds)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    frames = []
    methods = METHODS[:1] if args.quick else args.methods  # the quick mode proves the script, not DP2FL
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(1, args.reps + 1):
            for method in methods:
                for e in (1, every):
                    frames.append(run_one(method, e, rounds, args.quick, Path(tmp), f"r{rep}"))
                    print(f"done {method} eval_every={e} rep {rep}", flush=True)
    ray.shutdown()
    runs = pd.concat(frames, ignore_index=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    workload = "tiny CLIP on digits (--quick)" if args.quick else "MiniLM on CLINC150 (workloads.py's minilm)"
    text = [
        "# What `federation.eval_every` saves",
        "",
        (
            f"Written by `experiments/benchmarks/eval_every.py{' --quick' if args.quick else ''}` "
            f"on {stamp}; "
            f"{os.cpu_count()} CPU cores shared with other work (noisy); {workload}, {rounds} rounds, "
            f"2 held-out clients, {args.reps} interleaved rep(s), medians. Seconds are the `rounds` table's "
            "`wall_s` summed over rounds (start-up apart); quote the ratios."
        ),
        "",
        *table(runs, every),
        "",
        f"Rounds evaluated by both runs have identical numbers: {same_numbers(runs, every)}.",
        "DP2FL still measures every client's validation loss every round (its next baseline `L_k`);",
        "what `eval_every` skips for it is the personal test and the global evaluation.",
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("eval_every_quick.md" if args.quick else "eval_every.md")
    path.write_text("\n".join(text), encoding="utf-8")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
