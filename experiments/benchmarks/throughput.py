"""Throughput of dp2fl-ray against a naive loop and Flower's simulation engine.

    .venv/bin/python experiments/benchmarks/throughput.py [--quick] [--reps 3]

One fixed workload (``workloads.py``: MiniLM on CLINC150, and the tiny CLIP on digits),
run three ways, each arm in a fresh child process whose whole process tree's peak RSS is
sampled (``measure.py``):

1. ``dp2fl-ray``: ``run_experiment`` as a user runs it (local Ray, 2 workers x 1 CPU,
   batched engine), ``algorithm.name: promptfl``; in float32 and in bfloat16;
2. ``naive``: one process (2 torch threads), clients one after another (``naive.py``);
3. ``flower``: Flower's simulation engine, 2 single-thread actors (``flower_arm.py``, in
   ``.venv-bench``; skipped with a note when that venv is missing).

The baseline arms run the backbone up to three ways: ``transformers`` (for MiniLM the
transformers model as it is, each batch padded to its longest utterance, ``hf_loop.py``:
the honest loop the targets are about, issue 15 part 7), ``reference`` (the transformers
layers with every text padded to ``model.max_length``, ``bert_reference.py``: a secondary
row) and ``package`` (the package's own packed model: what is left is the engine's and the
runtime's share). The tiny CLIP has one implementation: ``package`` only. Every arm also
reports its phases per round (training, cross-evaluation, aggregation, evaluation), timed
the way the rounds table times them; ``x naive, training`` compares training phases.

``--arms dp2fl-ray+compile`` adds the dp2fl-ray arm with ``model.compile: true`` to the
DP2FL round (its compile warm-up counts as start-up). Then the DP2FL round (training +
m x m cross-evaluation + aggregation + evaluation): dp2fl-ray against the naive loop doing
the same maths one client and one validation set at a time. Arms are interleaved (rep 1 of
every arm, then rep 2, ...) because the machine is shared and noisy; tables quote medians
and ratios. Finally the utilisation of the engine's backbone passes against this machine's
dense-matmul ceiling (``flops.py``).

Writes ``results/benchmarks/throughput.md`` and ``throughput_runs.parquet`` (every run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from measure import run_child
from tables import (
    PHASE_COLUMNS,
    SUMMARY_COLUMNS,
    UTILISATION_COLUMNS,
    markdown_table,
    summarise,
    updates_per_s,
)
from workloads import REPO, WORKLOADS, workload_config

BENCH_PYTHON = REPO / ".venv-bench" / "bin" / "python"
OUT = REPO / "results" / "benchmarks"
# (section, arm, dtype, baseline model): what one repetition of a workload runs, in this order.
# The headline comparisons first (ours against the transformers loop), so that a run cut short on a
# loaded machine still has them; the secondary baselines after.
PLAN = (
    ("dp2fl", "dp2fl-ray", "float32", "-"),
    ("dp2fl", "naive", "float32", "transformers"),
    ("dp2fl", "dp2fl-ray", "bfloat16", "-"),
    ("promptfl", "dp2fl-ray", "float32", "-"),
    ("promptfl", "naive", "float32", "transformers"),
    ("promptfl", "dp2fl-ray", "bfloat16", "-"),
    ("dp2fl", "naive", "float32", "reference"),
    ("promptfl", "naive", "float32", "reference"),
    ("promptfl", "flower", "float32", "reference"),
    ("dp2fl", "naive", "float32", "package"),
    ("promptfl", "naive", "float32", "package"),
    ("promptfl", "flower", "float32", "package"),
    ("dp2fl", "dp2fl-ray+compile", "float32", "-"),
    ("dp2fl", "dp2fl-ray+compile", "bfloat16", "-"),
)
COMPILED = "+compile"  # an arm name's suffix: the same arm with model.compile: true


def child_main(args: argparse.Namespace) -> None:
    """Inside a child process: run one arm and write its JSON result."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    config = workload_config(args.workload, algorithm=args.algorithm, dtype=args.dtype, quick=args.quick)
    if args.child.endswith(COMPILED):
        config = config.with_overrides(["model.compile=true"])
    if args.child.removesuffix(COMPILED) == "dp2fl-ray":
        from ours import run_ours

        result = run_ours(config)
    elif args.child == "naive":
        from naive import run_naive

        result = run_naive(
            config,
            threads=int(config.runtime.workers * config.runtime.cpus_per_worker),
            baseline=args.baseline,
        )
    elif args.child == "flower":
        import numpy as np
        from flower_arm import run_flower

        with np.load(args.initial) as init:
            result = run_flower(config, (init["task"], init["data"]), baseline=args.baseline)
    elif args.child == "utilisation":
        from utilisation import measure_utilisation

        result = {"rows": measure_utilisation(config, args.dtype, backbone=args.baseline)}
    else:
        raise SystemExit(f"unknown arm {args.child!r}")
    Path(args.result).write_text(json.dumps(result))


