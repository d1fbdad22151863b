"""The round loop on Ray: ``run_experiment(config)`` is what the CLI, Tune and jobs all call.

The driver samples cohorts, cuts them into slices, hands slices to the backbone worker pool
as stateless work, gathers results in client-id order (never completion order), and asks the
aggregator actor to turn them into the next state. Metrics are written at each round's end.

Client rows never pass through the driver: the aggregator hands each slice its start rows by
object reference, the workers' trained rows go to the aggregator by reference, and the
aggregator keeps the round's start, results and update itself (``aggregation.py``'s round
calls). The driver moves ids, losses and metrics; ``movement.Ledger`` counts what a round
moves (the ``moved_bytes`` and ``driver_bytes`` columns of the rounds table).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
from ray.util.placement_group import get_current_placement_group

from dp2fl_ray.algorithms.base import CrossEval
from dp2fl_ray.algorithms.registry import build_algorithm
from dp2fl_ray.config import ExperimentConfig, StoreConfig, config_to_dict, load_config, save_config
from dp2fl_ray.errors import CheckpointError, ConfigError, Dp2flError, RunError, RunInterrupted
from dp2fl_ray.metrics import MetricsWriter, read_summary, read_table, write_json
from dp2fl_ray.preflight import check_run_name, preflight
from dp2fl_ray.runtime import records
from dp2fl_ray.runtime.actors import keep_warm, start_aggregator, start_workers
from dp2fl_ray.runtime.aggregation import Opening, ServerRound
from dp2fl_ray.runtime.checkpoint import MANIFEST, load_checkpoint, save_checkpoint
from dp2fl_ray.runtime.cohort import cut_slices, held_out_clients, parse_joins, population_at, sample_cohort
from dp2fl_ray.runtime.evaluation import (
    Evaluation,
    Request,
    mean_acc,
    one_model_rows_request,
    own_rows_request,
)
from dp2fl_ray.runtime.movement import RowsRef
from dp2fl_ray.runtime.pool import WorkerPool
from dp2fl_ray.runtime.progress import RoundProgress
from dp2fl_ray.runtime.results import EvalResult
from dp2fl_ray.runtime.resume_checks import check_resumable, config_sha256, metrics_inventory
from dp2fl_ray.runtime.run_lock import RunLock
from dp2fl_ray.runtime.stop_signals import StopSignals
from dp2fl_ray.runtime.training import train_cohort
from dp2fl_ray.runtime.user_errors import strip_ansi, user_error
from dp2fl_ray.state.sizing import store_sizes

log = logging.getLogger("dp2fl_ray")
RoundCallback = Callable[[dict[str, Any]], None]


def run_experiment(
    config: ExperimentConfig,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    run_name: str | None = None,
    progress: bool = True,
    on_round: RoundCallback | None = None,
) -> dict[str, Any]:
    """Run one experiment end to end and return its summary (also in ``summary.json``).

    Starts a local Ray (``ray.init()``) unless Ray is already up, or ``runtime.address`` /
    ``RAY_ADDRESS`` name a cluster. The run directory is ``<output_dir>/<run_name>``
    (defaults: ``output.dir`` and ``<name>-<UTC timestamp>``). ``on_round`` is called after
    each round's metrics and checkpoint are written with that round's row of the ``rounds`` table plus
    ``round`` and ``run_dir`` (Ray Tune reports through it).

    Raises:
        ConfigError, DataError, ModelError: from :func:`~dp2fl_ray.preflight.preflight`, before any
            directory is made or Ray starts; ``run_name`` not a plain folder name.
        RunLockedError: another process holds the run directory.
        RunInterrupted: SIGINT/SIGTERM stopped the run (summary status ``interrupted``).
    """
    check_run_name(run_name)
    preflight(config)  # a bad data or model path fails here, in a second, with no run directory
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(output_dir or config.output.dir) / (run_name or f"{config.name}-{stamp}")
    if (run_dir / "summary.json").exists():
        raise ConfigError(
            "output.dir", str(run_dir), "a new run directory", "it already holds a run; pick another name"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        save_config(config, run_dir / "config.yaml")
        return _execute(config, run_dir, progress, on_round, checkpoint=None)


def resume_experiment(
    run_dir: str | os.PathLike[str], *, progress: bool = True, on_round: RoundCallback | None = None
) -> dict[str, Any]:
    """Continue a killed, failed or interrupted run from its last checkpoint, in the same directory.

    The rounds after the checkpoint are run again from the checkpointed state with the same
    derived seeds, so the run ends with exactly the numbers an uninterrupted run gives. Before
    Ray starts, the run directory is locked and checked (``runtime/resume_checks.py``): the
    config must be the checkpointed one and every metrics table whole up to the checkpoint.

    Raises:
        CheckpointError: not a run directory, already completed, no usable checkpoint, an
            edited config (the changed fields are listed) or a missing/unreadable metrics table.
        RunLockedError: another process holds the run directory.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(
            f"{run_dir} is not a run directory (no config.yaml); pass the directory a run wrote"
        )
    with RunLock(run_dir):
        summary = read_summary(run_dir) if (run_dir / "summary.json").is_file() else {}
        if summary.get("status") == "completed":
            raise CheckpointError(f"the run in {run_dir} already completed; nothing to resume")
        config = load_config(run_dir / "config.yaml")
        checkpoint = load_checkpoint(run_dir)
        check_resumable(run_dir, config, checkpoint)
        preflight(config)
        return _execute(config, run_dir, progress, on_round, checkpoint=checkpoint)


