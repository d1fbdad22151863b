"""The Flower arm: Flower's simulation engine (``flwr[simulation]``, Ray backend) running
the same client training, as a competent Flower user would write it.

- The backbone, data source and partitioner are loaded ONCE per Ray worker process, in a
  module-level cache of the ClientApp (not once per message), by a warm-up message to
  each actor before round 1 (start-up, as dp2fl-ray's workers load before round 1).
- Each actor has ``num_cpus: 1`` and one torch thread (two single-thread actors here).
- The backbone is the naive arm's ``baseline_model`` (``reference`` or ``package``).
- Training and evaluation are the naive arm's ``train_one_client`` / ``evaluate_one``
  (torch.optim.SGD, B = 1, same seeds), FedAvg over all prompts (Flower's ``FedAvg``,
  weighted by ``num-examples``): the same math as dp2fl-ray's ``promptfl``.
- The strategy trains and evaluates dp2fl-ray's cohort of each round (``sample_cohort``),
  each message carrying the client id its node plays, so every arm sees the same clients.

Runs in ``.venv-bench`` (Flower pins another Ray than the package's): ``throughput.py``
starts it as a subprocess with that venv's Python.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from naive import baseline_model, evaluate_one, train_one_client

from dp2fl_ray.config import ExperimentConfig, config_from_dict, config_to_dict
from dp2fl_ray.runtime.cohort import sample_cohort
from dp2fl_ray.runtime.work import WorkerCore, local_training
from dp2fl_ray.seeding import derive_seed

CONFIG_ENV = "DP2FL_BENCH_CONFIG"  # the workload config as JSON, inherited by Ray workers
BASELINE_ENV = "DP2FL_BENCH_BASELINE"  # which backbone implementation (naive.BASELINE_MODELS)
_CACHE: dict[str, Any] = {}  # per Ray worker process: the loaded backbone and data


def _core() -> tuple[WorkerCore, float]:
    """This process's backbone and data, loaded on first use; and the seconds that took."""
    if "core" not in _CACHE:
        start = time.perf_counter()
        cfg = config_from_dict(json.loads(os.environ[CONFIG_ENV]))
        _CACHE["core"] = WorkerCore(cfg, num_threads=int(cfg.runtime.cpus_per_worker))
        _CACHE["model"] = baseline_model(_CACHE["core"].model, os.environ.get(BASELINE_ENV, "reference"))
        _CACHE["load_s"] = time.perf_counter() - start
        return _CACHE["core"], _CACHE["load_s"]
    return _CACHE["core"], 0.0


client_app = ClientApp()


@client_app.query()
def warm_up(msg: Message, context: Context) -> Message:
    """Load this worker's cache before round 1 (dp2fl-ray's workers load before it too)."""
    _, load_s = _core()
    time.sleep(
        float(msg.content["config"]["hold-s"])
    )  # keep this actor busy: the next message goes to another
    return Message(RecordDict({"metrics": MetricRecord({"load-s": load_s})}), reply_to=msg)


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    core, load_s = _core()
    cid, rnd = int(msg.content["config"]["client-id"]), int(msg.content["config"]["server-round"])
    task, data = msg.content["arrays"].to_numpy_ndarrays()
    client = core.client_data(cid, "train")
    seed = derive_seed(core.config.seed, "shuffle", rnd, cid)
    task, data, loss = train_one_client(
        _CACHE["model"], task, data, client, local_training(core.config), seed
    )
    metrics = MetricRecord({"num-examples": len(client), "train-loss": loss, "load-s": load_s})
    return Message(RecordDict({"arrays": ArrayRecord([task, data]), "metrics": metrics}), reply_to=msg)


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    core, load_s = _core()
    cid = int(msg.content["config"]["client-id"])
    task, data = msg.content["arrays"].to_numpy_ndarrays()
    out: dict[str, Any] = {"load-s": load_s}
    for split in ("val", "test"):
        loss, correct, count = evaluate_one(
            _CACHE["model"], task, data, core.client_data(cid, split), core.config.train.eval_batch_size
        )
        out.update({f"{split}-loss": loss, f"{split}-acc": correct / max(1, count)})
    out["num-examples"] = count
    return Message(RecordDict({"metrics": MetricRecord(out)}), reply_to=msg)


