"""Scale: does the cost outside the backbone stay flat as the population grows to 10^7?

    .venv/bin/python experiments/benchmarks/scale.py [--quick] [--reps 2] [--no-large]

DP2FL with a really tiny CLIP (hidden 32, 1 layer, 8x8 images in 4x4 patches, prompts of
one token at depth 1) on the synthetic source, iid, 8 samples a client, one local epoch,
no held-out clients: a round costs seconds, so what is *not* the backbone shows. For each
population (10^3, 10^5, 10^7; cohort 100, 3 rounds) and each client store (``sharded``
and ``memory``), one fresh child process runs ``run_experiment`` on its own local Ray
(2 workers x 1 CPU) and reports:

* the driver's peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss`` of the child, which is the
  driver: Ray's own processes are separate) and its RSS just before the run (after the
  imports and ``ray.init``), so the run's own growth shows;
* the aggregator actor's peak RSS (``VmHWM`` of the ``ray::Aggregator`` process among the
  child's descendants, read from ``/proc`` after every round while the actor lives);
* the store: ``summary.json``'s ``clients_stored``, ``bytes_per_client``, ``store_bytes``,
  the distinct clients in the ``clients`` table (must equal ``clients_stored``) and the
  bytes of the files under ``<run>/store``;
* per round (medians over the rounds): the overhead ``start_s + aggregate_s + commit_s +
  metrics_s`` (sampling and store reads, aggregation, store writes, metrics writes) and the
  remainder ``wall_s - train_s - crosseval_s - eval_s - overhead`` (Ray dispatch, driver
  bookkeeping), each beside the backbone's time.

Points are interleaved (rep 1 of every point, then rep 2, ...) because the machine is
shared; tables quote medians over reps of per-run medians over rounds, and ratios to 10^3.
Then, unless ``--no-large``, one larger end-to-end point: population 10^7, cohort 1,000,
``federation.max_eval_models: 16``, 1 round, sharded store.

Writes ``results/benchmarks/scale.md`` and ``scale_runs.parquet`` (one row per run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = REPO / "results" / "benchmarks"

POPULATIONS = (1_000, 100_000, 10_000_000)
BACKENDS = ("sharded", "memory")
COHORT, ROUNDS = 100, 3
LARGE = {"population": 10_000_000, "cohort": 1_000, "rounds": 1, "max_eval_models": 16, "backend": "sharded"}
OVERHEAD_PARTS = ("start_s", "aggregate_s", "commit_s", "metrics_s")
BACKBONE_PARTS = ("train_s", "crosseval_s", "eval_s")
# Targets of the issue: at the largest population against the smallest.
MAX_OVERHEAD_RATIO, MAX_DRIVER_RSS = 1.5, 2 * 1024**3


def point_config(
    population: int, cohort: int, rounds: int, backend: str, max_eval_models: int = 0, seed: int = 0
) -> dict[str, Any]:
    """The config of one point, as a dict for ``config_from_dict`` (the tiny workload)."""
    return {
        "name": f"scale-{backend}-{population}-{cohort}",
        "seed": seed,
        "model": {
            "backbone": "clip",
            "path": None,
            "tiny": {"hidden": 32, "layers": 1, "heads": 2, "projection": 16, "image_size": 8, "patch_size": 4},
            "prompt": {"n_ctx": 1, "depth": 1},
            "device": "cpu",
        },
        "data": {"source": "synthetic", "partition": {"scheme": "iid", "samples_per_client": 8}},
        "federation": {
            "population": population, "cohort": cohort, "rounds": rounds,
            "new_clients": 0, "max_eval_models": max_eval_models,
        },  # fmt: skip
        "train": {"local_epochs": 1, "batch_size": 8},
        "runtime": {"workers": 2, "cpus_per_worker": 1, "clients_per_slice": 64},
        "store": {"backend": backend},
        "output": {"checkpoint_every": 0},
    }


def round_overheads(rounds: pd.DataFrame) -> pd.DataFrame:
    """Per round: ``overhead_s`` (outside the backbone), ``backbone_s`` and ``remainder_s``.

    ``overhead_s = start_s + aggregate_s + commit_s + metrics_s``; ``backbone_s = train_s +
    crosseval_s + eval_s``; ``remainder_s = wall_s - backbone_s - overhead_s``. ``metrics_s``
    is timed after ``wall_s`` stops, so the remainder can be slightly negative (never by more
    than ``metrics_s``).
    """
    out = pd.DataFrame({"round": rounds["round"].astype(int)})
    out["overhead_s"] = rounds[list(OVERHEAD_PARTS)].sum(axis=1)
    out["backbone_s"] = rounds[list(BACKBONE_PARTS)].sum(axis=1)
    out["remainder_s"] = rounds["wall_s"] - out["backbone_s"] - out["overhead_s"]
    for part in (*OVERHEAD_PARTS, "wall_s"):
        out[part] = rounds[part]
    return out


def dir_bytes(path: Path, skip: tuple[str, ...] = ()) -> int:
    """Bytes of the regular files under ``path`` (0 if missing), skipping top-level ``skip`` names."""
    if not path.is_dir():
        return 0
    total = 0
    for entry in path.iterdir():
        if entry.name in skip:
            continue
        if entry.is_dir():
            total += dir_bytes(entry)
        elif entry.is_file():
            total += entry.stat().st_size
    return total


def descendants(pid: int) -> list[int]:
    """Pids of every live descendant of ``pid`` (from ``/proc``, Linux)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def proc_peak_rss(title: str, under: int) -> int:
    """The largest ``VmHWM`` (peak RSS, bytes) of ``under``'s descendants whose title starts with ``title``."""
    peak = 0
    for pid in descendants(under):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not cmdline.startswith(title):
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            continue
    return peak