def _execute(
    config: ExperimentConfig,
    run_dir: Path,
    progress: bool,
    on_round: RoundCallback | None,
    checkpoint: dict[str, Any] | None,
) -> dict[str, Any]:
    """Run the rounds under signal handlers; whatever happens, write the summary and release Ray.

    A worker's ``DataError``/``ModelError`` is re-raised as itself (not Ray's wrapper), and the
    summary's ``error`` is that one line without colour codes; ``resume_with`` is set only
    when a checkpoint exists to resume from.
    """
    summary: dict[str, Any] = {"name": config.name, "status": "running", "run_dir": str(run_dir)}
    write_json(run_dir / "summary.json", summary)
    started_ray = connect_ray(config.runtime.address)
    with StopSignals() as stop:  # after ray.init, which installs handlers of its own
        simulation = Simulation(config, run_dir, progress)
        simulation.on_round = _stopping(config, stop, on_round, simulation)
        try:
            summary.update(simulation.run(checkpoint))
            summary["status"] = "completed"
            return summary
        except RunInterrupted as exc:
            summary.update(status="interrupted", error=f"interrupted: {exc}")
            _resume_hint(summary, run_dir)
            hint = f"; resume with: {summary['resume_with']}" if "resume_with" in summary else ""
            raise RunInterrupted(exc.signum, f"{exc} ({run_dir}){hint}") from None
        except BaseException as exc:
            error = exc if isinstance(exc, Dp2flError) else user_error(exc)
            shown = error if error is not None else exc
            summary.update(status="failed", error=strip_ansi(f"{type(shown).__name__}: {shown}")[:4000])
            _resume_hint(summary, run_dir)
            if error is not None and error is not exc:
                raise error from exc
            raise
        finally:
            write_json(run_dir / "summary.json", summary)
            simulation.stop(keep_workers=summary["status"] == "completed" and not started_ray)
            if started_ray:
                ray.shutdown()


def _stopping(
    config: ExperimentConfig, stop: StopSignals, on_round: RoundCallback | None, simulation: Simulation
) -> RoundCallback:
    """``on_round`` plus the safe point: after a round, a pending signal stops the run there,
    with that round checkpointed (even off ``output.checkpoint_every``) so a resume loses nothing."""

    def after_round(row: dict[str, Any]) -> None:
        if on_round is not None:
            on_round(row)
        r = int(row["round"])
        if stop.requested and r < config.federation.rounds:
            every = config.output.checkpoint_every
            if not every or r % every:
                simulation.checkpoint(r)
            stop.check(r)

    return after_round


def _resume_hint(summary: dict[str, Any], run_dir: Path) -> None:
    if (run_dir / "checkpoints" / MANIFEST).is_file():
        summary["resume_with"] = f"dp2fl-ray run --resume {run_dir}"
        summary["last_checkpoint"] = str(run_dir / "checkpoints" / MANIFEST)


def store_projection(store: StoreConfig) -> dict[str, Any]:
    """What 10^6 touched clients of the paper's CLIP ViT-B/16 config would cost in this run's
    store backend, per ``store.dtype`` (computed from its shapes, ``state/sizing.py``)."""
    paper = [s for s in store_sizes(10**6, store.backend) if s.config.startswith("CLIP")]
    return {
        "paper_clip_bytes_per_client": {s.dtype: s.bytes_per_client for s in paper},
        "paper_clip_bytes_per_1e6_clients": {s.dtype: s.total_bytes for s in paper},
    }


