"""The naive arm: one process, clients one after another, the same math as dp2fl-ray.

What a competent researcher writes without a simulator: one client at a time,
``torch.optim.SGD`` over that client's two prompt rows (B = 1), a plain forward and
backward of the same model class, and evaluation one (model, data set) pair at a time
under ``torch.inference_mode``. The server maths (FedAvg; DP2FL's aggregation) is the
package's own pure code (``AggregatorCore``), so every arm aggregates identically; the
shuffles use the same derived seeds, so every arm sees the same batches.

``train_one_client`` and ``evaluate_one`` are also what the Flower arm's ClientApp runs.
Both baseline arms run the backbone ``baseline_model`` picks: ``transformers`` (for BERT the
transformers model as it is, each batch padded to its longest utterance, ``hf_loop.py``: the
headline baseline), ``reference`` (the padded transformers layers of ``bert_reference.py``,
every text padded to ``model.max_length``) or ``package`` (the package's own model, packed
kernels included: the engine-only comparison).

Each round's phases are timed as the dp2fl-ray arm's rounds table times them: training
(with any start-model evaluation), cross-evaluation, aggregation, evaluation.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hf_loop import transformers_twin

from dp2fl_ray.algorithms.base import RoundResults
from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.engine import ClientData, LocalTraining
from dp2fl_ray.engine.batched import client_batches
from dp2fl_ray.models.base import DualPromptModel
from dp2fl_ray.models.bert_prompt import BertPrompt
from dp2fl_ray.models.bert_reference import reference_twin
from dp2fl_ray.runtime.aggregation import AggregatorCore
from dp2fl_ray.runtime.cohort import sample_cohort
from dp2fl_ray.runtime.crosseval import CrossEval
from dp2fl_ray.runtime.work import WorkerCore, local_training
from dp2fl_ray.seeding import derive_seed

BASELINE_MODELS = ("transformers", "reference", "package")
PHASES = ("train_s", "crosseval_s", "aggregate_s", "eval_s")  # the rounds table's phase timings


def baseline_model(model: DualPromptModel, kind: str) -> DualPromptModel:
    """The backbone a baseline arm runs: ``package`` as is; for BERT ``transformers`` (the
    transformers model run as is, dynamic padding) or ``reference`` (padded to
    ``model.max_length``), both over the same weights; other backbones have only the package's."""
    if kind not in BASELINE_MODELS:
        raise ValueError(f"baseline model must be one of {BASELINE_MODELS}, got {kind!r}")
    if not isinstance(model, BertPrompt) or kind == "package":
        return model
    return transformers_twin(model) if kind == "transformers" else reference_twin(model)


