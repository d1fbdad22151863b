"""Compact client state: does ``store.dtype: bfloat16`` change DP2FL's accuracy on CLINC150?

    .venv/bin/python experiments/benchmarks/store_dtype.py [--cpu-quick] [--out DIR]
        [--seeds 0,1,2] [--set K=V ...]

Runs the same config and seed twice, once per store dtype (float32, then bfloat16; add
``--dtypes float32,bfloat16,float16`` for more), with the sharded store, and writes
``store_dtype.md``: personalised and global accuracy, the difference to float32 in points
(the issue's target: within 0.3 points for bfloat16), the store's bytes per client and in
total (``summary.json``), and the Parquet bytes of the shards on disk. Computation stays in
``model.dtype`` in every run; only the data prompts at rest between rounds change.

Default: ``experiments/clinc150_minilm.yaml`` (the packaged MiniLM on CLINC150, about 10
minutes a run on 2 cores). ``--cpu-quick``: a tiny random CLIP on digits for 2 rounds (the
test suite runs it to prove the script end to end; its accuracies mean nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = REPO / "results" / "benchmarks"
TARGET_POINTS = 0.3  # bfloat16 within this many accuracy points of float32

QUICK = {
    "name": "store_dtype_quick",
    "model": {
        "tiny": {"hidden": 32, "layers": 1, "heads": 2, "projection": 16, "image_size": 8, "patch_size": 4},
        "prompt": {"n_ctx": 1, "depth": 1},
        "device": "cpu",
    },
    "data": {"source": "digits"},
    "federation": {"population": 4, "cohort": 4, "rounds": 2, "new_clients": 1},
    "train": {"local_epochs": 1, "batch_size": 8},
    "runtime": {"workers": 1, "cpus_per_worker": 1, "clients_per_slice": 4},
    "output": {"checkpoint_every": 0},
}


def base_config(quick: bool) -> Any:
    """The experiment both runs share (the store set by ``with_dtype``)."""
    from dp2fl_ray.config import config_from_dict, load_config

    return config_from_dict(QUICK) if quick else load_config(REPO / "experiments" / "clinc150_minilm.yaml")


def with_dtype(config: Any, dtype: str) -> Any:
    return config.with_overrides(
        ["store.backend=sharded", f"store.dtype={dtype}", "output.checkpoint_every=0"]
    )


def shard_bytes(run_dir: Path) -> int:
    return sum(p.stat().st_size for p in (run_dir / "store").glob("shard-*.parquet"))


def measure(config: Any, dtypes: list[str], work: Path, seeds: list[int]) -> list[dict[str, Any]]:
    """One run per (seed, store dtype): the dtypes of a seed share its partition, cohorts and
    initialisation, so their difference is the store's alone; the fields of the report's table."""
    from dp2fl_ray.runtime.simulation import run_experiment

    rows = []
    for seed, dtype in ((s, d) for s in seeds for d in dtypes):
        name = f"seed{seed}-{dtype}"
        # a seed's runs share one warm set of workers (runtime.keep_workers: the same numbers as
        # cold ones, tests/runtime/test_warm_workers.py); another seed starts new ones
        run = with_dtype(config, dtype).with_overrides([f"seed={seed}", "runtime.keep_workers=true"])
        summary = run_experiment(run, output_dir=work, run_name=name, progress=False)
        print(f"seed {seed} {dtype}: personalized_acc {summary['personalized_acc']:.4f}", flush=True)
        rows.append(
            {
                "seed": seed,
                "dtype": dtype,
                "personalized_acc": float(summary["personalized_acc"]),
                "global_acc": float(summary["global_acc"]),
                "bytes_per_client": int(summary["bytes_per_client"]),
                "store_bytes": int(summary["store_bytes"]),
                "shard_file_bytes": shard_bytes(work / name),
                "wall_s": float(summary["wall_s"]),
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The report: one row per (seed, store dtype), differences against that seed's float32 run."""
    setting = (
        f"Config: `{meta['config']}`, seeds {', '.join(map(str, meta['seeds']))}, model.dtype "
        f"{meta['model_dtype']}, {meta['rounds']} rounds, sharded store. Written {meta['when']} by "
        "`experiments/benchmarks/store_dtype.py`."
    )
    header = (
        "| seed | store.dtype | personalised acc | diff (points) | global acc | diff (points) "
        "| bytes per client | store bytes | shard files | wall s |"
    )
    lines = ["# Compact client state: store.dtype and accuracy", "", setting, "", header]
    lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    diffs: dict[str, list[float]] = {}
    for r in rows:
        ref = next(x for x in rows if x["seed"] == r["seed"] and x["dtype"] == "float32")
        dp = 100 * (r["personalized_acc"] - ref["personalized_acc"])
        dg = 100 * (r["global_acc"] - ref["global_acc"])
        if r["dtype"] != "float32":
            diffs.setdefault(r["dtype"], []).extend([abs(dp), abs(dg)])
        lines.append(
            f"| {r['seed']} | {r['dtype']} | {100 * r['personalized_acc']:.2f} | {dp:+.2f} "
            f"| {100 * r['global_acc']:.2f} | {dg:+.2f} | {r['bytes_per_client']:,} | {r['store_bytes']:,} "
            f"| {r['shard_file_bytes']:,} | {r['wall_s']:.1f} |"
        )
    if "bfloat16" in diffs:
        worst = max(diffs["bfloat16"])
        verdict = "met" if worst <= TARGET_POINTS else "NOT met"
        lines += [
            "",
            (
                f"Target (bfloat16 within {TARGET_POINTS} points of float32, every seed, personalised "
                f"and global): {verdict} (largest difference {worst:.2f} points)."
            ),
        ]
    if meta["quick"]:
        lines += [
            "",
            "`--cpu-quick`: a tiny random model; the accuracies prove the script runs, nothing more.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu-quick", action="store_true", help="tiny CLIP on digits, 2 rounds (the suite's check)"
    )
    parser.add_argument("--dtypes", default="float32,bfloat16", help="store dtypes, float32 first")
    parser.add_argument("--out", type=Path, default=OUT, help="where store_dtype.md goes")
    parser.add_argument("--work", type=Path, help="where the runs go (default <out>/store_dtype_runs)")
    parser.add_argument(
        "--seeds", default=None, help="comma-separated seeds, each run once per dtype (default: the config's)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a config override (repeatable)"
    )
    args = parser.parse_args(argv)
    dtypes = args.dtypes.split(",")
    if dtypes[0] != "float32":
        parser.error("--dtypes must start with float32 (the reference)")
    config = base_config(args.cpu_quick).with_overrides(args.set)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [config.seed]
    work = args.work or args.out / "store_dtype_runs" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    rows = measure(config, dtypes, work, seeds)
    meta = {
        "config": (
            "--cpu-quick (tiny CLIP, digits)" if args.cpu_quick else "experiments/clinc150_minilm.yaml"
        )
        + "".join(f" --set {kv}" for kv in args.set),
        "seeds": seeds,
        "model_dtype": config.model.dtype,
        "rounds": config.federation.rounds,
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.cpu_quick,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "store_dtype.md").write_text(markdown(rows, meta))
    (args.out / "store_dtype.json").write_text(json.dumps(rows, indent=1))
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