def connect_ray(address: str | None) -> bool:
    """Join the configured cluster or start a local one; True if this call started Ray.

    With no address (config or ``RAY_ADDRESS``) the run gets a new local Ray, as documented:
    never a cluster that a ``ray start`` left on this machine, which a bare ``ray.init()`` would
    join silently. Name it (``--address auto`` or its address) to use it."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    return True


def check_pool_fits(cluster: dict[str, float], workers: int, cpus: float, gpus: float) -> None:
    """Fail fast, naming the knob, when the worker pool can never be placed on the cluster."""
    need_cpu, have_cpu = workers * cpus, cluster.get("CPU", 0.0)
    if need_cpu > have_cpu:
        raise ConfigError(
            "runtime.workers", workers,
            f"workers x runtime.cpus_per_worker <= {have_cpu:g} CPUs of this cluster",
            f"{workers} x {cpus:g} = {need_cpu:g}; lower runtime.workers or runtime.cpus_per_worker",
        )  # fmt: skip
    need_gpu, have_gpu = workers * gpus, cluster.get("GPU", 0.0)
    if need_gpu > have_gpu:
        raise ConfigError(
            "runtime.gpus_per_worker", gpus,
            f"workers x gpus_per_worker <= {have_gpu:g} GPUs of this cluster",
            "set runtime.gpus_per_worker: 0 to run on CPUs",
        )  # fmt: skip


@dataclass(frozen=True)
class TrainedRound:
    """The training phase's answer: the clients whose training succeeded and their numbers (their
    rows went from the workers to the aggregator)."""

    cohort: np.ndarray  # (m,) ids of the clients that stay in the round
    first_time: np.ndarray  # (m,) bool
    n_train: np.ndarray  # (m,)
    baselines: np.ndarray  # (m,) L_k: stored, or measured before training where asked
    train_loss: np.ndarray  # (m,)
    start_test_acc: np.ndarray  # (m,) NaN except for clients that joined mid-run
    failed: pd.DataFrame  # rows of the clients table for the clients that failed


class Simulation:
    """One experiment's actors and round loop (the driver side)."""

    def __init__(
        self, config: ExperimentConfig, run_dir: Path, progress: bool, on_round: RoundCallback | None = None
    ) -> None:
        self.config = config
        self.on_round = on_round
        self.run_dir = run_dir
        self.metrics = MetricsWriter(run_dir)
        self.show_progress = progress
        self.run_id = f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
        self.algorithm = build_algorithm(config.algorithm)

    def run(self, checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start the actors, run the rounds (after ``checkpoint``'s round when resuming), summarise."""
        cfg, rt = self.config, self.config.runtime
        t0 = time.perf_counter()
        check_pool_fits(ray.cluster_resources(), rt.workers, rt.cpus_per_worker, rt.gpus_per_worker)
        self.workers = start_workers(config_to_dict(cfg), rt, self.run_id, warm=rt.keep_workers)
        self.pool = WorkerPool(self.workers, rt.max_retries)
        store_uri = str((self.run_dir / "store").resolve())
        self.aggregator = start_aggregator(  # starts alongside the workers, takes the rows from one
            cfg.algorithm, self.workers[0].initial_rows.remote(), cfg.store, store_uri, self.run_id
        )
        fed = cfg.federation
        info = ray.get(self.workers[0].describe.remote())
        capacity = min(ray.get([w.slice_capacity.remote() for w in self.workers]), key=lambda c: c["clients"])
        self.clients_per_slice = min(rt.clients_per_slice, capacity["clients"])
        if self.clients_per_slice < rt.clients_per_slice:
            log.info(
                "slices of %d clients (runtime.clients_per_slice %d): "
                "a client's step takes %.1f MiB of %.1f MiB",
                self.clients_per_slice, rt.clients_per_slice, capacity["bytes_per_client"] / 2**20,
                capacity["budget_bytes"] / 2**20,
            )  # fmt: skip
        self.evals = Evaluation(self.pool, self.clients_per_slice, cfg.seed, fed.max_eval_models)
        first = 1
        if checkpoint is not None:
            ray.get(self.aggregator.restore.remote(checkpoint["aggregator"]))
            first = int(checkpoint["round"]) + 1
            self.metrics.drop_rounds_after(first - 1)  # a killed round's partial files
            log.info("resuming %s after round %d", self.run_dir, first - 1)
        log.info("trainable: %s", info["trainable"])
        startup_s = time.perf_counter() - t0
        self.joins = parse_joins(cfg.federation.joins)
        everyone = population_at(cfg.federation.rounds, cfg.federation.population, self.joins)
        held_out = held_out_clients(everyone, cfg.federation.new_clients)  # ids after every joiner
        with RoundProgress(cfg.federation.rounds, enabled=self.show_progress, initial=first - 1) as bar:
            for r in range(first, cfg.federation.rounds + 1):
                self.run_round(r, held_out, bar)
                if cfg.output.checkpoint_every and r % cfg.output.checkpoint_every == 0:
                    self.checkpoint(r)
                if self.on_round is not None:  # after the checkpoint: a report implies a resumable round
                    self.on_round(self.round_row)
        return {
            **self.summarize(),
            "startup_s": startup_s,
            "wall_s": time.perf_counter() - t0,
            "workers": rt.workers,
            "clients_per_slice": self.clients_per_slice,
            "slice_retries": self.pool.retries,
            "backbone_params": info["backbone_params"],
            "task_prompt_size": info["task_prompt_size"],
            "data_prompt_size": info["data_prompt_size"],
            **ray.get(self.aggregator.store_stats.remote()),
            **store_projection(self.config.store),
            "store_dtype": self.config.store.dtype,
        }

    def stop(self, keep_workers: bool = False) -> None:
        """Release the actors (a shared cluster keeps running other work). With ``keep_workers``
        (a completed run on a cluster this process did not start) and ``runtime.keep_workers``,
        the backbone workers stay warm for this process's next run (``warm_workers.py``),
        unless one died during the run or the run is a Tune trial's."""
        workers = getattr(self, "workers", [])
        pool = getattr(self, "pool", None)
        if (
            keep_workers
            and self.config.runtime.keep_workers
            and pool is not None
            and pool.retries == 0
            and len(pool.workers) == len(workers)
            and get_current_placement_group() is None
        ):
            keep_warm(self.config, workers)
            workers = []
        for actor in [*workers, getattr(self, "aggregator", None)]:
            if actor is not None:
                ray.kill(actor)

    def summarize(self) -> dict[str, Any]:
        """Headline numbers from the written tables (so a resumed run summarises all rounds)."""
        cfg = self.config
        rounds = read_table(self.run_dir, "rounds")
        clients = read_table(self.run_dir, "clients")
        last = rounds.iloc[-1]
        final = clients[(clients["round"] == last["round"]) & (clients["status"] == "ok")]
        zero_shot = self.evals.one_model(
            *self.initial_prompts(), final["client_id"].to_numpy()
        )  # the same test splits
        return {
            "rounds_completed": int(last["round"]),
            "algorithm": cfg.algorithm.name,
            "population": int(last["population"]),
            "failed_clients": int(rounds["failed_clients"].sum()),
            "eval_models_per_client": int(rounds["eval_models_per_client"].max()),
            "cohort": cfg.federation.cohort,
            "personalized_acc": float(last["personalized_acc"]),
            "personalized_micro_f1": float(last["personalized_micro_f1"]),
            "global_acc": float(last["global_acc"]),
            "zero_shot_acc": mean_acc(zero_shot),
            "majority_acc": float(final["majority_acc"].mean()),
            "client_updates_per_s": float(rounds["cohort_size"].sum() / rounds["wall_s"].sum()),
        }

    def run_round(self, r: int, held_out: np.ndarray, bar: RoundProgress) -> records.RoundOutcome:
        """One round, phase by phase: sample, train, cross-evaluate, aggregate, evaluate, commit.

        Every decision is the algorithm's (``algorithms/base.py``); this only schedules.
        """
        t_round = time.perf_counter()
        timings: dict[str, float] = {}
        ledger = self.pool.ledger
        ledger.take()  # anything before this round (start-up, the summary) is not the round's
        population, cohort = self.sample(r)
        slices = cut_slices(len(cohort), len(self.workers), self.clients_per_slice)
        opening, start_rows = ledger.call(self.aggregator.open_round_rows, cohort, slices)
        timings["start_s"] = time.perf_counter() - t_round  # sampling + store reads
        bar.phase(r, "train")
        t = time.perf_counter()
        trained = self.train(r, cohort, opening, slices, start_rows)
        timings["train_s"] = time.perf_counter() - t
        cohort = trained.cohort
        t = time.perf_counter()
        cross = self.cross_evaluate(r, cohort, bar)
        timings["crosseval_s"] = time.perf_counter() - t
        t = time.perf_counter()
        server: ServerRound = ledger.call(self.aggregator.aggregate_round, cross)
        timings["aggregate_s"] = time.perf_counter() - t
        bar.phase(r, "evaluate")
        t = time.perf_counter()
        personal_val, personal_test, global_test = self.evaluate(r, cohort, held_out)
        timings["eval_s"] = time.perf_counter() - t
        t = time.perf_counter()
        self.commit(cohort, personal_val)
        timings["commit_s"] = time.perf_counter() - t  # store writes
        timings["wall_s"] = time.perf_counter() - t_round
        outcome = records.RoundOutcome(
            r, cohort, trained.first_time, trained.n_train, trained.baselines, cross, trained.train_loss,
            trained.start_test_acc, server, personal_val, personal_test, held_out, global_test, timings,
            population, len(trained.failed), self.evaluated(r),
        )  # fmt: skip
        self.write_round(outcome, trained.failed)
        bar.done(
            r,
            loss=float(np.mean(trained.train_loss)),
            acc=mean_acc(personal_test),
            global_acc=mean_acc(global_test),
        )
        return outcome

    def sample(self, r: int) -> tuple[int, np.ndarray]:
        """The clients that exist at round r and the cohort drawn from them (ids only)."""
        fed = self.config.federation
        population = population_at(r, fed.population, self.joins)
        return population, sample_cohort(self.config.seed, r, population, min(fed.cohort, population))

    def train(
        self, r: int, cohort: np.ndarray, opening: Opening, slices: list[slice], start_rows: list[RowsRef]
    ) -> TrainedRound:
        """Local training on the pool; failed clients leave the round (their state is kept).

        Each slice's start rows go from the aggregator to its worker by reference; a failed
        slice's clients are re-run one by one from the same slice object (``training.py``).
        The trained rows of the clients that stay go from the workers to the aggregator.
        """
        cfg = self.config
        need_baseline = self.algorithm.needs_baseline(opening.first_time)
        joined = opening.first_time & (cohort >= cfg.federation.population)  # joined mid-run: start accuracy
        block = np.repeat(np.arange(len(slices)), [s.stop - s.start for s in slices])  # (m,) slice of k
        ledger = self.pool.ledger

        def submit(w: Any, s: slice) -> Any:
            b = int(block[s.start])
            return ledger.submit(
                w.train_rows,
                r,
                cohort[s],
                start_rows[b],
                s.start - slices[b].start,
                need_baseline[s],
                joined[s],
            )

        trained = train_cohort(self.pool, submit, len(cohort), slices, r, cohort, cfg.runtime.max_failures)
        failed = records.failed_clients_frame(cohort, trained)
        keep = np.flatnonzero(trained.ok)
        if len(keep) == 0:
            raise RunError(
                f"round {r}: every cohort client's training failed; the first: {trained.reason[0]}"
            )
        baselines = np.where(need_baseline[keep], trained.start_val_loss[keep], opening.baselines[keep])
        used = np.unique(trained.where[keep, 0])  # the row objects holding the kept clients' rows
        ref_of = np.searchsorted(used, trained.where[keep, 0])
        where = np.stack([keep, ref_of, trained.where[keep, 1]], axis=1)  # (m', 3)
        for i in used:  # each object crosses once, from its worker to the aggregator
            ledger.by_reference(trained.ref_bytes[int(i)])
        ledger.call(
            self.aggregator.take_trained_refs, cohort[keep], [trained.refs[int(i)] for i in used], where,
            trained.n_train[keep], baselines,
        )  # fmt: skip
        return TrainedRound(
            cohort[keep], opening.first_time[keep], trained.n_train[keep], baselines,
            trained.train_loss[keep], trained.start_test_acc[keep], failed,
        )  # fmt: skip

    def cross_evaluate(self, r: int, cohort: np.ndarray, bar: RoundProgress) -> CrossEval | None:
        """The cross-evaluation, for methods that ask for one; blocks feed the aggregator's
        early server work as they finish (``runtime.overlap_aggregation``). The blocks' model
        rows come from the aggregator by reference; only losses come back here."""
        if not self.algorithm.cross_evaluates:
            return None
        bar.phase(r, "cross-eval")
        ledger = self.pool.ledger
        absorb = None
        if self.config.runtime.overlap_aggregation:
            ledger.submit(self.aggregator.begin_early_round)  # calls run in order

            def absorb(pair_i: np.ndarray, pair_j: np.ndarray, losses: np.ndarray) -> object:
                return ledger.submit(self.aggregator.absorb_losses, pair_i, pair_j, losses)

        def rows_for(used: list[np.ndarray]) -> list[RowsRef]:
            return ledger.call(self.aggregator.cross_rows_refs, used)  # type: ignore[no-any-return]

        return self.evals.cross(r, cohort, rows_for, on_block=absorb)

    def evaluate(
        self, r: int, cohort: np.ndarray, held_out: np.ndarray
    ) -> tuple[EvalResult | None, EvalResult | None, EvalResult | None]:
        """Personal models on val and test, the global model on the held-out clients.

        On rounds that ``federation.eval_every`` skips, only what the algorithm needs runs:
        the personal validation loss of a method that keeps it as the next baseline. The
        models' rows come from the aggregator by reference, one object per slice.
        """
        evaluated = self.evaluated(r)
        splits = [("val", False)] if evaluated or self.algorithm.needs_validation_loss else []
        splits += [("test", True)] if evaluated else []
        ledger = self.pool.ledger
        requests: list[Request] = []
        if splits:  # one call per slice for both splits: its rows cross to a worker once
            slices = self.evals.slices(len(cohort))
            refs = ledger.call(self.aggregator.personal_rows_refs, slices)
            requests.append(own_rows_request(cohort, {s.start: ref for s, ref in zip(slices, refs)}, splits))
        with_global = evaluated and self.algorithm.has_global_model
        if with_global:
            requests.append(one_model_rows_request(ledger.call(self.aggregator.global_model_ref), held_out))
        answers = self.evals.together(requests)
        personal = dict(zip([split for split, _ in splits], answers))
        return personal.get("val"), personal.get("test"), answers[len(splits)] if with_global else None

    def evaluated(self, r: int) -> bool:
        """Whether round r runs the personalised and global evaluations (``federation.eval_every``)."""
        fed = self.config.federation
        return r % fed.eval_every == 0 or r == fed.rounds

    def commit(self, cohort: np.ndarray, personal_val: EvalResult | None) -> None:
        """Each cohort client's row and next baseline into the store (NaN when not measured):
        the aggregator commits the update it made itself."""
        baselines = personal_val.loss if personal_val is not None else np.full(len(cohort), np.nan)
        self.pool.ledger.call(self.aggregator.commit_round, baselines)

    def write_round(self, outcome: records.RoundOutcome, failed: pd.DataFrame) -> None:
        """The round's rows of every table (rounds last: its presence means the round is whole)."""
        cfg, r = self.config, outcome.round_idx
        evals = records.evals_frame(outcome)
        if r == cfg.federation.rounds and len(outcome.held_out) and self.algorithm.has_global_model:
            evals = pd.concat(
                [
                    evals,
                    self.evals.new_clients(self.initial_prompts(), self.final_prompts(), outcome.held_out),
                ],
                ignore_index=True,
            )
        t = time.perf_counter()
        clients = records.clients_frame(outcome)
        self.metrics.write(
            "clients", r, pd.concat([clients, failed], ignore_index=True) if len(failed) else clients
        )
        self.metrics.write("evals", r, evals)
        aggregation = outcome.server.aggregation
        if aggregation is not None:
            self.metrics.write("aggregation", r, aggregation)
        outcome.timings["metrics_s"] = time.perf_counter() - t  # the other tables' writes
        round_row = records.rounds_frame(outcome, self.pool.ledger.take())
        self.metrics.write("rounds", r, round_row)
        self.round_row = {"round": r, "run_dir": str(self.run_dir), **round_row.iloc[0].to_dict()}

    def initial_prompts(self) -> tuple[np.ndarray, np.ndarray]:
        return tuple(ray.get(self.aggregator.initial_prompts.remote()))  # type: ignore[return-value]

    def final_prompts(self) -> tuple[np.ndarray, np.ndarray]:
        """The last update's global rows (one row each: the global model, not client rows)."""
        return tuple(ray.get(self.aggregator.last_global_rows.remote()))  # type: ignore[return-value]

    def checkpoint(self, r: int) -> None:
        """The aggregator's full state after round r (see ``checkpoint.py``)."""
        state = {
            "config": config_to_dict(self.config),
            "config_sha256": config_sha256(self.config),  # a resume refuses an edited config.yaml
            "metrics": metrics_inventory(self.run_dir, r),  # and metrics that lost a round
            "aggregator": ray.get(self.aggregator.snapshot.remote()),
        }
        save_checkpoint(self.run_dir, r, state)