def train_one_client(
    model: DualPromptModel,
    task: np.ndarray,
    data: np.ndarray,
    client: ClientData,
    hp: LocalTraining,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One client's local SGD from prompts ``(Dt,)``, ``(Dd,)``: new prompts and mean loss.
    Prompts, labels and owners live on the model's device (the model moves the inputs)."""
    device = model.device
    pt = torch.from_numpy(np.array(task, np.float32)).to(device)[None].requires_grad_(True)  # (1, Dt)
    pd = torch.from_numpy(np.array(data, np.float32)).to(device)[None].requires_grad_(True)  # (1, Dd)
    opt = torch.optim.SGD([pt, pd], lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    losses = []
    for idx in client_batches(len(client), hp, seed):
        owner = torch.zeros(len(idx), dtype=torch.long, device=device)
        with model.autocast():
            logits = model.logits(client.inputs[idx], pt, pd, owner, model.class_features(pt))
        loss = F.cross_entropy(logits.float(), client.labels[idx].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return pt.detach()[0].cpu().numpy(), pd.detach()[0].cpu().numpy(), float(np.mean(losses))


@torch.inference_mode()
def evaluate_one(
    model: DualPromptModel, task: np.ndarray, data: np.ndarray, client: ClientData, batch_size: int
) -> tuple[float, int, int]:
    """One model on one data set: mean loss, correct count, sample count."""
    device = model.device
    pt = torch.from_numpy(np.array(task, np.float32)).to(device)[None]
    pd = torch.from_numpy(np.array(data, np.float32)).to(device)[None]
    with model.autocast():
        class_feats = model.class_features(pt)
    loss_sum, correct = 0.0, 0
    for lo in range(0, len(client), batch_size):
        x, y = client.inputs[lo : lo + batch_size], client.labels[lo : lo + batch_size].to(device)
        with model.autocast():
            logits = model.logits(
                x, pt, pd, torch.zeros(len(y), dtype=torch.long, device=device), class_feats
            )
        loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        correct += int((logits.argmax(-1) == y).sum())
    return loss_sum / max(1, len(client)), correct, len(client)


class NaiveLoop:
    """The whole federation in one process: data and model of ``WorkerCore``, loops by hand."""

    def __init__(self, config: ExperimentConfig, threads: int, baseline: str) -> None:
        self.config = config
        self.core = WorkerCore(config, num_threads=threads)
        self.model = baseline_model(self.core.model, baseline)
        self.hp = local_training(config)
        task, data = self.core.initial_prompts()
        self.server = AggregatorCore(config.algorithm, task, data)
        self.cache: dict[tuple[int, str], ClientData] = {}
        self.phases: list[dict[str, float]] = []  # per round: seconds of each phase (PHASES)

    def client(self, cid: int, split: str) -> ClientData:
        """A client's split, tokenized once (a researcher would keep them in memory too)."""
        key = (int(cid), split)
        if key not in self.cache:
            self.cache[key] = self.core.client_data(cid, split)
        return self.cache[key]

    def evaluate(self, task: np.ndarray, data: np.ndarray, cid: int, split: str) -> tuple[float, int, int]:
        return evaluate_one(
            self.model, task, data, self.client(cid, split), self.config.train.eval_batch_size
        )

    def round(self, r: int) -> float:
        """One round; returns the mean over cohort clients of their test accuracy."""
        cfg = self.config
        clock = time.perf_counter()
        cohort = sample_cohort(cfg.seed, r, cfg.federation.population, cfg.federation.cohort)
        start = self.server.start_round(cohort)
        algorithm = self.server.algorithm
        need_baseline = algorithm.needs_baseline(start.first_time)
        baselines = start.baselines.copy()
        tasks, datas, n_train = [], [], []
        for k, cid in enumerate(cohort):
            if need_baseline[k]:
                baselines[k] = self.evaluate(start.task[k], start.data[k], cid, "val")[0]
            seed = derive_seed(cfg.seed, "shuffle", r, int(cid))
            t, d, _ = train_one_client(
                self.model, start.task[k], start.data[k], self.client(cid, "train"), self.hp, seed
            )
            tasks.append(t)
            datas.append(d)
            n_train.append(len(self.client(cid, "train")))
        task, data = np.stack(tasks), np.stack(datas)  # (m, Dt), (m, Dd)
        phase = {"train_s": time.perf_counter() - clock}
        clock = time.perf_counter()
        cross = None
        if (
            algorithm.cross_evaluates
        ):  # the m x m cross-evaluation, one (model, validation set) pair at a time
            m = len(cohort)
            pair_i, pair_j = (a.ravel() for a in np.meshgrid(np.arange(m), np.arange(m), indexing="ij"))
            loss = np.array(
                [self.evaluate(task[i], data[i], cohort[j], "val")[0] for i, j in zip(pair_i, pair_j)]
            )
            cross = CrossEval(pair_i, pair_j, loss, m)
        phase["crosseval_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        update = self.server.aggregate(RoundResults(start, task, data, np.array(n_train), baselines, cross))
        phase["aggregate_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        val = [
            self.evaluate(update.personal_task[k], update.personal_data[k], c, "val")
            for k, c in enumerate(cohort)
        ]
        test = [
            self.evaluate(update.personal_task[k], update.personal_data[k], c, "test")
            for k, c in enumerate(cohort)
        ]
        self.server.commit(cohort, update, np.array([v[0] for v in val]))
        self.phases.append({**phase, "eval_s": time.perf_counter() - clock})
        return float(np.mean([c / max(1, n) for _, c, n in test]))


def run_naive(config: ExperimentConfig, threads: int = 2, baseline: str = "transformers") -> dict[str, Any]:
    """Run the naive loop; timings as every arm reports them."""
    t0 = time.perf_counter()
    loop = NaiveLoop(config, threads, baseline)
    startup = time.perf_counter() - t0
    round_s, acc, first = [], float("nan"), time.time()
    for r in range(1, config.federation.rounds + 1):
        t = time.perf_counter()
        acc = loop.round(r)
        round_s.append(time.perf_counter() - t)
    phases = {k: [p[k] for p in loop.phases] for k in PHASES}
    return {"startup_s": startup, "round_s": round_s, "final_acc": acc, "threads": threads,
            "rounds_epoch": [first, time.time()], **phases}  # fmt: skip