# --- one point, inside a fresh child process ----------------------------------------------


def child_main(spec: dict[str, Any], result_path: Path) -> None:
    """Run one point on a local Ray started here (so the driver is this process) and write JSON."""
    import resource

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from dp2fl_ray.config import config_from_dict
    from dp2fl_ray.metrics import read_summary, read_table
    from dp2fl_ray.runtime.simulation import run_experiment

    cfg = config_from_dict(
        point_config(spec["population"], spec["cohort"], spec["rounds"], spec["backend"], spec.get("max_eval_models", 0))
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    me = os.getpid()
    rss_before = _rss_now()
    agg_peak = [0]

    def on_round(row: dict[str, Any]) -> None:  # the aggregator is alive until the run returns
        agg_peak[0] = max(agg_peak[0], proc_peak_rss("ray::Aggregator", me))

    out_dir, name = Path(spec["out_dir"]), spec["run_name"]
    t0 = time.perf_counter()
    try:
        summary = run_experiment(cfg, output_dir=out_dir, run_name=name, progress=False, on_round=on_round)
    finally:
        ray.shutdown()
    run_dir = out_dir / name
    rounds = read_table(run_dir, "rounds")
    clients = read_table(run_dir, "clients")
    summary = read_summary(run_dir)
    result = {
        **{k: spec[k] for k in ("population", "cohort", "rounds", "backend", "rep")},
        "max_eval_models": spec.get("max_eval_models", 0),
        "run_s": time.perf_counter() - t0,
        "driver_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
        "driver_rss_before": rss_before,
        "aggregator_peak_rss": agg_peak[0],
        "clients_stored": int(summary["clients_stored"]),
        "bytes_per_client": int(summary["bytes_per_client"]),
        "store_bytes": int(summary["store_bytes"]),
        "distinct_clients": int(clients.loc[clients["status"] == "ok", "client_id"].nunique()),
        "store_files": sum(1 for p in (run_dir / "store").glob("shard-*.parquet")),
        "store_disk_bytes": dir_bytes(run_dir / "store", skip=("_checkpoints",)),
        "status": summary["status"],
        "startup_s": float(summary["startup_s"]),
        "rounds_table": round_overheads(rounds).to_dict(orient="list"),
        "rounds_raw": rounds[[*OVERHEAD_PARTS, *BACKBONE_PARTS, "wall_s", "first_time_clients"]].to_dict(orient="list"),
    }
    result_path.write_text(json.dumps(result))


def _rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# --- the driver of the benchmark ------------------------------------------------------------


def run_point(spec: dict[str, Any], work: Path, timeout_s: float) -> dict[str, Any]:
    """Run ``spec`` in a fresh child process and return its result (with per-round rows)."""
    result_path = work / f"{spec['run_name']}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec), "--result", str(result_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0 or not result_path.is_file():
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"point {spec['run_name']} failed (rc {proc.returncode}):\n{tail}")
    return json.loads(result_path.read_text())


