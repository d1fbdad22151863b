"""Headroom: how far issue 15's throughput targets sit from this CPU's matmul ceiling.

    .venv/bin/python experiments/benchmarks/headroom.py [--quick]

The throughput benchmark (``throughput.py``) times whole rounds; this script asks what
those ratios *could* be. On the DP2FL workload of ``workloads.py`` (MiniLM on CLINC150,
depth-1 prompts, plain SGD), in one process with one torch thread (what a backbone worker
with ``cpus_per_worker: 1`` runs), it measures the two kinds of work a round is made of:

- ``train``: 5 clients' local training. The naive loop's own code
  (``naive.train_one_client``, one client after another, B = 1) on the transformers model
  as it is (``hf_loop.py``: the headline baseline), against the engine's
  ``train_clients`` (the 5 clients in one pass) on the package's packed model;
- ``crosseval``: 4 models x 5 validation sets. The naive loop's ``evaluate_one`` pair by
  pair, against the engine's ``evaluate_pairs``.

Each arm's FLOPs are counted over the very calls that are timed (``FlopCounterMode``:
matmuls and attention, forward and backward; the CPU flash-attention kernel is not
counted, about 2% of the work here); seconds are the thread's CPU seconds, so other jobs on
a shared machine do not count as ours. The table gives each arm's utilisation of the dense
matmul ceiling in its dtype, the ratio ``naive CPU-s / arm CPU-s``, and the *bound*: the
ratio the arm would reach if it ran its FLOPs at 100% of that ceiling,
``naive CPU-s / (arm GFLOP / ceiling)``. A target above the bound cannot be met on this
CPU by running the same FLOPs faster, only by running fewer. The second bound takes the
GEMMs' share of the arm's time from torch.profiler (self CPU time of addmm, mm, bmm) and
asks two things: how close the GEMMs alone run to the ceiling (every counted FLOP over
the GEMMs' time: attention's few FLOPs ride along), and what the ratio would be if the
GEMMs cost nothing and the rest (attention, LayerNorm, GELU, gathers, the optimiser)
stayed: ``naive CPU-s / (arm CPU-s x (1 - GEMM share))``.
Where AMX makes bf16 GEMMs ~10x cheaper than float32's, that is the bf16 arm's ceiling.

Writes ``results/benchmarks/headroom.md`` (``--quick``: ``headroom_quick.md``, 2 clients and
2 models, a smoke run of the script). The suite runs ``measure`` on a tiny BERT instead
(``tests/test_benchmarks.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from flops import achieved, matmul_ceiling
from hf_loop import transformers_twin
from naive import evaluate_one, train_one_client
from workloads import workload_config

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.engine import evaluate_pairs, train_clients
from dp2fl_ray.models.bert_prompt import BertPrompt
from dp2fl_ray.report.files import write_text
from dp2fl_ray.runtime.work import WorkerCore, local_training
from dp2fl_ray.seeding import derive_seed

OUT = Path(__file__).resolve().parents[2] / "results" / "benchmarks"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
GEMM_OPS = frozenset({"aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::matmul"})
TARGETS = {
    "float32": "2x (DP2FL round), 2x (PromptFL training)",
    "bfloat16": "3x (DP2FL round), 3.5x (PromptFL training)",
}


def phase_closures(core: WorkerCore, naive: bool, clients: int, models: int) -> dict[str, Callable[[], None]]:
    """The two phases as the naive loop (``naive=True``) or the engine runs them."""
    cfg = core.config
    model = transformers_twin(core.model) if naive and isinstance(core.model, BertPrompt) else core.model
    task0, data0 = core.initial_prompts()
    hp = local_training(cfg)
    train_sets = [core.client_data(c, "train") for c in range(clients)]
    val_sets = [core.client_data(c, "val") for c in range(clients)]
    seeds = [derive_seed(cfg.seed, "shuffle", 1, c) for c in range(clients)]
    batch = cfg.train.eval_batch_size

    if naive:

        def train() -> None:
            for c in range(clients):
                train_one_client(model, task0, data0, train_sets[c], hp, seeds[c])

        def crosseval() -> None:
            for _ in range(models):
                for c in range(clients):
                    evaluate_one(model, task0, data0, val_sets[c], batch)

    else:
        rows = max(models, clients)
        task = torch.from_numpy(task0)[None].repeat(rows, 1)
        data = torch.from_numpy(data0)[None].repeat(rows, 1)
        pairs = [(i, j) for i in range(models) for j in range(clients)]

        def train() -> None:
            train_clients(model, task[:clients], data[:clients], train_sets, hp, seeds)

        def crosseval() -> None:
            evaluate_pairs(model, task[:models], data[:models], val_sets, pairs, batch)

    return {"train": train, "crosseval": crosseval}


def measure(config_of: Callable[[str], ExperimentConfig], clients: int, models: int) -> list[dict[str, Any]]:
    """One row per (arm, phase), the naive loop first; ``config_of(dtype)`` gives the config."""
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    cores: dict[str, tuple[WorkerCore, float]] = {}  # per dtype: one core and one ceiling for its arms
    for arm, dtype, naive in (("naive loop", "float32", True), ("dp2fl-ray", "float32", False),
                              ("dp2fl-ray", "bfloat16", False)):  # fmt: skip
        if dtype not in cores:
            cores[dtype] = (WorkerCore(config_of(dtype), num_threads=1), matmul_ceiling(DTYPES[dtype]))
        core, ceiling = cores[dtype]
        for phase, fn in phase_closures(core, naive, clients, models).items():
            flop_s, flops, seconds = achieved(fn)
            rows.append({"arm": arm, "dtype": dtype, "phase": phase, "gflop": flops / 1e9, "cpu_s": seconds,
                         "ceiling_gflops": ceiling / 1e9, "gemm_share": gemm_share(fn)})  # fmt: skip
            print(f"{arm:10s} {dtype:8s} {phase:9s} {flops / 1e9:7.1f} GFLOP {seconds:6.2f} CPU-s "
                  f"{flop_s / ceiling:5.1%} of {ceiling / 1e9:.0f} GFLOP/s", flush=True)  # fmt: skip
    return with_ratios(rows)


def gemm_share(fn: Callable[[], None]) -> float:
    """The share of ``fn``'s self CPU time spent in dense matrix products (torch.profiler)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS) / max(total, 1e-9)


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add GFLOP/s, utilisation, the ratio to the naive loop's CPU-s (per phase) and the bound:
    that ratio were the arm's GFLOP run at its dtype's ceiling."""
    naive_s = {r["phase"]: r["cpu_s"] for r in rows if r["arm"] == "naive loop"}
    out = []
    for r in rows:
        gflops = r["gflop"] / r["cpu_s"]
        out.append(
            {
                **r,
                "gflops": gflops,
                "utilisation": gflops / r["ceiling_gflops"],
                "ratio": naive_s[r["phase"]] / r["cpu_s"],
                "bound": naive_s[r["phase"]] / (r["gflop"] / r["ceiling_gflops"]),
                "gemm_utilisation": r["gflop"] / (r["cpu_s"] * r["gemm_share"]) / r["ceiling_gflops"],
                "bound_free_gemm": naive_s[r["phase"]] / (r["cpu_s"] * (1 - r["gemm_share"])),
            }
        )
    return out


def write(rows: list[dict[str, Any]], quick: bool) -> Path:
    """The table, with what it says about each dtype's target."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Headroom: the throughput targets against this CPU's matmul ceiling",
        "",
        (
            f"`experiments/benchmarks/headroom.py{' --quick' if quick else ''}`, {when}, {os.cpu_count()} "
            "CPUs, one torch thread; MiniLM DP2FL workload (`workloads.py`), naive loop = the transformers "
            "model as it is with dynamic padding (float32), one client / one pair at a time."
        ),
        "",
        (
            "| arm | dtype | phase | GFLOP | CPU-s | GFLOP/s | ceiling GFLOP/s | utilisation "
            "| x naive (CPU-s) | bound at 100% of ceiling | GEMM share of time | GEMM utilisation "
            "| bound if GEMMs were free |"
        ),
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arm']} | {r['dtype']} | {r['phase']} | {r['gflop']:.1f} | {r['cpu_s']:.2f} "
            f"| {r['gflops']:.1f} | {r['ceiling_gflops']:.1f} | {r['utilisation']:.0%} | {r['ratio']:.2f}x "
            f"| {r['bound']:.2f}x | {r['gemm_share']:.0%} | {r['gemm_utilisation']:.0%} "
            f"| {r['bound_free_gemm']:.2f}x |"
        )
    lines += ["", "Issue 15's targets: " + "; ".join(f"{k}: {v}" for k, v in TARGETS.items()) + "."]
    out = OUT / ("headroom_quick.md" if quick else "headroom.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_text(out, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 clients, 2 models: a smoke run")
    args = parser.parse_args()
    clients, models = (2, 2) if args.quick else (5, 4)
    rows = measure(lambda dtype: workload_config("minilm", algorithm="dp2fl", dtype=dtype, quick=args.quick),
                   clients, models)  # fmt: skip
    print(f"wrote {write(rows, args.quick)}")


if __name__ == "__main__":
    main()
