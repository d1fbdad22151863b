"""The scale benchmark's helpers (experiments/benchmarks/scale.py): configs, sums, the store-alone rounds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from dp2fl_ray.config import config_from_dict

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "benchmarks" / "scale.py"


@pytest.fixture(scope="module")
def scale():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("scale_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_point_config_is_valid_and_tiny(scale) -> None:  # type: ignore[no-untyped-def]
    for backend in scale.BACKENDS:
        for population in (*scale.POPULATIONS, scale.LARGE["population"]):
            cfg = config_from_dict(scale.point_config(population, scale.COHORT, scale.ROUNDS, backend))
            assert cfg.federation.population == population and cfg.store.backend == backend
            assert (
                cfg.federation.new_clients == 0 and cfg.model.tiny.layers == 1 and cfg.model.prompt.n_ctx == 1
            )
    large = config_from_dict(scale.point_config(10_000_000, 1_000, 1, "sharded", max_eval_models=16))
    assert large.federation.cohort == 1_000 and large.federation.max_eval_models == 16


def test_round_overheads_split_the_wall_time(scale) -> None:  # type: ignore[no-untyped-def]
    rounds = pd.DataFrame({
        "round": [1, 2], "start_s": [0.1, 0.2], "aggregate_s": [0.3, 0.1], "commit_s": [0.05, 0.05],
        "metrics_s": [0.05, 0.05], "train_s": [1.0, 2.0], "crosseval_s": [0.5, 0.5], "eval_s": [0.2, 0.2],
        "wall_s": [2.3, 3.1],
    })  # fmt: skip
    out = scale.round_overheads(rounds)
    assert out["overhead_s"].tolist() == pytest.approx([0.5, 0.4])
    assert out["backbone_s"].tolist() == pytest.approx([1.7, 2.7])
    assert out["remainder_s"].tolist() == pytest.approx([0.15, 0.05])  # metrics_s is outside wall_s


def test_summaries_check_the_store_and_take_ratios_to_the_smallest_population(scale: ModuleType) -> None:
    base = {"backend": "sharded", "cohort": 100, "rounds": 3, "remainder_s_median": 0.0,
            "backbone_s_median": 1.0, "wall_s_median": 1.0, "driver_peak_rss": 1, "driver_rss_before": 1,
            "aggregator_peak_rss": 1,
            "store_disk_bytes": 1, "run_s": 1.0, "bytes_per_client": 10, "store_files": 1}  # fmt: skip
    runs = pd.DataFrame([
        {**base, "population": 1_000, "overhead_s_median": 0.1, "clients_stored": 5, "distinct_clients": 5,
         "store_bytes": 50},
        {**base, "population": 1_000, "overhead_s_median": 0.3, "clients_stored": 5, "distinct_clients": 5,
         "store_bytes": 50},
        {**base, "population": 10**7, "overhead_s_median": 0.3, "clients_stored": 6, "distinct_clients": 5,
         "store_bytes": 60},
    ])  # fmt: skip
    summary = scale.summarise(runs).set_index("population")
    assert summary.loc[1_000, "overhead_ratio"] == pytest.approx(1.0)
    assert summary.loc[10**7, "overhead_ratio"] == pytest.approx(1.5)  # 0.3 / median(0.1, 0.3)
    assert summary.loc[1_000, "store_check"] and not summary.loc[10**7, "store_check"]


def test_store_rounds_count_shard_files_and_rows(scale: ModuleType, tmp_path: Path) -> None:
    rows = scale.store_rounds(
        "sharded", 1_000, 10, 3, 4, tmp_path / "store", shard_size=100, cache_shards=2, cache_mib=0.0
    )
    assert rows["clients_stored"].iloc[-1] <= 30 and rows["shards_touched"].le(10).all()
    assert (
        rows["shard_writes"].sum() > 0
    )  # 10 clients over 10 shards, 2 cached, no byte budget: evictions write
    budget = scale.store_rounds(
        "sharded", 1_000, 10, 3, 4, tmp_path / "budget", shard_size=100, cache_shards=2
    )
    assert budget["shard_writes"].sum() == 0  # the default byte budget keeps sparse shards cached
    assert scale.dir_bytes(tmp_path / "store") > 0 and scale.dir_bytes(tmp_path / "missing") == 0
    memory = scale.store_rounds("memory", 1_000, 10, 2, 4, tmp_path / "unused")
    assert (memory["shard_reads"] == 0).all() and memory["clients_stored"].iloc[-1] <= 20


def test_cohort_axis_configs_are_valid_up_to_ten_thousand(scale) -> None:  # type: ignore[no-untyped-def]
    axis = scale.COHORT_AXIS
    for cohort in axis["cohorts"]:
        cfg = config_from_dict(
            scale.point_config(
                axis["population"], cohort, axis["rounds"], axis["backend"], axis["max_eval_models"]
            )
        )
        assert cfg.federation.cohort == cohort and cfg.federation.max_eval_models == 16
    assert max(axis["cohorts"]) == 10_000 and max(scale.POPULATIONS) == 100_000_000


def test_per_client_overhead_is_compared_within_a_batch_and_merges_keep_unmeasured_points(
    scale: ModuleType,
) -> None:
    base = {"backend": "sharded", "population": 10**7, "rounds": 2, "backbone_s_median": 1.0,
            "wall_s_median": 1.0, "driver_peak_rss": 1, "driver_rss_before": 1, "aggregator_peak_rss": 1,
            "store_disk_bytes": 1,
            "run_s": 1.0, "bytes_per_client": 10, "store_files": 1, "remainder_s_median": 0.0}  # fmt: skip
    runs = pd.DataFrame([
        {**base, "batch": "b", "cohort": 100, "overhead_s_median": 0.1, "clients_stored": 100,
         "distinct_clients": 100, "store_bytes": 1000},
        {**base, "batch": "b", "cohort": 10_000, "overhead_s_median": 12.0, "clients_stored": 10_000,
         "distinct_clients": 10_000, "store_bytes": 100_000},
    ])  # fmt: skip
    summary = scale.summarise(runs).set_index("cohort")
    assert summary.loc[100, "per_client_s"] == pytest.approx(1e-3)
    assert summary.loc[10_000, "per_client_ratio"] == pytest.approx(1.2)
    earlier = pd.concat([runs.assign(kind="e2e", batch="a", cohort=[100, 1_000])], ignore_index=True)
    merged = scale.merge_earlier(earlier, runs)
    assert sorted(zip(merged["batch"], merged["cohort"])) == [("a", 1_000), ("b", 100), ("b", 10_000)]