def per_run_row(result: dict[str, Any]) -> dict[str, Any]:
    """One row of ``scale_runs.parquet``: the run's facts and medians over its rounds."""
    table = pd.DataFrame(result["rounds_table"])
    row = {k: v for k, v in result.items() if k not in ("rounds_table", "rounds_raw")}
    for col in ("overhead_s", "remainder_s", "backbone_s", "wall_s", *OVERHEAD_PARTS):
        row[f"{col}_median"] = float(table[col].median())
    row["rounds_overhead_s"] = [float(x) for x in table["overhead_s"]]
    return row


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (backend, population, cohort): medians over reps, and overhead ratios to the smallest population."""
    keys = ["backend", "population", "cohort", "rounds"]
    numeric = [c for c in runs.columns if c.endswith("_median")] + [
        "driver_peak_rss", "driver_rss_before", "aggregator_peak_rss", "store_disk_bytes", "run_s",
    ]  # fmt: skip
    med = runs.groupby(keys)[numeric].median()
    first = runs.groupby(keys)[["clients_stored", "distinct_clients", "bytes_per_client", "store_bytes", "store_files"]].max()
    out = med.join(first).join(runs.groupby(keys).size().rename("reps")).reset_index()
    out["store_check"] = (out["clients_stored"] == out["distinct_clients"]) & (
        out["store_bytes"] == out["clients_stored"] * out["bytes_per_client"]
    )
    out["overhead_ratio"] = float("nan")
    for (backend, cohort, rounds), group in out.groupby(["backend", "cohort", "rounds"]):
        base = group.loc[group["population"].idxmin(), "overhead_s_median"]
        out.loc[group.index, "overhead_ratio"] = group["overhead_s_median"] / base
    return out.sort_values(["cohort", "backend", "population"]).reset_index(drop=True)


def _mib(x: float) -> str:
    return f"{x / 1024**2:,.0f}"


def _ms(x: float) -> str:
    return f"{1000 * x:,.1f}"


def markdown(summary: pd.DataFrame, runs: pd.DataFrame, meta: dict[str, Any]) -> str:
    """The report: table of the sweep, the large point, checks against the targets."""
    lines = [
        "# Scale: cost outside the backbone from 10^3 to 10^7 clients",
        "",
        f"`experiments/benchmarks/scale.py` ({meta['when']}, {meta['machine']}; {meta['reps']} interleaved "
        "reps per point, each in a fresh process with its own local Ray, 2 workers x 1 CPU).",
        "Workload: DP2FL, tiny random CLIP (hidden 32, 1 layer, 2 heads, projection 16, 8x8 images in 4x4 "
        "patches; prompts n_ctx 1, depth 1), synthetic source, iid, 8 train samples a client, 1 local epoch, "
        "no held-out clients, no checkpoints. Times are medians over reps of each run's median over its "
        "rounds; `overhead` = `start_s + aggregate_s + commit_s + metrics_s` (sampling + store reads, "
        "aggregation, store writes, metrics writes); `rest` = `wall_s - train_s - crosseval_s - eval_s - "
        "overhead` (Ray dispatch and driver bookkeeping; `metrics_s` falls outside `wall_s`, so `rest` "
        "can be slightly negative). RSS in MiB; the driver's is `ru_maxrss` of the driver process, "
        "`before` its RSS after imports and `ray.init`, just before the run.",
        "",
        "| store | population | cohort | overhead ms | ratio to 10^3 | start | aggregate | commit | metrics "
        "| rest ms | backbone ms | driver peak MiB | driver before MiB | aggregator peak MiB | clients stored "
        "| distinct clients | bytes/client | store bytes | on-disk bytes | shard files | check |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for _, r in summary.iterrows():
        ratio = "" if pd.isna(r["overhead_ratio"]) or r["cohort"] != COHORT else f"{r['overhead_ratio']:.2f}"
        lines.append(
            f"| {r['backend']} | {r['population']:,} | {r['cohort']:,} | {_ms(r['overhead_s_median'])} | {ratio} "
            f"| {_ms(r['start_s_median'])} | {_ms(r['aggregate_s_median'])} | {_ms(r['commit_s_median'])} "
            f"| {_ms(r['metrics_s_median'])} | {_ms(r['remainder_s_median'])} | {_ms(r['backbone_s_median'])} "
            f"| {_mib(r['driver_peak_rss'])} | {_mib(r['driver_rss_before'])} | {_mib(r['aggregator_peak_rss'])} "
            f"| {r['clients_stored']:,} | {r['distinct_clients']:,} | {r['bytes_per_client']:,} "
            f"| {r['store_bytes']:,} | {r['store_disk_bytes']:,.0f} | {r['store_files']:,} "
            f"| {'ok' if r['store_check'] else 'FAIL'} |"
        )
    lines += ["", "## Against the targets", ""]
    for backend in sorted(summary["backend"].unique()):
        sweep = summary[(summary["backend"] == backend) & (summary["cohort"] == COHORT)]
        if sweep.empty:
            continue
        big = sweep.loc[sweep["population"].idxmax()]
        ok_ratio = big["overhead_ratio"] <= MAX_OVERHEAD_RATIO
        ok_rss = sweep["driver_peak_rss"].max() <= MAX_DRIVER_RSS
        lines.append(
            f"- `{backend}`: overhead at {big['population']:,} / at {sweep['population'].min():,} = "
            f"{big['overhead_ratio']:.2f} (target <= {MAX_OVERHEAD_RATIO}: {'met' if ok_ratio else 'MISSED'}); "
            f"driver peak RSS at most {_mib(sweep['driver_peak_rss'].max())} MiB (target <= 2048: "
            f"{'met' if ok_rss else 'MISSED'}); store bytes = clients stored x bytes per client and clients "
            f"stored = distinct clients in the clients table: {'met' if sweep['store_check'].all() else 'MISSED'}."
        )
    lines += ["", meta.get("reading", "").strip(), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="one rep, populations 10^3 and 10^5, sharded, no large point")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--no-large", action="store_true", help="skip the population 10^7 x cohort 1,000 point")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--work", type=Path, default=REPO / "results" / "runs" / "scale")
    parser.add_argument("--reading", type=Path, help="a Markdown file of commentary appended to the report")
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child), Path(args.result))
        return

    populations, backends, reps = POPULATIONS, BACKENDS, args.reps
    if args.quick:
        populations, backends, reps = (1_000, 100_000), ("sharded",), 1
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    work = args.work / stamp
    work.mkdir(parents=True, exist_ok=True)
    specs = []
    for rep in range(1, reps + 1):  # interleaved: rep 1 of every point, then rep 2...
        for population in populations:
            for backend in backends:
                specs.append({"population": population, "cohort": COHORT, "rounds": ROUNDS, "backend": backend,
                              "rep": rep, "max_eval_models": 0})  # fmt: skip
    if not (args.quick or args.no_large):
        specs.append({**LARGE, "rep": 1})
    rows = []
    for spec in specs:
        spec = {**spec, "out_dir": str(work),
                "run_name": f"{spec['backend']}-{spec['population']}-{spec['cohort']}-r{spec['rep']}"}  # fmt: skip
        t = time.perf_counter()
        result = run_point(spec, work, timeout_s=1800)
        rows.append(per_run_row(result))
        r = rows[-1]
        print(
            f"{spec['run_name']}: {time.perf_counter() - t:.0f}s overhead {_ms(r['overhead_s_median'])} ms "
            f"(rest {_ms(r['remainder_s_median'])}, backbone {_ms(r['backbone_s_median'])}) driver "
            f"{_mib(r['driver_peak_rss'])} MiB aggregator {_mib(r['aggregator_peak_rss'])} MiB "
            f"stored {r['clients_stored']} distinct {r['distinct_clients']} disk {r['store_disk_bytes']:,}",
            flush=True,
        )
    runs = pd.DataFrame(rows)
    summary = summarise(runs)
    machine = f"{os.cpu_count()} CPUs, shared"
    reading = args.reading.read_text() if args.reading else ""
    meta = {"when": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine, "reps": reps, "reading": reading}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "scale_quick" if args.quick else "scale"
    runs.to_parquet(args.out / f"{name}_runs.parquet", index=False)
    (args.out / f"{name}.md").write_text(markdown(summary, runs, meta))
    print(summary.to_string())


if __name__ == "__main__":
    main()
