"""Scale: does the cost outside the backbone stay flat as the population grows to 10^8, and per
client as the cohort grows to 10^4?

    .venv/bin/python experiments/benchmarks/scale.py [--quick] [--reps 2] [--no-large]
        [--populations 1000,100000000] [--backends sharded] [--no-cohorts] [--merge]

DP2FL with a really tiny CLIP (hidden 32, 1 layer, 8x8 images in 4x4 patches, prompts of
one token at depth 1) on the synthetic source, iid, 8 samples a client, one local epoch,
no held-out clients: a round costs seconds, so what is *not* the backbone shows. For each
population (10^3, 10^5, 10^7, 10^8; cohort 100, 3 rounds) and each client store (``sharded``
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
  remainder ``wall_s - train_s - crosseval_s - eval_s - start_s - aggregate_s - commit_s``
  (Ray dispatch, driver bookkeeping; ``metrics_s`` is timed after ``wall_s`` stops, so it
  is not subtracted), each beside the backbone's time. Round 1 is reported apart: its
  ``start_s`` also waits for the aggregator actor to start.

Points are interleaved (rep 1 of every point, then rep 2, ...) because the machine is
shared; tables quote medians over reps of per-run medians over rounds, and ratios to 10^3.
Then, unless ``--no-large``, one larger end-to-end point: population 10^7, cohort 1,000,
``federation.max_eval_models: 16``, 1 round, sharded store. Then, unless ``--no-cohorts``,
the cohort axis: population 10^7, cohorts 100, 1,000 and 10,000, ``max_eval_models: 16``,
2 rounds (round 2 is the steady one), sharded store; reported per client: the overhead
outside the backbone (``overhead + rest``: sampling, store, aggregation, metrics, movement
and dispatch) over the cohort, and ``moved_bytes`` / ``driver_bytes`` of the rounds table
(``runtime/movement.py``).

``--merge`` keeps the rows of an earlier ``scale_runs.parquet`` whose points this run did
not measure; every row has the ``batch`` (UTC stamp) it was measured in, and ratios are taken
within one batch only (points measured side by side).

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

POPULATIONS = (1_000, 100_000, 10_000_000, 100_000_000)
BACKENDS = ("sharded", "memory")
COHORT, ROUNDS = 100, 3
LARGE = {"population": 10_000_000, "cohort": 1_000, "rounds": 1, "max_eval_models": 16, "backend": "sharded"}
COHORT_AXIS = {"population": 10_000_000, "cohorts": (100, 1_000, 10_000), "rounds": 2, "max_eval_models": 16,
               "backend": "sharded"}  # fmt: skip
MOVE_COLUMNS = ("moved_bytes", "driver_bytes")
OVERHEAD_PARTS = ("start_s", "aggregate_s", "commit_s", "metrics_s")
BACKBONE_PARTS = ("train_s", "crosseval_s", "eval_s")
TIME_COLUMNS = ("overhead_s", "remainder_s", "backbone_s", "wall_s", *OVERHEAD_PARTS)
# Targets of the issue: at the largest population against the smallest; per client at the
# largest cohort against the smallest.
MAX_OVERHEAD_RATIO, MAX_DRIVER_RSS, MAX_PER_CLIENT_RATIO = 1.5, 2 * 1024**3, 1.3


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
            "tiny": {
                "hidden": 32,
                "layers": 1,
                "heads": 2,
                "projection": 16,
                "image_size": 8,
                "patch_size": 4,
            },
            "prompt": {"n_ctx": 1, "depth": 1},
            "device": "cpu",
        },
        "data": {"source": "synthetic", "partition": {"scheme": "iid", "samples_per_client": 8}},
        "federation": {
            "population": population,
            "cohort": cohort,
            "rounds": rounds,
            "new_clients": 0,
            "max_eval_models": max_eval_models,
        },
        "train": {"local_epochs": 1, "batch_size": 8},
        "runtime": {"workers": 2, "cpus_per_worker": 1, "clients_per_slice": 64},
        "store": {"backend": backend},
        "output": {"checkpoint_every": 0},
    }


def round_overheads(rounds: pd.DataFrame) -> pd.DataFrame:
    """Per round: ``overhead_s`` (outside the backbone), ``backbone_s`` and ``remainder_s``.

    ``overhead_s = start_s + aggregate_s + commit_s + metrics_s``; ``backbone_s = train_s +
    crosseval_s + eval_s``; ``remainder_s = wall_s - backbone_s - start_s - aggregate_s -
    commit_s``: what ``wall_s`` does not attribute (Ray dispatch, driver bookkeeping).
    ``metrics_s`` is left out of the remainder because it is timed after ``wall_s`` stops.
    """
    out = pd.DataFrame({"round": rounds["round"].astype(int)})
    out["overhead_s"] = rounds[list(OVERHEAD_PARTS)].sum(axis=1)
    out["backbone_s"] = rounds[list(BACKBONE_PARTS)].sum(axis=1)
    out["remainder_s"] = rounds["wall_s"] - out["backbone_s"] - out["overhead_s"] + rounds["metrics_s"]
    for part in (*OVERHEAD_PARTS, "wall_s"):
        out[part] = rounds[part]
    for col in MOVE_COLUMNS:  # absent from runs of code before the movement accounting
        if col in rounds:
            out[col] = rounds[col].astype(float)
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
    """The largest ``VmHWM`` (peak RSS, bytes) of ``under``'s descendants whose title starts
    with ``title``."""
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


# --- the store alone: the aggregator's store path, in process, no Ray ----------------------


def store_rounds(
    backend: str, population: int, cohort: int, rounds: int, dim: int, root: Path,
    shard_size: int = 4096, cache_shards: int = 16, seed: int = 0, cache_mib: float = 256.0,
) -> pd.DataFrame:  # fmt: skip
    """Time ``AggregatorCore.start_round`` and ``commit`` (the store reads and writes of a round)
    on the package's own code, with random cohorts of ``population``; count shard file reads
    and writes. One row per round."""
    import numpy as np

    from dp2fl_ray.config import AlgorithmConfig, StoreConfig
    from dp2fl_ray.runtime.aggregation import AggregatorCore, RoundUpdate
    from dp2fl_ray.runtime.cohort import sample_cohort

    store_cfg = StoreConfig(  # type: ignore[arg-type]
        backend=backend, shard_size=shard_size, cache_shards=cache_shards, cache_mib=cache_mib
    )
    rng = np.random.default_rng(seed)  # random prompts: Parquet cannot compress them away
    init_data = rng.normal(size=dim).astype(np.float32)
    core = AggregatorCore(AlgorithmConfig(), np.zeros(8, np.float32), init_data, store_cfg, str(root))
    counts = {"_read": 0, "_write": 0}
    for method in counts:  # count on this instance only (the package code is untouched)
        if hasattr(core.store, method):
            original = getattr(core.store, method)

            def counted(*a: Any, _m: str = method, _f: Any = original) -> Any:
                counts[_m] += 1
                return _f(*a)

            setattr(core.store, method, counted)
    rows = []
    for r in range(1, rounds + 1):
        before = dict(counts)
        t = time.perf_counter()
        ids = sample_cohort(seed, r, population, min(cohort, population))
        start = core.start_round(ids)
        start_s = time.perf_counter() - t
        m = len(ids)
        trained = (start.data + rng.normal(scale=0.01, size=start.data.shape)).astype(np.float32)
        update = RoundUpdate(core.global_task, core.global_data, start.task, trained, np.ones(m), None)
        t = time.perf_counter()
        core.commit(ids, update, np.ones(m))
        commit_s = time.perf_counter() - t
        rows.append(
            {
                "backend": backend,
                "population": population,
                "cohort": cohort,
                "round": r,
                "start_s": start_s,
                "commit_s": commit_s,
                "shard_reads": counts["_read"] - before["_read"],
                "shard_writes": counts["_write"] - before["_write"],
                "shards_touched": len({int(c) // shard_size for c in ids}),
                "clients_stored": len(core.store),
            }
        )
    core.store.close()
    return pd.DataFrame(rows)


def store_sweep(
    populations: tuple[int, ...], backends: tuple[str, ...], reps: int, rounds: int, dim: int, work: Path
) -> pd.DataFrame:
    """``store_rounds`` for every (rep, population, backend), interleaved; all rounds' rows."""
    frames = []
    for rep in range(1, reps + 1):
        for population in populations:
            for backend in backends:
                root = work / f"store-{backend}-{population}-r{rep}"
                frame = store_rounds(backend, population, COHORT, rounds, dim, root)
                frames.append(frame.assign(rep=rep, disk_bytes=dir_bytes(root)))
    return pd.concat(frames, ignore_index=True)