def initial_prompts_file(workload: str, quick: bool, scratch: Path) -> Path:
    """The round-0 prompts for the Flower server (computed here, so its process holds no backbone)."""
    import numpy as np
    import torch

    from dp2fl_ray.runtime.work import WorkerCore

    path = scratch / f"initial-{workload}.npz"
    if not path.exists():
        torch.set_num_threads(1)
        task, data = WorkerCore(workload_config(workload, quick=quick)).initial_prompts()
        np.savez(path, task=task, data=data)
    return path


def run_arm(
    section: str, workload: str, arm: str, dtype: str, baseline: str, args: argparse.Namespace, scratch: Path
) -> dict[str, Any]:
    python = str(BENCH_PYTHON) if arm == "flower" else sys.executable
    result_path = scratch / "result.json"
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--child",
        arm,
        "--workload",
        workload,
        "--algorithm",
        section,
        "--dtype",
        dtype,
        "--baseline",
        baseline,
        "--result",
        str(result_path),
    ]
    if args.quick:
        cmd.append("--quick")
    if arm == "flower":
        cmd += ["--initial", str(initial_prompts_file(workload, args.quick, scratch))]
    # this checkout's package first (not whichever one is pip-installed editable), then the scripts here
    path = os.pathsep.join([str(REPO), str(HERE)])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": path}
    res = run_child(cmd, result_path, timeout_s=args.timeout, env=env)
    cfg = workload_config(workload, algorithm=section, dtype=dtype, quick=args.quick)
    rounds_s = float(sum(res["round_s"]))
    return {
        "section": section,
        "workload": workload,
        "arm": arm,
        "dtype": dtype,
        "baseline": baseline,
        "rounds": len(res["round_s"]),
        "cohort": cfg.federation.cohort,
        "rounds_s": rounds_s,
        "round_s": rounds_s / len(res["round_s"]),
        "updates_per_s": updates_per_s(cfg.federation.cohort, len(res["round_s"]), rounds_s),
        "startup_s": res["startup_s"],
        "final_acc": res["final_acc"],
        "peak_rss_mb": res["peak_rss_mb"],
        "process_s": res["process_s"],
        "threads": res["threads"],
        "cpu_s_per_update": res.get("rounds_cpu_s", float("nan"))
        / (cfg.federation.cohort * len(res["round_s"])),
        **{k: float(sum(res[k])) / len(res[k]) for k in PHASE_COLUMNS if res.get(k)},  # s per round
    }