class CohortFedAvg(FedAvg):
    """FedAvg on dp2fl-ray's cohort of each round; records round times and accuracies."""

    def __init__(self, config: ExperimentConfig) -> None:
        super().__init__(min_train_nodes=1, min_evaluate_nodes=1, min_available_nodes=1)
        self.config = config
        self.round_start: dict[int, float] = {}
        self.round_end: dict[int, float] = {}
        self.accuracy: dict[int, float] = {}
        self.load_s = 0.0
        self.epoch: dict[str, float] = {}

    def _messages(self, rnd: int, arrays: ArrayRecord, grid: Grid, kind: str) -> Iterable[Message]:
        f = self.config.federation
        cohort = sample_cohort(self.config.seed, rnd, f.population, f.cohort)
        nodes = sorted(grid.get_node_ids())[: len(cohort)]
        return [
            Message(
                RecordDict(
                    {"arrays": arrays, "config": ConfigRecord({"server-round": rnd, "client-id": int(c)})}
                ),
                message_type=kind,
                dst_node_id=node,
            )
            for node, c in zip(nodes, cohort)
        ]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.round_start[server_round] = time.perf_counter()
        self.epoch.setdefault("start", time.time())
        return self._messages(server_round, arrays, grid, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self._messages(server_round, arrays, grid, MessageType.EVALUATE)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> Any:
        replies = list(replies)
        if server_round == 1:  # first use of each actor loads its cache: start-up, not round time
            self.load_s = max(
                (float(m.content["metrics"]["load-s"]) for m in replies if not m.has_error()), default=0.0
            )
        return super().aggregate_train(server_round, replies)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Any:
        replies = [m for m in replies if not m.has_error()]
        self.accuracy[server_round] = float(
            np.mean([float(m.content["metrics"]["test-acc"]) for m in replies])
        )
        self.round_end[server_round] = time.perf_counter()
        self.epoch["end"] = time.time()
        return super().aggregate_evaluate(server_round, replies)


def run_flower(
    config: ExperimentConfig, initial: tuple[np.ndarray, np.ndarray], baseline: str = "reference"
) -> dict[str, Any]:
    """Run the federation on Flower's simulation engine; timings as every arm reports them.

    ``initial``: the round-0 prompts (computed by the caller, as dp2fl-ray's worker 0 does,
    so the server process holds no backbone).
    """
    os.environ[CONFIG_ENV] = json.dumps(config_to_dict(config))
    os.environ[BASELINE_ENV] = baseline
    strategy = CohortFedAvg(config)
    server_app = ServerApp()
    rt = config.runtime

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        while len(list(grid.get_node_ids())) < config.federation.population:  # the SuperNodes register
            time.sleep(0.05)
        nodes = sorted(grid.get_node_ids())[: rt.workers]  # one warm-up message per actor
        warm = RecordDict({"config": ConfigRecord({"hold-s": 2.0})})
        replies = grid.send_and_receive(
            [Message(warm, message_type=MessageType.QUERY, dst_node_id=n) for n in nodes]
        )
        for reply in replies:
            if reply.has_error():
                raise RuntimeError(f"warm-up failed: {reply.error.reason}")
        strategy.start(
            grid=grid, initial_arrays=ArrayRecord(list(initial)), num_rounds=config.federation.rounds
        )

    t0 = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=config.federation.population,
        backend_config={
            "client_resources": {"num_cpus": float(rt.cpus_per_worker), "num_gpus": 0.0},
            "init_args": {"num_cpus": int(rt.workers * rt.cpus_per_worker), "logging_level": "ERROR"},
        },
    )
    rounds = sorted(strategy.round_end)
    round_s = [strategy.round_end[r] - strategy.round_start[r] for r in rounds]
    round_s[0] -= strategy.load_s  # an actor the warm-up missed loaded inside round 1
    return {
        "startup_s": strategy.round_start[rounds[0]] - t0 + strategy.load_s,  # Ray, actors, warm-up loads
        "round_s": round_s,
        "final_acc": strategy.accuracy[rounds[-1]],
        "threads": int(rt.cpus_per_worker),
        "rounds_epoch": [strategy.epoch["start"], strategy.epoch["end"]],
    }