def summarise_store(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (backend, population): medians over reps of per-run medians over rounds 2.. (round 1
    has no returning clients)."""
    later = rows[rows["round"] > 1]
    per_run = later.groupby(["backend", "population", "rep"])[
        ["start_s", "commit_s", "shard_reads", "shard_writes", "shards_touched"]
    ].median()
    out = per_run.groupby(["backend", "population"]).median()
    last = rows.groupby(["backend", "population", "rep"])[["clients_stored", "disk_bytes"]].last()
    out = out.join(last.groupby(["backend", "population"]).median()).reset_index()
    out["store_s"] = out["start_s"] + out["commit_s"]
    for backend, group in out.groupby("backend"):
        out.loc[group.index, "ratio"] = group["store_s"] / group.loc[group["population"].idxmin(), "store_s"]
    return out.sort_values(["backend", "population"]).reset_index(drop=True)


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
        point_config(
            spec["population"],
            spec["cohort"],
            spec["rounds"],
            spec["backend"],
            spec.get("max_eval_models", 0),
        )
    )
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
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
        "rounds_raw": rounds[[*OVERHEAD_PARTS, *BACKBONE_PARTS, "wall_s", "first_time_clients"]].to_dict(
            orient="list"
        ),
        "batch": spec.get("batch", ""),
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
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        json.dumps(spec),
        "--result",
        str(result_path),
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if proc.returncode != 0 or not result_path.is_file():
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"point {spec['run_name']} failed (rc {proc.returncode}):\n{tail}")
    return json.loads(result_path.read_text())


def per_run_row(result: dict[str, Any]) -> dict[str, Any]:
    """One row of ``scale_runs.parquet``: the run's facts, every round's times, and medians
    over rounds 2.. (round 1's ``start_s`` also waits for the aggregator actor to start; a
    one-round run has only round 1)."""
    table = pd.DataFrame(result["rounds_table"])
    row = {k: v for k, v in result.items() if k not in ("rounds_table", "rounds_raw")}
    steady = table[table["round"] > 1] if len(table) > 1 else table
    columns = [*TIME_COLUMNS, *(c for c in MOVE_COLUMNS if c in table)]
    for col in columns:
        row[f"{col}_median"] = float(steady[col].median())
    for _, rd in table.iterrows():
        for col in columns:
            row[f"{col}_r{int(rd['round'])}"] = float(rd[col])
    return row


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (batch, backend, population, cohort): medians over reps, overhead ratios to the smallest
    population and per-client overhead ratios to the smallest cohort, within a batch."""
    runs = (
        runs.assign(batch=runs["batch"].fillna("earlier"))
        if "batch" in runs
        else runs.assign(batch="earlier")
    )
    keys = ["batch", "backend", "population", "cohort", "rounds"]
    numeric = [c for c in runs.columns if c.endswith(("_median", "_r1"))] + [
        "driver_peak_rss", "driver_rss_before", "aggregator_peak_rss", "store_disk_bytes", "run_s",
    ]  # fmt: skip
    med = runs.groupby(keys)[numeric].median()
    first = runs.groupby(keys)[
        ["clients_stored", "distinct_clients", "bytes_per_client", "store_bytes", "store_files"]
    ].max()
    out = med.join(first).join(runs.groupby(keys).size().rename("reps")).reset_index()
    out["store_check"] = (out["clients_stored"] == out["distinct_clients"]) & (
        out["store_bytes"] == out["clients_stored"] * out["bytes_per_client"]
    )
    out["overhead_ratio"] = float("nan")
    for _, group in out.groupby(["batch", "backend", "cohort", "rounds"]):
        base = group.loc[group["population"].idxmin(), "overhead_s_median"]
        out.loc[group.index, "overhead_ratio"] = group["overhead_s_median"] / base
    out["per_client_s"] = (out["overhead_s_median"] + out["remainder_s_median"]) / out["cohort"]
    out["per_client_ratio"] = float("nan")
    for _, group in out.groupby(["batch", "backend", "population", "rounds"]):
        base = group.loc[group["cohort"].idxmin(), "per_client_s"]
        out.loc[group.index, "per_client_ratio"] = group["per_client_s"] / base
    return out.sort_values(["cohort", "backend", "population", "batch"]).reset_index(drop=True)


def merge_earlier(earlier: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus the end-to-end rows of ``earlier`` at points ``runs`` did not measure."""
    old = earlier[earlier["kind"] == "e2e"].drop(columns=["kind"]).dropna(axis=1, how="all")
    old = old.assign(batch=old["batch"].fillna("earlier")) if "batch" in old else old.assign(batch="earlier")
    keys = ["backend", "population", "cohort", "rounds"]
    measured = set(map(tuple, runs[keys].to_numpy().tolist()))
    keep = old[[tuple(k) not in measured for k in old[keys].to_numpy().tolist()]]
    return pd.concat([keep, runs], ignore_index=True)


def _mib(x: float) -> str:
    return f"{x / 1024**2:,.0f}"


def _ms(x: float) -> str:
    return f"{1000 * x:,.1f}"


def markdown(summary: pd.DataFrame, store: pd.DataFrame, meta: dict[str, Any]) -> str:
    """The report: the end-to-end sweep, the large point, the store alone, checks against the targets."""
    lines = [
        "# Scale: cost outside the backbone from 10^3 to 10^8 clients, and cohorts to 10^4",
        "",
        (
            f"`experiments/benchmarks/scale.py` ({meta['when']}, {meta['machine']}; {meta['reps']} "
            "interleaved reps per point, each in a fresh process with its own local Ray, 2 workers x 1 CPU). "
            f"Raw numbers: `{meta['parquet']}` (one row per run, `kind` = `e2e` or `store`)."
        ),
        "",
        (
            "Workload: DP2FL, tiny random CLIP (hidden 32, 1 layer, 2 heads, projection 16, 8x8 images in "
            "4x4 patches; prompts n_ctx 1, depth 1: a data prompt of 1,056 floats), synthetic source, iid, 8 "
            "train samples a client, 1 local epoch, cohort 100, 3 rounds, no held-out clients, no "
            "checkpoints, store defaults (`shard_size` 4096, `cache_shards` 16). Times in ms are medians "
            "over reps of each run's median over rounds 2-3; round 1 is shown apart (`round 1`: its "
            "`start_s` also waits for the aggregator actor to start, about a second). `overhead` = `start_s "
            "+ aggregate_s + commit_s + metrics_s` (sampling + store reads, aggregation, store writes, "
            "metrics writes); `rest` = `wall_s - train_s - crosseval_s - eval_s - start_s - aggregate_s - "
            "commit_s` (Ray dispatch, driver bookkeeping; `metrics_s` is timed after `wall_s` stops, so it "
            "is not subtracted); `backbone` = `train_s + crosseval_s + eval_s`. "
            "RSS in MiB: `driver peak` is `ru_maxrss` of the driver process, `before` its RSS after the "
            "imports and `ray.init`, just before the run; `aggregator` is the `VmHWM` of the "
            "`ray::Aggregator` process."
        ),
        "",
        "## End to end (Ray), cohort 100, 3 rounds",
        "",
        (
            "`batch`: when the point was measured; `x 10^3` is the ratio to the smallest population of the "
            "same batch (10^3 where it was measured) (measured side by side)."
        ),
        "",
        (
            "| batch | store | population | overhead | x 10^3 | start | aggregate | commit | metrics | rest "
            "| backbone | round 1 overhead | driver peak | before | aggregator | clients stored "
            "| distinct in `clients` | bytes/client | store bytes | on-disk bytes | shard files | check |"
        ),
        (
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            "---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        ),
    ]
    sweep = summary[(summary["cohort"] == COHORT) & (summary["rounds"] == ROUNDS)]
    for _, r in sweep.iterrows():
        lines.append(
            f"| {r['batch']} | {r['backend']} | {r['population']:,} | {_ms(r['overhead_s_median'])} "
            f"| {r['overhead_ratio']:.2f} "
            f"| {_ms(r['start_s_median'])} | {_ms(r['aggregate_s_median'])} | {_ms(r['commit_s_median'])} "
            f"| {_ms(r['metrics_s_median'])} | {_ms(r['remainder_s_median'])} "
            f"| {_ms(r['backbone_s_median'])} | {_ms(r['overhead_s_r1'])} | {_mib(r['driver_peak_rss'])} "
            f"| {_mib(r['driver_rss_before'])} | {_mib(r['aggregator_peak_rss'])} "
            f"| {int(r['clients_stored']):,} | {int(r['distinct_clients']):,} "
            f"| {int(r['bytes_per_client']):,} | {int(r['store_bytes']):,} | {r['store_disk_bytes']:,.0f} "
            f"| {int(r['store_files']):,} | {'ok' if r['store_check'] else 'FAIL'} |"
        )
    lines += [
        "",
        (
            "`check`: `clients_stored` = distinct clients in the `clients` table, and `store_bytes` = "
            "`clients_stored` x `bytes_per_client`."
        ),
        "",
    ]
    axis = summary[summary["rounds"] == COHORT_AXIS["rounds"]]
    if not axis.empty:
        lines += cohort_axis_lines(axis)
    large = summary[summary["rounds"] == LARGE["rounds"]]
    if not large.empty:
        lines += ["## Largest run end to end", ""]
        for _, r in large.iterrows():
            lines.append(
                f"Population {r['population']:,}, cohort {r['cohort']:,}, `max_eval_models` 16, "
                f"{r['rounds']} round, `{r['backend']}` store: completed; round wall "
                f"{r['wall_s_median']:.1f} s (backbone {r['backbone_s_median']:.1f} s; overhead "
                f"{_ms(r['overhead_s_median'])} ms = start {_ms(r['start_s_median'])} + aggregate "
                f"{_ms(r['aggregate_s_median'])} + commit {_ms(r['commit_s_median'])} + metrics "
                f"{_ms(r['metrics_s_median'])}; rest {_ms(r['remainder_s_median'])} ms); driver peak RSS "
                f"{_mib(r['driver_peak_rss'])} MiB ({_mib(r['driver_rss_before'])} before the run), "
                f"aggregator {_mib(r['aggregator_peak_rss'])} MiB; {r['clients_stored']:,} clients stored = "
                f"{r['distinct_clients']:,} distinct, {r['store_bytes']:,} store bytes, "
                f"{r['store_disk_bytes']:,.0f} bytes in {r['store_files']:,} shard files; whole process "
                f"{r['run_s']:.0f} s."
            )
        lines.append("")
    if not store.empty:
        lines += [
            "## The store alone (no Ray, in process)",
            "",
            (
                "`AggregatorCore.start_round` + `commit` (the package's code; what `start_s` and `commit_s` "
                f"time, less the Ray call) with random cohorts of 100, {meta['store_rounds']} rounds, random "
                "data prompts of 1,056 floats; medians over rounds 2.. (round 1 has nothing to read back) "
                "and over reps. Shard reads and writes are Parquet file reads and writes per round."
            ),
            "",
            (
                "| store | population | start ms | commit ms | x 10^3 | shards touched | shard reads "
                "| shard writes | clients stored | on-disk bytes |"
            ),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for _, r in store.iterrows():
            lines.append(
                f"| {r['backend']} | {r['population']:,} | {_ms(r['start_s'])} | {_ms(r['commit_s'])} "
                f"| {r['ratio']:.1f} | {f'{r.shards_touched:.0f}' if r['backend'] == 'sharded' else '-'} "
                f"| {r['shard_reads']:.0f} | {r['shard_writes']:.0f} "
                f"| {r['clients_stored']:,.0f} | {r['disk_bytes']:,.0f} |"
            )
        lines.append("")
    lines += ["## Against the targets", ""]
    batches = sorted(set(sweep["batch"]) - {"earlier"}) or ["earlier"]
    latest = sweep[sweep["batch"] == batches[-1]]  # the newest batch: its points were measured side by side
    for backend in sorted(latest["backend"].unique()):
        part = latest[latest["backend"] == backend]
        big = part.loc[part["population"].idxmax()]
        ok_ratio = big["overhead_ratio"] <= MAX_OVERHEAD_RATIO
        ok_rss = part["driver_peak_rss"].max() <= MAX_DRIVER_RSS
        lines.append(
            f"- `{backend}`: overhead at {big['population']:,} / at {part['population'].min():,} = "
            f"{big['overhead_ratio']:.2f} (target <= {MAX_OVERHEAD_RATIO}: "
            f"{'met' if ok_ratio else 'MISSED'}); driver peak RSS at most "
            f"{_mib(part['driver_peak_rss'].max())} MiB (target <= 2048: {'met' if ok_rss else 'MISSED'}); "
            "store bytes = touched clients x bytes per client: "
            f"{'met' if part['store_check'].all() else 'MISSED'}."
        )
    if not axis.empty:
        big, small = axis.loc[axis["cohort"].idxmax()], axis.loc[axis["cohort"].idxmin()]
        ok = big["per_client_ratio"] <= MAX_PER_CLIENT_RATIO
        lines.append(
            f"- cohort axis: per-client overhead at cohort {big['cohort']:,} / at {small['cohort']:,} = "
            f"{big['per_client_ratio']:.2f} (target <= {MAX_PER_CLIENT_RATIO}: {'met' if ok else 'MISSED'}); "
            f"driver peak RSS at most {_mib(axis['driver_peak_rss'].max())} MiB (target <= 2048: "
            f"{'met' if axis['driver_peak_rss'].max() <= MAX_DRIVER_RSS else 'MISSED'}); aggregator peak "
            f"{_mib(small['aggregator_peak_rss'])} -> {_mib(big['aggregator_peak_rss'])} MiB."
        )
    lines += ["", meta.get("reading", "").strip(), ""]
    return "\n".join(lines)


def cohort_axis_lines(axis: pd.DataFrame) -> list[str]:
    """The cohort-axis section: per-client overhead, movement and memory by cohort."""
    lines = [
        "## Cohort axis: population 10^7, `max_eval_models` 16, 2 rounds (round 2 reported), sharded store",
        "",
        (
            "`per client` = (`overhead` + `rest`) / cohort, in microseconds: everything outside the backbone "
            "(sampling, store reads and writes, aggregation, metrics, row movement, Ray dispatch); `x 100` "
            "is its ratio to cohort 100 in the same batch. `moved` = the round's `moved_bytes` "
            "(`runtime/movement.py`), `driver` = its `driver_bytes` (what went through the driver: no client "
            "row), `moved/client` = `moved_bytes` / cohort."
        ),
        "",
        (
            "| batch | cohort | per client us | x 100 | overhead ms | start | aggregate | commit | metrics "
            "| rest | backbone s | moved MiB | moved/client KiB | driver MiB | driver peak MiB "
            "| aggregator MiB |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in axis.sort_values(["batch", "cohort"]).iterrows():
        moved = r.get("moved_bytes_median", float("nan"))
        driver = r.get("driver_bytes_median", float("nan"))
        lines.append(
            f"| {r['batch']} | {r['cohort']:,} | {1e6 * r['per_client_s']:,.0f} "
            f"| {r['per_client_ratio']:.2f} | {_ms(r['overhead_s_median'])} | {_ms(r['start_s_median'])} "
            f"| {_ms(r['aggregate_s_median'])} | {_ms(r['commit_s_median'])} | {_ms(r['metrics_s_median'])} "
            f"| {_ms(r['remainder_s_median'])} | {r['backbone_s_median']:,.1f} | {moved / 2**20:,.1f} "
            f"| {moved / r['cohort'] / 1024:,.1f} | {driver / 2**20:,.2f} | {_mib(r['driver_peak_rss'])} "
            f"| {_mib(r['aggregator_peak_rss'])} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one rep, populations 10^3 and 10^5, sharded, no large point; writes under --work",
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--store-rounds", type=int, default=10, help="rounds of the store-alone sweep")
    parser.add_argument(
        "--no-large", action="store_true", help="skip the population 10^7 x cohort 1,000 point"
    )
    parser.add_argument(
        "--out", type=Path, help="where scale.md and scale_runs.parquet go (default results/benchmarks)"
    )
    parser.add_argument(
        "--work", type=Path, default=REPO / "results" / "runs" / "scale", help="run directories"
    )
    parser.add_argument("--reading", type=Path, help="a Markdown file of commentary appended to the report")
    parser.add_argument("--populations", help="comma-separated populations of the sweep (default: all)")
    parser.add_argument("--backends", help="comma-separated stores of the sweep (default: sharded,memory)")
    parser.add_argument("--no-cohorts", action="store_true", help="skip the cohort axis (cohorts to 10^4)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep an earlier scale_runs.parquet's points this run did not measure",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite scale.md from scale_runs.parquet (no runs)"
    )
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child), Path(args.result))
        return
    if args.report_only:
        out = args.out or OUT
        raw = pd.read_parquet(out / "scale_runs.parquet")
        runs = raw[raw["kind"] == "e2e"].dropna(axis=1, how="all")
        runs = (
            runs.assign(batch=runs["batch"].fillna("earlier"))
            if "batch" in runs
            else runs.assign(batch="earlier")
        )
        store_rows = raw[raw["kind"] == "store"].dropna(axis=1, how="all")
        for col in (
            "population",
            "cohort",
            "rounds",
            "rep",
            "clients_stored",
            "distinct_clients",
            "bytes_per_client",
            "store_bytes",
            "store_files",
        ):
            runs = runs.astype({col: "int64"})
        store_rows = store_rows.astype({"population": "int64", "round": "int64", "rep": "int64"})
        meta = {
            "when": str(raw.attrs.get("when", "")) or datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} CPUs shared with other jobs",
            "reps": int(runs["rep"].max()),
            "store_rounds": int(store_rows["round"].max()),
            "parquet": "scale_runs.parquet",
            "reading": args.reading.read_text() if args.reading else "",
        }
        (out / "scale.md").write_text(markdown(summarise(runs), summarise_store(store_rows), meta))
        print(f"wrote {out / 'scale.md'}")
        return

    populations, backends, reps = POPULATIONS, BACKENDS, args.reps
    if args.populations:
        populations = tuple(int(p) for p in args.populations.split(","))
    if args.backends:
        backends = tuple(args.backends.split(","))
    cohorts: tuple[int, ...] = (
        () if args.no_cohorts else tuple(COHORT_AXIS["cohorts"])  # type: ignore[arg-type]
    )
    if args.quick:
        populations, backends, reps, cohorts = (1_000, 100_000), ("sharded",), 1, (20, 60)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    work = args.work / stamp
    work.mkdir(parents=True, exist_ok=True)
    out = args.out or (work if args.quick else OUT)

    store_rows = store_sweep(populations, backends, reps, args.store_rounds, 1056, work / "store-alone")
    store = summarise_store(store_rows)
    print(store.to_string(), flush=True)

    specs = []
    for rep in range(1, reps + 1):  # interleaved: rep 1 of every point, then rep 2...
        for population in populations:
            for backend in backends:
                specs.append(
                    {
                        "population": population,
                        "cohort": COHORT,
                        "rounds": ROUNDS,
                        "backend": backend,
                        "rep": rep,
                        "max_eval_models": 0,
                    }
                )
    if not (args.quick or args.no_large):
        specs.append({**LARGE, "rep": 1})
    axis = {k: v for k, v in COHORT_AXIS.items() if k != "cohorts"}
    if args.quick:
        axis["population"] = 100_000
    specs += [{**axis, "cohort": c, "rep": rep} for rep in range(1, reps + 1) for c in cohorts]  # interleaved
    rows = []
    for spec in specs:
        spec = {
            **spec,
            "out_dir": str(work),
            "batch": stamp,
            "run_name": f"{spec['backend']}-{spec['population']}-{spec['cohort']}-r{spec['rep']}",
        }
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
    name = "scale_quick" if args.quick else "scale"
    if args.merge and (out / f"{name}_runs.parquet").is_file():
        runs = merge_earlier(pd.read_parquet(out / f"{name}_runs.parquet"), runs)
    summary = summarise(runs)
    print(summary.to_string(), flush=True)
    raw = pd.concat([runs.assign(kind="e2e"), store_rows.assign(kind="store")], ignore_index=True)
    meta = {
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPUs shared with other jobs",
        "reps": reps,
        "store_rounds": args.store_rounds,
        "parquet": f"{name}_runs.parquet",
        "reading": args.reading.read_text() if args.reading else "",
    }
    out.mkdir(parents=True, exist_ok=True)
    raw.to_parquet(out / f"{name}_runs.parquet", index=False)
    (out / f"{name}.md").write_text(markdown(summary, store, meta))
    print(f"wrote {out / (name + '.md')}")


if __name__ == "__main__":
    main()
