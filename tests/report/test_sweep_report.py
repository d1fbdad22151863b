"""The sweep report on a sweep directory built by hand (no Ray): each number checked against scipy,
n = 1 without an interval, missing and failed seeds counted, the same bytes on every run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sp

from dp2fl_ray import cli
from dp2fl_ray.errors import ConfigError
from dp2fl_ray.report import write_sweep_report
from dp2fl_ray.sweep import stored_value

from .conftest import markdown_table

METHODS = ("promptfl", "dp2fl", "local")
PARTITIONS = ({"scheme": "paper"}, {"scheme": "dirichlet", "alpha": 0.1})
SETTINGS = ("paper", "dirichlet alpha=0.1")
CLIENTS = (0, 1, 2, 3)


def client_acc(method: int, setting: int, seed: int, client: int) -> float:
    """Fixed, method-dependent numbers with seed-to-seed and client-to-client spread."""
    return round(0.5 + 0.05 * method + 0.1 * setting + 0.013 * ((seed * 7 + client * 3 + method) % 5), 4)


def _write(folder: Path, table: str, frame: pd.DataFrame, round_idx: int = 2) -> None:
    path = folder / "metrics" / table / f"round={round_idx}"
    path.mkdir(parents=True)
    frame.to_parquet(path / "part-0.parquet", index=False)


def make_sweep(root: Path, seeds: tuple[int, ...] = (0, 1, 2), failed: tuple[Any, ...] = ()) -> Path:
    """A sweep directory as ``dp2fl-ray tune`` writes it: sweep.yaml, trials.parquet, runs/<trial>/."""
    sweep = root / "study"
    space = {"algorithm.name": {"grid": list(METHODS)}, "data.partition": {"grid": list(PARTITIONS)},
             "seed": {"grid": list(seeds)}}  # fmt: skip
    sweep.mkdir()
    (sweep / "sweep.yaml").write_text(yaml.safe_dump({"name": "study", "base": {"seed": 0}, "space": space}))
    rows = []
    for m, method in enumerate(METHODS):
        for s, partition in enumerate(PARTITIONS):
            for seed in seeds:
                trial = f"t{m}{s}{seed}"
                status = "failed" if (method, s, seed) in failed else "completed"
                rows.append({"trial_id": trial, "status": status, "algorithm.name": method,
                             "data.partition": stored_value(partition),
                             "seed": seed, "cell_id": f"cell-{m}{s}"})  # fmt: skip
                run = sweep / "runs" / trial
                accs = [client_acc(m, s, seed, c) for c in CLIENTS]
                clients = pd.DataFrame({"client_id": list(CLIENTS), "test_acc": accs, "test_micro_f1": accs})
                _write(run, "clients", clients)
                if method != "local":
                    held = [0.4 + 0.02 * m + 0.01 * seed, 0.3 + 0.01 * seed, 0.35, 0.45 + 0.01 * seed]
                    models = ["global", "init", "initglo", "global"]
                    evals = pd.DataFrame({"client_id": [9, 9, 9, 8], "model": models, "held_out": True,
                                          "acc": held, "micro_f1": held})  # fmt: skip
                    _write(run, "evals", evals)
    pd.DataFrame(rows).to_parquet(sweep / "trials.parquet", index=False)
    return sweep


def seed_means(m: int, s: int, seeds: tuple[int, ...]) -> np.ndarray:
    return np.array([np.mean([client_acc(m, s, seed, c) for c in CLIENTS]) for seed in seeds])


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    return make_sweep(tmp_path)


def _report(sweep: Path, **kwargs: Any) -> str:
    write_sweep_report(sweep, **kwargs)
    return (sweep / "report" / "report.md").read_text()


def _cell(text: str) -> tuple[float, float | None, int]:
    match = re.fullmatch(r"(-?[\d.]+)(?: ± ([\d.]+))? \(n=(\d+)\)", text)
    assert match, text
    return float(match[1]), float(match[2]) if match[2] else None, int(match[3])


def test_table1_cells_are_mean_and_student_t_interval_over_seeds(sweep: Path) -> None:
    table = markdown_table(_report(sweep), "Accuracy (%)").set_index("method")
    assert list(table.columns) == list(SETTINGS)
    for m, method in enumerate(METHODS):
        for s, setting in enumerate(SETTINGS):
            values = seed_means(m, s, (0, 1, 2))
            low, high = sp.t.interval(0.95, 2, loc=values.mean(), scale=sp.sem(values))
            mean, half, n = _cell(table.loc[method, setting])
            assert (mean, half, n) == (pytest.approx(100 * values.mean(), abs=0.006),
                                       pytest.approx(100 * (high - low) / 2, abs=0.006), 3)  # fmt: skip


def test_paired_differences_are_ttest_rel_with_holm_and_bonferroni(sweep: Path) -> None:
    text = _report(sweep)
    assert "Holm-adjusted" in text and "Bonferroni-widened to 97.50%" in text
    table = markdown_table(text, "### Personalised accuracy").set_index(["setting", "method"])
    assert set(table.index) == {(s, m) for s in SETTINGS for m in ("dp2fl", "local")}
    a, base = seed_means(1, 0, (0, 1, 2)), seed_means(0, 0, (0, 1, 2))
    row = table.loc[("paper", "dp2fl")]
    d = a - base
    low, high = sp.t.interval(0.975, 2, loc=d.mean(), scale=sp.sem(d))
    diff = re.fullmatch(r"([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]", row["difference (pp) [CI]"])
    assert diff and [float(x) for x in diff.groups()] == pytest.approx(
        [100 * d.mean(), 100 * low, 100 * high], abs=0.006
    )
    p = sp.ttest_rel(a, base).pvalue
    assert float(row["p (paired t)"]) == pytest.approx(p, abs=5e-4) and row["CI level"] == "97.50%"
    boot = markdown_table(text, "## Per-client paired bootstrap").set_index(["setting", "method"])
    assert (
        boot.loc[("paper", "dp2fl"), "client pairs"] == "12" and boot.loc[("paper", "dp2fl"), "seeds"] == "3"
    )


def test_one_seed_prints_n_1_and_no_interval(tmp_path: Path) -> None:
    text = _report(make_sweep(tmp_path, seeds=(4,)))
    table = markdown_table(text, "Accuracy (%)")
    cells = table[list(SETTINGS)].to_numpy().ravel()
    assert all(c.endswith("(n=1)") and "±" not in c for c in cells), cells
    assert "± 0.00" not in text
    tests = markdown_table(text, "### Personalised accuracy")
    assert set(tests["p (paired t)"]) == {"-"} and set(tests["seeds paired"]) == {"1"}


def test_failed_and_missing_seeds_are_counted_per_cell(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path, failed=(("dp2fl", 0, 2),))
    trials = pd.read_parquet(sweep / "trials.parquet")
    trials[trials["trial_id"] != "t101"].to_parquet(sweep / "trials.parquet", index=False)  # never ran
    text = _report(sweep)
    table = markdown_table(text, "Accuracy (%)").set_index("method")
    assert _cell(table.loc["dp2fl", "paper"])[2] == 1 and _cell(table.loc["promptfl", "paper"])[2] == 3
    seeds = markdown_table(text, "## Seeds per cell").set_index(["setting", "method"])
    assert seeds.loc[("paper", "dp2fl"), "used"] == "1 of 3"
    assert seeds.loc[("paper", "dp2fl"), "missing"] == "seed 1 not run; seed 2 failed"
    assert seeds.loc[("paper", "promptfl"), "missing"] == "-"
    assert "1 cell(s) rest on fewer seeds" in text
    paired = markdown_table(text, "### Personalised accuracy").set_index(["setting", "method"])
    assert paired.loc[("paper", "dp2fl"), "seeds paired"] == "1"


def test_global_columns_only_for_methods_with_a_global_model(sweep: Path) -> None:
    text = _report(sweep)
    table2 = markdown_table(text, "## Table 2").set_index("method")
    assert "local" not in table2.index and "No global model for local" in text
    table3 = markdown_table(text, "## Table 3").set_index(["setting", "method"])
    assert table3.loc[("paper", "local"), "Global"] == "n/a"
    init, _, n = _cell(table3.loc[("paper", "dp2fl"), "Init"])
    assert (init, n) == (pytest.approx(100 * np.mean([0.30, 0.31, 0.32]), abs=0.006), 3)


def test_the_report_is_the_same_bytes_every_time_and_baseline_is_honoured(
    sweep: Path, tmp_path: Path
) -> None:
    first = write_sweep_report(sweep)
    before = {p.name: p.read_bytes() for p in first}
    assert set(before) == {"report.md", "accuracy_vs_heterogeneity.png", "client_accuracy_by_method.png"}
    assert cli.main(["report", str(sweep)]) == 0
    assert {p.name: p.read_bytes() for p in first} == before
    write_sweep_report(sweep, baseline="dp2fl", out_dir=tmp_path / "other")
    other = (tmp_path / "other" / "report.md").read_text()
    assert "against `dp2fl`" in other and "against `promptfl`" in before["report.md"].decode()
    with pytest.raises(ConfigError, match="--baseline"):
        write_sweep_report(sweep, baseline="fedavg")
    assert cli.main(["report", str(sweep), "--baseline", "fedavg"]) == 2


def test_table3_ordering_is_paired_within_each_method(sweep: Path) -> None:
    table = markdown_table(_report(sweep), "### Table 3's ordering").set_index(["setting", "method"])
    row = table.loc[("paper", "dp2fl")]
    # initglo 0.35 on every seed, init 0.30 + 0.01 seed: a difference with spread, tested against 0
    init, initglo = [0.30, 0.31, 0.32], [0.35, 0.35, 0.35]
    assert row["InitGlo - Init p"] == f"{sp.ttest_rel(initglo, init).pvalue:.3f}"
    assert table.loc[("paper", "local"), "Global - InitGlo (pp) [95% CI]"] == "n/a"