def write_report(runs: pd.DataFrame, util: pd.DataFrame, args: argparse.Namespace, notes: list[str]) -> Path:
    summary = summarise(runs)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = [
        "# Throughput: dp2fl-ray vs a naive loop vs Flower's simulation engine",
        "",
        (
            f"Written by `experiments/benchmarks/throughput.py{' --quick' if args.quick else ''}` on "
            f"{stamp}; {os.cpu_count()} CPU cores ({cpu_description()}), shared with other work (noisy): "
            f"medians of {args.reps} interleaved runs."
        ),
        (
            "client-updates/s = clients trained per round x rounds / wall time of the rounds (start-up "
            "apart). `x naive` = this arm's client-updates/s over the float32 naive loop's on the "
            "`transformers` backbone (the transformers model as is, dynamic padding: the headline baseline); "
            "`x naive (reference)` = the same against the loop padding every text to 32 tokens; "
            "`x naive, training` = the naive loop's training-phase seconds per round over this arm's. "
            "Peak RSS: the arm's whole process tree (Ray processes included), sampled every 0.2 s. "
            "CPU s / update: CPU seconds of that tree during the rounds per client-update; steadier than "
            "wall time on a shared machine (Ray workers run at nice 15, so others' load slows Ray arms' wall "
            "time most); `CPU x naive` = the headline naive loop's CPU s / update over this arm's."
        ),
        "",
        markdown_table(summary, SUMMARY_COLUMNS),
        "",
    ]
    if len(util):
        text += [
            "## Utilisation of the backbone passes (one worker, one thread)",
            "",
            markdown_table(util, UTILISATION_COLUMNS),
            "",
        ]
    text += [f"- {n}" for n in notes]
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"throughput{output_suffix(args)}.md"
    path.write_text("\n".join(text) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 clients, cohort 2, 1 round, 1 rep")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--sections", nargs="+", default=["promptfl", "dp2fl"], choices=["promptfl", "dp2fl"])
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["dp2fl-ray", "naive", "flower"],
        help=f"arms to run; dp2fl-ray{COMPILED} is dp2fl-ray with model.compile: true",
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "bfloat16"],
        choices=["float32", "bfloat16"],
        help="model.dtype of the arms to run (bfloat16 only where the CPU has native bf16 matmul)",
    )
    parser.add_argument(
        "--baselines",
        nargs="+",
        default=["transformers", "reference", "package"],
        choices=["transformers", "reference", "package"],
        help="backbone implementations the naive and Flower arms run",
    )
    parser.add_argument("--no-utilisation", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the report from the saved Parquet runs (rows with valid == False dropped)",
    )
    parser.add_argument(
        "--note", action="append", default=[], help="a line for the report's notes (repeatable)"
    )
    parser.add_argument(
        "--tag", default="", help="write throughput_<tag>.md and *_runs_<tag>.parquet (e.g. another machine)"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the saved runs of the sections this invocation does not run (their rows "
        "keep their own 'measured' date); a section is always measured whole, in one run",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--algorithm", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", default="-", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--initial", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    if args.quick:
        args.reps = 1
    notes: list[str] = list(args.note)
    if args.report_only:
        print(f"wrote {rewrite_report(args, notes)}")
        return
    arms = list(args.arms)
    if "flower" in arms and not BENCH_PYTHON.exists():
        arms.remove("flower")
        notes.append(
            f"Flower arm skipped: no {BENCH_PYTHON} (python3 -m venv .venv-bench; pip install "
            "'flwr[simulation]' and this package)"
        )
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"dp2fl-throughput-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    plan = [p for p in PLAN if p[0] in args.sections and p[1] in arms and p[2] in args.dtypes
            and p[3] in ("-", *args.baselines)]  # fmt: skip
    rows: list[dict[str, Any]] = []
    util_rows: list[dict[str, Any]] = []
    args.kept = kept_runs(args) if args.merge else pd.DataFrame()
    for rep in range(args.reps):
        for workload in args.workloads:
            for section, arm, dtype, baseline in plan:
                if section == "dp2fl" and workload != "minilm":
                    continue  # the DP2FL round comparison is on the MiniLM workload
                if baseline in ("transformers", "reference") and workload != "minilm":
                    continue  # only the BERT backbone has separate baseline implementations
                t = time.perf_counter()
                row = None
                for attempt in range(2):  # a shared machine's Ray can die under us: one retry
                    try:
                        row = run_arm(section, workload, arm, dtype, baseline, args, scratch)
                        break
                    except RuntimeError as exc:  # one failed run must not lose the others
                        notes.append(
                            f"rep {rep} {workload} {section} {arm} {dtype} {baseline} attempt {attempt + 1} "
                            f"failed: {str(exc).splitlines()[-1][:200]}"
                        )
                        print(exc, flush=True)
                if row is None:
                    continue
                rows.append({**row, "rep": rep, "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d")})
                print(
                    f"rep {rep} {workload:6s} {section:8s} {arm:9s} {dtype:8s} {baseline:9s} "
                    f"{row['updates_per_s']:6.2f} updates/s acc {row['final_acc']:.3f} peak "
                    f"{row['peak_rss_mb']:.0f} MiB ({time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
                save(rows, util_rows, args, notes)
            if (
                not args.no_utilisation and rep == 0 and workload == "minilm"
            ):  # utilisation does not vary with the arm: once
                util_rows += utilisation_rows(workload, rep, args, scratch, notes)
                save(rows, util_rows, args, notes)
    print(f"wrote {save(rows, util_rows, args, notes)}")


def rewrite_report(args: argparse.Namespace, notes: list[str]) -> Path:
    """The report again from the saved runs, without the rows marked ``valid == False``."""
    suffix = output_suffix(args)
    runs = pd.read_parquet(OUT / f"throughput_runs{suffix}.parquet")
    if "valid" in runs:
        runs = runs[runs["valid"].fillna(True).astype(bool)]
    util_path = OUT / f"utilisation_runs{suffix}.parquet"
    util = pd.read_parquet(util_path) if util_path.exists() else pd.DataFrame()
    if len(util):
        util = (
            with_backbone(util)
            .groupby(["workload", "dtype", "backbone", "phase"], as_index=False)
            .median(numeric_only=True)
        )
    args.reps = int(runs["rep"].max()) + 1
    return write_report(runs, util, args, notes)


def utilisation_rows(
    workload: str, rep: int, args: argparse.Namespace, scratch: Path, notes: list[str]
) -> list[dict[str, Any]]:
    """Utilisation of the engine on ``workload`` in float32 and bfloat16, and of the baselines'
    reference backbone in float32 (``utilisation.py``)."""
    out = []
    for dtype, backbone in (("float32", "package"), ("bfloat16", "package"), ("float32", "reference")):
        if dtype not in args.dtypes:
            continue
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "utilisation",
            "--workload",
            workload,
            "--algorithm",
            "promptfl",
            "--dtype",
            dtype,
            "--baseline",
            backbone,
            "--result",
            str(scratch / "u.json"),
        ]
        try:
            res = run_child(cmd + (["--quick"] if args.quick else []), scratch / "u.json", args.timeout)
        except RuntimeError as exc:
            notes.append(f"utilisation {workload} {dtype} {backbone} failed: {str(exc).splitlines()[-1]}")
            continue
        out += [{**r, "rep": rep} for r in res["rows"]]
    return out


