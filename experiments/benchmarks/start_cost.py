"""What each process of a run pays before its first round: CPU-seconds and peak memory.

    .venv/bin/python experiments/benchmarks/start_cost.py [--reps 3] [--out DIR]

A cold run starts a driver, an aggregator and its workers; on a small run their start-up is
most of the wall time, and in the test suite most of the CPU. Each measurement is a fresh
interpreter that does one process's start-up work and reports its own ``getrusage``:

- ``driver``: import what ``dp2fl-ray run`` imports before Ray starts the actors;
- ``aggregator``: import the aggregator actor's module and build its algorithm (DP2FL);
- ``worker clip`` / ``worker bert``: build a ``WorkerCore`` (data source and backbone) for
  the quickstart's tiny CLIP on digits, and for a tiny BERT on CLINC150.

Each worker row is measured twice, side by side: as the package does it (``lazy``: only the
configured backbone's builder is imported) and after first importing what the loader used to
import for every backbone (``eager``: timm, the packed BERT encoder, transformers' CLIP and
torch's inductor), the cost this layout removes. Ray's own process start is not included.
Reps are interleaved; the table gives medians. Writes ``start_cost.md`` to ``--out``
(default ``results/benchmarks``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from dp2fl_ray.report.files import write_text

REPO = Path(__file__).resolve().parents[2]
EAGER = (
    "import timm, torch._inductor.compile_fx, dp2fl_ray.models.bert_loading, "
    "dp2fl_ray.models.clip_loading, dp2fl_ray.models.vit_prompt\n"
)
BERT = ["model.backbone=bert", "data.source=clinc150", "data.partition.shots=2", "model.max_length=16"]
WORKER = (
    "from dp2fl_ray.config import load_config\n"
    "from dp2fl_ray.runtime.work import WorkerCore\n"
    "WorkerCore(load_config('experiments/quickstart.yaml', {sets!r}), 1)\n"
)
CASES: dict[str, str] = {
    "driver": "import dp2fl_ray.cli, dp2fl_ray.commands.run, dp2fl_ray.runtime.simulation\n",
    "aggregator": (
        "import dp2fl_ray.runtime.aggregator_actor\n"
        "from dp2fl_ray.algorithms.registry import build_algorithm\n"
        "from dp2fl_ray.config import AlgorithmConfig\n"
        "build_algorithm(AlgorithmConfig(name='dp2fl'))\n"
    ),
    "worker clip, lazy": WORKER.format(sets=[]),
    "worker clip, eager": EAGER + WORKER.format(sets=[]),
    "worker bert, lazy": WORKER.format(sets=BERT),
    "worker bert, eager": EAGER + WORKER.format(sets=BERT),
}
REPORT = (
    "import json, resource\n"
    "u = resource.getrusage(resource.RUSAGE_SELF)\n"
    "print(json.dumps({'cpu_s': u.ru_utime + u.ru_stime, 'rss_mib': u.ru_maxrss / 1024}))\n"
)


def measure(code: str) -> dict[str, float]:
    """One fresh interpreter running ``code``: its CPU-seconds and peak RSS."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code + REPORT], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"start-up case failed:\n{code}\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def table(rows: pd.DataFrame) -> str:
    medians = rows.groupby("case", sort=False)[["cpu_s", "rss_mib"]].median()
    lines = ["| process | CPU-s (median) | peak RSS MiB | lazy / eager CPU |", "|---|---:|---:|---:|"]
    for case, row in medians.iterrows():
        ratio = ""
        if str(case).endswith("lazy"):
            eager = medians.loc[str(case).replace("lazy", "eager"), "cpu_s"]
            ratio = f"{row['cpu_s'] / eager:.2f}x"
        lines.append(f"| {case} | {row['cpu_s']:.2f} | {row['rss_mib']:.0f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions of every case")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps must be at least 1, got {args.reps}")
    rows = []
    for rep in range(args.reps):
        for case, code in CASES.items():
            result = measure(code)
            rows.append({"rep": rep, "case": case, **result})
            print(f"rep {rep + 1}/{args.reps} {case}: {result['cpu_s']:.2f} CPU-s", flush=True)
    frame = pd.DataFrame(rows)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"# Start-up cost per process\n\n`experiments/benchmarks/start_cost.py --reps {args.reps}`, "
        f"{stamp}, {os.cpu_count()} CPUs; medians of {args.reps} interleaved reps, each a fresh "
        "interpreter (Ray's own process start not included).\n\n"
        f"{table(frame)}\n\nCPU-s per rep: "
        + "; ".join(
            f"{case} " + " / ".join(f"{x:.2f}" for x in group["cpu_s"])
            for case, group in frame.groupby("case", sort=False)
        )
        + ".\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "start_cost.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
