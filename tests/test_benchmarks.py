"""The throughput benchmark's pure helpers: FLOP counting, memory sampling, medians, tables.

The benchmark itself is a script (``experiments/benchmarks/throughput.py``), not a timed
test: nothing here asserts on speed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from dp2fl_ray.config import ExperimentConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"))
from flops import bert_flops, count_flops
from hf_loop import TransformersBertPrompt
from measure import cpu_between, tree_rss
from naive import baseline_model
from tables import SUMMARY_COLUMNS, markdown_table, summarise, updates_per_s
from workloads import WORKLOADS, workload_config


def test_flop_counter_counts_a_linear_layer_forward_and_input_backward() -> None:
    layer = torch.nn.Linear(16, 8, bias=False).requires_grad_(False)
    x = torch.randn(5, 16, requires_grad=True)
    assert count_flops(lambda: layer(x)) == 2 * 5 * 16 * 8
    assert count_flops(lambda: layer(x).sum().backward()) == 2 * (2 * 5 * 16 * 8)  # + grad w.r.t. x only


def test_analytic_bert_flops_by_hand() -> None:
    # one layer, d = 2, ffn = 4, 3 rows: linear 2*3*(4*4 + 2*2*4) = 192; attention 4*3*3*2 = 72
    assert bert_flops(1, 2, 4, 3) == 192
    assert bert_flops(1, 2, 4, 3, rows_attended=3) == 192 + 72
    assert bert_flops(6, 2, 4, 3) == 6 * 192


def test_tree_rss_sees_this_process_and_nothing_once_gone() -> None:
    assert tree_rss(os.getpid()) > 10 * 2**20
    assert tree_rss(2**22 + 12345) == 0  # no such pid


def test_cpu_between_counts_each_process_inside_the_window_only() -> None:
    snaps = [(0.0, {1: 1.0}), (1.0, {1: 2.0, 2: 0.5}), (2.0, {1: 4.0, 2: 1.5}), (3.0, {1: 9.0})]
    assert cpu_between(snaps, 0.5, 2.5) == pytest.approx((4.0 - 1.0) + 1.5)  # pid 2 born inside
    assert cpu_between(snaps, 1.0, 3.0) == pytest.approx((9.0 - 2.0) + (1.5 - 0.5))  # pid 2 gone by 3.0


def test_updates_per_s_is_clients_times_rounds_over_wall_time() -> None:
    assert updates_per_s(10, 3, 15.0) == pytest.approx(2.0)
    assert updates_per_s(10, 3, 0.0) != updates_per_s(10, 3, 0.0)  # NaN, not a division error


def _runs() -> pd.DataFrame:
    rows = []
    for arm, dtype, baseline, speeds in (
        ("dp2fl-ray", "float32", "-", [3.0, 2.0, 4.0]),
        ("dp2fl-ray", "bfloat16", "-", [6.0, 5.0, 7.0]),
        ("naive", "float32", "reference", [1.0, 1.5, 0.5]),
        ("flower", "float32", "reference", [2.0, 2.0, 2.0]),
        ("naive", "float32", "package", [2.0, 2.0, 2.0]),
        ("flower", "float32", "package", [4.0, 4.0, 4.0]),
    ):
        for rep, s in enumerate(speeds):
            rows.append({"section": "promptfl", "workload": "minilm", "arm": arm, "dtype": dtype,
                         "baseline": baseline, "rep": rep, "updates_per_s": s, "round_s": 10 / s,
                         "startup_s": 5.0, "peak_rss_mb": 1000.0 + rep,
                         "final_acc": 0.9, "cpu_s_per_update": 2.0 / s})  # fmt: skip
    return pd.DataFrame(rows)


def test_summary_takes_medians_and_ratios_against_float32_flower_and_naive() -> None:
    summary = summarise(_runs()).set_index(["arm", "dtype", "baseline"])
    ours = ("dp2fl-ray", "float32", "-")
    assert summary.loc[ours, "updates_per_s"] == 3.0
    assert summary.loc[ours, "x_flower"] == pytest.approx(1.5)  # against the reference backbone
    assert summary.loc[ours, "x_flower_pkg"] == pytest.approx(0.75)  # against the package backbone
    assert summary.loc[("dp2fl-ray", "bfloat16", "-"), "x_naive"] == pytest.approx(6.0)
    assert summary.loc[("naive", "float32", "reference"), "peak_rss_mb"] == 1001.0
    assert summary.loc[ours, "cpu_x_naive"] == pytest.approx(3.0)  # 2/1 CPU-s vs 2/3
    assert summary.loc[("flower", "float32", "reference"), "reps"] == 3
    assert list(summarise(_runs())["arm"]) == ["dp2fl-ray", "dp2fl-ray", "naive", "naive", "flower", "flower"]


def test_without_a_reference_backbone_ratios_fall_back_to_the_package_one() -> None:
    runs = _runs()
    summary = summarise(runs[runs["baseline"] != "reference"]).set_index(["arm", "dtype", "baseline"])
    assert summary.loc[("dp2fl-ray", "float32", "-"), "x_flower"] == pytest.approx(0.75)
    old = runs[runs["baseline"] != "reference"].drop(columns="baseline")  # saved before the column existed
    assert (
        summarise(old).set_index(["arm", "dtype", "baseline"]).loc[("naive", "float32", "package"), "reps"]
        == 3
    )


def test_markdown_table_has_a_row_per_arm_and_dashes_for_missing_ratios() -> None:
    runs = _runs()
    text = markdown_table(summarise(runs[runs["arm"] != "flower"]), SUMMARY_COLUMNS)
    lines = text.splitlines()
    assert len(lines) == 2 + 4 and lines[0].startswith("| round | workload | arm |")
    assert "| - |" in lines[2]  # no Flower run: no ratio against it


def test_the_transformers_backbone_is_the_headline_naive_baseline_where_it_ran() -> None:
    runs = _runs()
    honest = runs[(runs["baseline"] == "reference") & (runs["arm"] == "naive")].assign(
        baseline="transformers", updates_per_s=2 * runs["updates_per_s"], train_s=1.0
    )
    runs = pd.concat([runs.assign(train_s=0.5 * runs["round_s"]), honest], ignore_index=True)
    summary = summarise(runs).set_index(["arm", "dtype", "baseline"])
    ours = summary.loc[("dp2fl-ray", "float32", "-")]
    assert ours["x_naive"] == pytest.approx(1.5)  # 3 updates/s vs the transformers loop's median 2
    assert ours["x_naive_ref"] == pytest.approx(3.0)  # vs the padded reference's 1
    assert ours["x_naive_train"] == pytest.approx(1.0 / (0.5 * 10 / 3))  # 1 s vs ours 5/3 s
    assert ours["x_flower"] == pytest.approx(1.5)  # Flower ran no transformers arm: its reference


@pytest.mark.parametrize("workload", WORKLOADS)
def test_workloads_are_valid_configs_with_the_issue_settings(workload: str) -> None:
    assert workload_config(workload).federation.rounds == 3
    cfg = workload_config(workload, algorithm="dp2fl", dtype="bfloat16")
    assert cfg.federation.rounds == 3 and (cfg.federation.population, cfg.federation.cohort) == (20, 10)
    assert (cfg.train.local_epochs, cfg.train.batch_size, cfg.train.lr) == (1, 8, 0.05)
    assert cfg.model.prompt.n_ctx == 8 and cfg.model.dtype == "bfloat16" and cfg.algorithm.name == "dp2fl"
    if workload == "minilm":  # issue 15: depth-1 prompts, plain SGD
        assert cfg.model.prompt.depth == 1 and cfg.train.momentum == 0.0
    quick = workload_config(workload, quick=True)
    assert quick.federation.rounds == 1 and quick.federation.cohort < cfg.federation.cohort


def test_baseline_arms_run_the_reference_or_the_package_backbone(tiny_config: ExperimentConfig) -> None:
    from dp2fl_ray.models.bert_reference import ReferenceBertPrompt
    from dp2fl_ray.models.loader import build_model

    bert = build_model(
        tiny_config.with_overrides(["model.backbone=bert"]).model, ["a", "b"], texts=["x y", "z"]
    )
    twin = baseline_model(bert, "reference")
    assert isinstance(twin, ReferenceBertPrompt) and twin.bert is bert.bert  # same weights, other code
    honest = baseline_model(bert, "transformers")
    assert isinstance(honest, TransformersBertPrompt) and honest.bert is bert.bert
    assert baseline_model(bert, "package") is bert
    clip = build_model(tiny_config.model, ["a", "b"])
    assert baseline_model(clip, "reference") is clip  # no separate reference: the package's
    assert baseline_model(clip, "transformers") is clip
    with pytest.raises(ValueError, match="reference"):
        baseline_model(bert, "hf")


@pytest.mark.parametrize("depth", [1, 2])
def test_the_transformers_loop_computes_the_package_models_logits_and_gradients(
    tiny_config, depth: int
) -> None:  # type: ignore[no-untyped-def]
    """Dynamic padding and the AutoModel encoder (deep prompts by hooks) are the same maths."""
    from dp2fl_ray.models.loader import build_model

    texts = ["book a table for two", "play jazz", "what is the weather like in paris tomorrow morning"]
    cfg = tiny_config.with_overrides(
        ["model.backbone=bert", "model.max_length=16", f"model.prompt.depth={depth}"]
    )
    bert = build_model(cfg.model, ["a b", "c"], texts=texts)
    honest = baseline_model(bert, "transformers")
    task, data = bert.initial_prompts(0)
    gen = torch.Generator().manual_seed(1)
    task = (task + 0.1 * torch.randn(task.shape, generator=gen)).repeat(2, 1)  # (2, Dt)
    data = (data + 0.1 * torch.randn(data.shape, generator=gen)).repeat(2, 1)  # (2, Dd)
    ids, owner = bert.encode(texts), torch.tensor([0, 1, 1])
    out = []
    for m in (bert, honest):
        t, d = task.clone().requires_grad_(True), data.clone().requires_grad_(True)
        logits = m.logits(ids, t, d, owner, m.class_features(t))
        logits.square().sum().backward()
        out.append((logits.detach(), t.grad, d.grad))
    for ours, theirs in zip(*out):
        torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    assert isinstance(honest, TransformersBertPrompt)
    assert not honest.layers[1]._forward_pre_hooks  # the deep-prompt hooks are removed after use


def test_the_naive_loop_on_the_transformers_backbone_matches_the_package_backbone(
    tiny_config: ExperimentConfig,
) -> None:
    """The benchmark's quick path of the naive arm, on a tiny BERT: the same maths on either
    backbone (accuracy agrees), and every phase of the round timed."""
    from naive import PHASES, run_naive

    cfg = tiny_config.with_overrides(
        ["model.backbone=bert", "data.source=clinc150", "data.partition.scheme=domain",
         "data.partition.shots=2", "model.max_length=16", "model.prompt.depth=1",
         "algorithm.name=dp2fl", "federation.rounds=1", "federation.new_clients=0"]
    )  # fmt: skip
    honest = run_naive(cfg, threads=1, baseline="transformers")
    package = run_naive(cfg, threads=1, baseline="package")
    assert honest["final_acc"] == pytest.approx(package["final_acc"], abs=0.02)
    assert all(len(honest[k]) == 1 and honest[k][0] >= 0 for k in PHASES)
    assert honest["crosseval_s"][0] > 0  # DP2FL cross-evaluates


def test_headroom_ratios_and_bounds_by_hand() -> None:
    """naive 10 CPU-s; an arm doing 40 GFLOP in 4 CPU-s on a 20 GFLOP/s ceiling: 10 GFLOP/s,
    50% utilisation, 2.5x the naive loop, and at most 10 / (40 / 20) = 5x at the ceiling;
    with 75% of its time in GEMMs, 10x were they free."""
    from headroom import with_ratios

    rows = with_ratios(
        [
            {
                "arm": "naive loop",
                "phase": "train",
                "gflop": 50.0,
                "cpu_s": 10.0,
                "ceiling_gflops": 20.0,
                "gemm_share": 0.5,
            },
            {
                "arm": "dp2fl-ray",
                "phase": "train",
                "gflop": 40.0,
                "cpu_s": 4.0,
                "ceiling_gflops": 20.0,
                "gemm_share": 0.75,
            },
        ]
    )
    naive, ours = rows
    assert naive["ratio"] == 1.0 and naive["utilisation"] == pytest.approx(0.25)
    assert (ours["gflops"], ours["utilisation"], ours["ratio"], ours["bound"]) == pytest.approx(
        (10, 0.5, 2.5, 5)
    )


def test_headroom_measures_the_naive_loop_and_the_engine_on_the_same_work(
    tiny_config: ExperimentConfig,
) -> None:
    """On a tiny BERT: both phases of both arms run and count FLOPs; the packed engine never
    executes more of them than the loop padding each batch with whole prompt rows."""
    from headroom import measure

    cfg = tiny_config.with_overrides(
        ["model.backbone=bert", "data.source=clinc150", "data.partition.scheme=domain",
         "data.partition.shots=2", "model.max_length=16", "model.prompt.depth=1",
         "algorithm.name=dp2fl", "federation.new_clients=0"]
    )  # fmt: skip
    rows = measure(lambda dtype: cfg.with_overrides([f"model.dtype={dtype}"]), clients=2, models=2)
    assert [(r["arm"], r["dtype"], r["phase"]) for r in rows] == [
        (arm, dtype, phase)
        for arm, dtype in (("naive loop", "float32"), ("dp2fl-ray", "float32"), ("dp2fl-ray", "bfloat16"))
        for phase in ("train", "crosseval")
    ]
    flops = {(r["arm"], r["dtype"], r["phase"]): r["gflop"] for r in rows}
    for phase in ("train", "crosseval"):
        assert 0 < flops[("dp2fl-ray", "float32", phase)] <= flops[("naive loop", "float32", phase)]
    assert all(r["cpu_s"] > 0 and r["utilisation"] > 0 and 0 < r["gemm_share"] < 1 for r in rows)
    assert rows[0]["ratio"] == rows[1]["ratio"] == 1.0  # the naive loop against itself
