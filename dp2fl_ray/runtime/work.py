"""What a backbone worker does, without Ray: the actor in ``worker_actor.py`` is a thin shell.

A worker holds the frozen backbone, the data source and the partitioner, built once. Work
arrives as stateless requests (client ids plus prompt rows) and leaves as results carrying
everything it produced, so any worker can run any slice and a lost slice is simply rerun.
In a round the rows come and go as ``SliceRows`` by object reference (``movement.py``):
``train_rows`` answers with two objects, ``TrainMeta`` for the driver and the trained
``SliceRows`` for the aggregator.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch

from dp2fl_ray.algorithms.base import PromptSizes
from dp2fl_ray.algorithms.registry import build_algorithm
from dp2fl_ray.config import ExperimentConfig, config_from_dict
from dp2fl_ray.data import Partitioner, load_source, majority_class
from dp2fl_ray.engine import ClientData, LocalTraining, evaluate_pairs
from dp2fl_ray.engine.scores import macro_f1, micro_f1
from dp2fl_ray.engine.slice_memory import bytes_per_client
from dp2fl_ray.models.loader import build_model
from dp2fl_ray.models.memory import clients_per_slice_limit, slice_budget_bytes
from dp2fl_ray.runtime.results import EvalResult, TrainMeta, TrainResult
from dp2fl_ray.runtime.rows import SliceRows
from dp2fl_ray.seeding import derive_seed

SPLITS = ("train", "val", "test")


FAULT_ENV = "DP2FL_FAULT_CLIENTS"
LOG_LEVEL_ENV = "DP2FL_LOG_LEVEL"
log = logging.getLogger("dp2fl_ray.worker")


def _configure_logging() -> None:
    """Key=value log lines from workers (Ray forwards them to the driver, prefixed with the
    actor); the level follows ``dp2fl-ray --log-level`` through ``DP2FL_LOG_LEVEL``."""
    level = os.environ.get(LOG_LEVEL_ENV, "WARNING").upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(level)


def _inject_fault(client_ids: np.ndarray) -> None:
    """Fault injection for tests and drills: ``DP2FL_FAULT_CLIENTS="3,17"`` makes the training
    of those clients raise, as a bug in a client's data or code would."""
    wanted = {int(c) for c in os.environ.get(FAULT_ENV, "").split(",") if c.strip()}
    hit = wanted.intersection(int(c) for c in client_ids)
    if hit:
        raise RuntimeError(f"injected fault ({FAULT_ENV}) for clients {sorted(hit)}")


def local_training(config: ExperimentConfig) -> LocalTraining:
    """The configured algorithm's local SGD hyperparameters (for scripts outside the runtime)."""
    return build_algorithm(config.algorithm).local_training(config.train)