def cpu_description() -> str:
    """The CPU's model name and whether it has native bf16 matmul (AVX-512 BF16 or AMX)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
        "unknown",
    )
    flags = set(
        next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    )
    bf16 = "native bf16" if flags & {"avx512_bf16", "amx_bf16"} else "no native bf16"
    return f"{name}, {'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX'}, {bf16}"


def output_suffix(args: argparse.Namespace) -> str:
    """What the output files' names end with: ``_quick`` for smoke runs, ``_<tag>`` with ``--tag``."""
    return ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else "")


def kept_runs(args: argparse.Namespace) -> pd.DataFrame:
    """With ``--merge``: the saved runs of the sections not being measured now."""
    path = OUT / f"throughput_runs{output_suffix(args)}.parquet"
    if not path.exists():
        return pd.DataFrame()
    saved = pd.read_parquet(path)
    if "measured" not in saved:
        saved = saved.assign(measured="earlier")  # saved before runs carried their date
    return saved[~saved["section"].isin(args.sections)]


def with_backbone(util: pd.DataFrame) -> pd.DataFrame:
    """Utilisation rows saved before the reference backbone was measured are the package's."""
    return util if "backbone" in util else util.assign(backbone="package")


def save(
    rows: list[dict[str, Any]], util_rows: list[dict[str, Any]], args: argparse.Namespace, notes: list[str]
) -> Path:
    """Write the runs so far (Parquet) and the report (Markdown): a long run keeps what it measured."""
    runs = pd.concat([getattr(args, "kept", pd.DataFrame()), pd.DataFrame(rows)], ignore_index=True)
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = output_suffix(args)
    if len(runs):
        runs.to_parquet(OUT / f"throughput_runs{suffix}.parquet", index=False)
    util = pd.DataFrame(util_rows)
    util_path = OUT / f"utilisation_runs{suffix}.parquet"
    if len(util):
        util.to_parquet(util_path, index=False)
    elif args.merge and util_path.exists():  # not re-measured: the saved table stays in the report
        util = pd.read_parquet(util_path)
    if len(util):
        util = (
            with_backbone(util)
            .groupby(["workload", "dtype", "backbone", "phase"], as_index=False)
            .median(numeric_only=True)
        )
    return write_report(runs, util, args, notes) if len(runs) else OUT


if __name__ == "__main__":
    main()