class WorkerCore:
    """Backbone, data and partitioner of one worker; runs slices of training and evaluation."""

    def __init__(self, config: dict[str, Any] | ExperimentConfig, num_threads: int | None = None) -> None:
        _configure_logging()
        cfg = config if isinstance(config, ExperimentConfig) else config_from_dict(config)
        if num_threads:
            torch.set_num_threads(num_threads)
        self.source = load_source(cfg.data.source, cfg.data.path, cfg.seed, image_size=cfg.data.image_size)
        # text inputs are a numpy object array of str (data/base.py)
        texts = list(cast(np.ndarray, self.source.train.inputs)) if self.source.modality == "text" else []
        self.model = build_model(
            cfg.model, self.source.class_names, texts=texts, gpus_per_worker=cfg.runtime.gpus_per_worker
        )  # texts: a tiny model's vocabulary
        self.reconfigure(cfg)
        log.info(
            "worker ready: backbone=%s device=%s threads=%d",
            cfg.model.backbone,
            self.model.device,
            torch.get_num_threads(),
        )

    def reconfigure(self, config: dict[str, Any] | ExperimentConfig, num_threads: int | None = None) -> None:
        """Take another run's config, keeping the backbone and the data source.

        The caller guarantees that what ``__init__`` built them from (model, data bar its
        partition, seed, resources) is unchanged (``warm_workers.backbone_key``); everything
        else a run may change is rebuilt here: the partitioner, the algorithm and the local
        training."""
        self.config = cfg = config if isinstance(config, ExperimentConfig) else config_from_dict(config)
        if num_threads:
            torch.set_num_threads(num_threads)
        p = cfg.data.partition
        self.partitioner = Partitioner(
            self.source, p.scheme, cfg.seed, alpha=p.alpha, shots=p.shots,
            drop_class_fraction=p.drop_class_fraction, keep_fraction=p.keep_fraction,
            dominant_fraction=p.dominant_fraction, val_fraction=p.val_fraction,
            test_fraction=p.test_fraction, samples_per_client=p.samples_per_client,
        )  # fmt: skip
        self.algorithm = build_algorithm(cfg.algorithm).for_model(self.model)
        self.forward = self.algorithm.forward()
        self.hp = self.algorithm.local_training(cfg.train)

    def describe(self) -> dict[str, Any]:
        """Facts for the run's log and summary."""
        return {
            "trainable": self.model.trainable_report(),
            "task_prompt_size": self.model.task_layout.size,
            "data_prompt_size": self.model.data_layout.size,
            "row_sizes": self.algorithm.row_sizes(
                PromptSizes(self.model.task_layout.size, self.model.data_layout.size)
            ),
            "backbone_params": sum(p.numel() for p in self.model.parameters()),
            "device": str(self.model.device),
            "threads": torch.get_num_threads(),
        }

    def slice_capacity(self) -> dict[str, int]:
        """How many clients a training slice may hold on this worker, from one measured step
        (client 0's training data, the round-0 prompts) against its memory budget
        (``models/memory.py``). Raises ``ModelError`` when not even one client fits."""
        rt = self.config.runtime
        task, data = (torch.from_numpy(a) for a in self.initial_prompts())
        per_client = bytes_per_client(
            self.model, task, data, self.client_data(0, "train"), self.hp.batch_size
        )
        budget = slice_budget_bytes(
            rt.slice_memory_mib, self.model.device, rt.cpus_per_worker, rt.gpus_per_worker
        )
        return {
            "bytes_per_client": per_client,
            "budget_bytes": budget,
            "clients": clients_per_slice_limit(budget, per_client),
        }

    def initial_prompts(self) -> tuple[np.ndarray, np.ndarray]:
        """The model's round-0 task and data prompts, a function of the experiment seed only."""
        task, data = self.model.initial_prompts(derive_seed(self.config.seed, "init-prompts"))
        return task.numpy(), data.numpy()

    def initial_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The algorithm's round-0 rows (for most methods, the model's round-0 prompts)."""
        task, data = self.algorithm.initial_rows(*self.initial_prompts(), seed=self.config.seed)
        return np.asarray(task, np.float32), np.asarray(data, np.float32)

    def client_data(self, client_id: int, split: str) -> ClientData:
        """One client's split, computed on demand from (seed, client id)."""
        idx = self.partitioner.client(int(client_id))
        if split == "train":
            x, y = self.source.train.take(idx.train)
        elif split == "val":
            x, y = self.source.val_pool.take(idx.val)
        elif split == "test":
            x, y = self.source.test.take(idx.test)
        else:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return ClientData(self.model.encode(x), y)

    def train_slice(
        self,
        round_idx: int,
        client_ids: Sequence[int],
        task: np.ndarray,
        data: np.ndarray,
        need_start_loss: Sequence[bool],
        need_start_acc: Sequence[bool] | None = None,
    ) -> TrainResult:
        """Train a slice of clients together from their start prompts ``(B, Dt)``, ``(B, Dd)``.

        Before training, the start model is evaluated only where asked: on val for the
        clients in ``need_start_loss`` (DP2FL's baseline L_k) and on test for those in
        ``need_start_acc`` (clients that joined mid-run): nobody else pays for it.
        """
        start = time.perf_counter()
        ids = np.asarray(client_ids, np.int64)
        t0, d0 = torch.from_numpy(np.array(task, np.float32)), torch.from_numpy(np.array(data, np.float32))
        _inject_fault(ids)
        start_loss = np.full(len(ids), np.nan, np.float32)
        start_acc = np.full(len(ids), np.nan)
        wanted = {
            "val": need_start_loss,
            "test": need_start_acc if need_start_acc is not None else [False] * len(ids),
        }
        for split, need in wanted.items():
            asked = [k for k, flag in enumerate(need) if flag]
            if not asked:
                continue
            sets = [self.client_data(ids[k], split) for k in asked]
            diagonal = [(a, a) for a in range(len(asked))]
            ev = evaluate_pairs(
                self.model, t0[asked], d0[asked], sets, diagonal, self.config.train.eval_batch_size,
                forward=self.forward,
            )  # fmt: skip
            if split == "val":
                start_loss[asked] = ev.loss.numpy()
            else:
                start_acc[asked] = ev.accuracy.numpy()
        train_sets = [self.client_data(c, "train") for c in ids]
        seeds = [derive_seed(self.config.seed, "shuffle", round_idx, int(c)) for c in ids]
        out = self.algorithm.train(self.model, t0, d0, train_sets, self.hp, seeds)
        log.debug(
            "phase=train round=%d clients=%s seconds=%.2f mean_loss=%.4f",
            round_idx, ids.tolist(), time.perf_counter() - start, float(np.mean(out.mean_loss.numpy())),
        )  # fmt: skip
        return TrainResult(
            client_ids=ids,
            task=out.task.numpy(),
            data=out.data.numpy(),
            train_loss=out.mean_loss.numpy(),
            start_val_loss=start_loss,
            start_test_acc=start_acc,
            n_train=np.array([len(s) for s in train_sets], np.int64),
            seconds=time.perf_counter() - start,
            personal_task=None if out.personal_task is None else out.personal_task.numpy(),
            personal_data=None if out.personal_data is None else out.personal_data.numpy(),
        )

    def train_rows(
        self,
        round_idx: int,
        client_ids: Sequence[int],
        start: SliceRows,
        lo: int,
        need_start_loss: Sequence[bool],
        need_start_acc: Sequence[bool] | None = None,
    ) -> tuple[TrainMeta, SliceRows]:
        """``train_slice`` for clients ``lo ..`` of a block of start rows (a whole slice, or one
        client of it when a failed slice is re-run client by client); the trained rows come
        back apart from the metadata, so the driver can pass them on without reading them."""
        hi = lo + len(client_ids)
        res = self.train_slice(
            round_idx, client_ids, start.task[lo:hi], start.data[lo:hi], need_start_loss, need_start_acc
        )
        rows = SliceRows(res.task, res.data, res.personal_task, res.personal_data)
        finite = np.isfinite(res.task).all(axis=1) & np.isfinite(res.data).all(axis=1)
        meta = TrainMeta(
            res.client_ids, res.train_loss, res.start_val_loss, res.start_test_acc, res.n_train,
            finite, rows.nbytes, res.seconds,
        )  # fmt: skip
        return meta, rows

    def evaluate_rows(
        self,
        rows: SliceRows,
        set_clients: Sequence[int],
        split: str,
        pairs: np.ndarray,
        keep_predictions: bool = False,
    ) -> EvalResult:
        """``evaluate`` with the model rows given as one ``SliceRows`` (by object reference)."""
        return self.evaluate(rows.task, rows.data, set_clients, split, pairs, keep_predictions)

    def evaluate_own(
        self, rows: SliceRows, set_clients: Sequence[int], splits: Sequence[tuple[str, bool]]
    ) -> list[EvalResult]:
        """Each client's own model row (pairs (k, k)) on each ``(split, keep predictions)``, in
        order: one call for a slice's validation and test evaluations, so its rows come once."""
        n = len(set_clients)
        diagonal = np.stack([np.arange(n), np.arange(n)], axis=1)  # (n, 2)
        return [
            self.evaluate(rows.task, rows.data, set_clients, split, diagonal, keep) for split, keep in splits
        ]

    def evaluate(
        self,
        task: np.ndarray,
        data: np.ndarray,
        set_clients: Sequence[int],
        split: str,
        pairs: np.ndarray,
        keep_predictions: bool = False,
    ) -> EvalResult:
        """Evaluate model rows on clients' splits; ``pairs[p] = (model row, index into set_clients)``."""
        start = time.perf_counter()
        sets = [self.client_data(c, split) for c in set_clients]
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        used, rows = np.unique(pairs[:, 0], return_inverse=True)  # only the models these pairs need
        pair_list = [(int(i), int(j)) for i, j in zip(rows, pairs[:, 1])]
        out = evaluate_pairs(
            self.model, torch.from_numpy(np.array(task[used], np.float32)),
            torch.from_numpy(np.array(data[used], np.float32)),
            sets, pair_list, self.config.train.eval_batch_size, keep_predictions, self.forward,
        )  # fmt: skip
        n = len(pair_list)
        mi, ma, maj = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        majority = {}
        for p, (_, j) in enumerate(pair_list):
            if j not in majority:
                train_labels = self.source.train.labels[self.partitioner.client(int(set_clients[j])).train]
                majority[j] = float(np.mean(sets[j].labels.numpy() == majority_class(train_labels)))
            maj[p] = majority[j]
            if out.predictions is not None:
                y, yhat = sets[j].labels.numpy(), out.predictions[p].numpy()
                mi[p], ma[p] = micro_f1(y, yhat), macro_f1(y, yhat)
        log.debug(
            "phase=eval split=%s clients=%s pairs=%d seconds=%.2f",
            split, [int(c) for c in set_clients], n, time.perf_counter() - start,
        )  # fmt: skip
        return EvalResult(
            loss=out.loss.numpy(), correct=out.correct.numpy(), count=out.count.numpy(),
            micro_f1=mi, macro_f1=ma, majority_acc=maj, seconds=time.perf_counter() - start,
        )  # fmt: skip
