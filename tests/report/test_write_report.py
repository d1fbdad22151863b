"""``write_report`` and ``dp2fl-ray report``: PNGs, report.md numbers, comparison mode, errors."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
from PIL import Image

from dp2fl_ray import cli
from dp2fl_ray.commands import report as report_command
from dp2fl_ray.errors import DataError
from dp2fl_ray.metrics import read_summary, read_table
from dp2fl_ray.report import write_report

from .conftest import markdown_table

pytestmark = pytest.mark.ray

PLOTS = {"accuracy.png", "client_accuracy.png", "crosseval.png", "global_weights.png", "timing.png"}
NEEDS_AGGREGATION = {"crosseval.png", "global_weights.png"}


@pytest.fixture(scope="module")
def dp2fl_report(run_dirs: list[Path]) -> list[Path]:
    return write_report([run_dirs[0]])


@pytest.fixture(scope="module")
def local_report(run_dirs: list[Path]) -> list[Path]:
    return write_report(run_dirs[1])


@pytest.fixture(scope="module")
def compared(run_dirs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("compare")
    return out, write_report(run_dirs, out_dir=out)


def _assert_valid_pngs(paths: list[Path]) -> None:
    assert paths
    for path in paths:
        assert path.stat().st_size > 5_000, path
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100, path
            image.verify()


def _percent(cell: str) -> float:
    return float(cell) / 100


def _report(run_dir: Path) -> str:
    return (run_dir / "report" / "report.md").read_text()


def test_a_run_report_holds_every_plot_as_a_valid_png_in_run_report(
    run_dirs: list[Path], dp2fl_report: list[Path]
) -> None:
    folder = run_dirs[0] / "report"
    assert {p.name for p in dp2fl_report} == PLOTS | {"report.md"}
    assert all(p.parent == folder for p in dp2fl_report)
    _assert_valid_pngs([p for p in dp2fl_report if p.suffix == ".png"])
    # nothing else in the folder: no temporary file was left behind
    assert {p.name for p in folder.iterdir()} == PLOTS | {"report.md"}


def test_report_md_table1_equals_the_clients_table(run_dirs: list[Path], dp2fl_report: list[Path]) -> None:
    table = markdown_table(_report(run_dirs[0]), "## Table 1").set_index("metric")
    clients = read_table(run_dirs[0], "clients")
    last = clients[clients["round"] == clients["round"].max()]
    for _, row in last.iterrows():
        cid = row["client_id"]
        assert _percent(table.loc["accuracy", f"client {cid}"]) == pytest.approx(row["test_acc"], abs=5e-5)
        assert _percent(table.loc["micro-F1", f"client {cid}"]) == pytest.approx(
            row["test_micro_f1"], abs=5e-5
        )
    assert _percent(table.loc["accuracy", "avg"]) == pytest.approx(last["test_acc"].mean(), abs=5e-5)
    assert table.loc["accuracy", "round"] == str(clients["round"].max())


def test_report_md_table2_and_headline_equal_the_summary(
    run_dirs: list[Path], dp2fl_report: list[Path]
) -> None:
    text = _report(run_dirs[0])
    summary = read_summary(run_dirs[0])
    table2 = markdown_table(text, "## Table 2").iloc[0]
    assert _percent(table2["global acc (held-out)"]) == pytest.approx(summary["global_acc"], abs=5e-5)
    assert _percent(table2["personalised acc"]) == pytest.approx(summary["personalized_acc"], abs=5e-5)
    headline = markdown_table(text, "## Headline").set_index("field")
    for key in ("zero_shot_acc", "majority_acc", "personalized_acc", "global_acc"):
        assert _percent(headline.loc[f"{key} (%)", "dp2fl"]) == pytest.approx(summary[key], abs=5e-5)
    assert headline.loc["status", "dp2fl"] == "completed"


def test_report_md_tables_3_and_4_equal_the_held_out_evals(
    run_dirs: list[Path], dp2fl_report: list[Path]
) -> None:
    text = _report(run_dirs[0])
    evals = read_table(run_dirs[0], "evals")
    held = evals[evals["held_out"] & (evals["round"] == evals["round"].max())]
    for heading, suffix in (("## Table 3", ""), ("## Table 4", "_1round")):
        row = markdown_table(text, heading).iloc[0]
        for model, column in (("init", "Init"), ("initglo", "InitGlo"), ("global", "Global")):
            want = held[held["model"] == model + suffix]["acc"].mean()
            assert _percent(row[column]) == pytest.approx(want, abs=5e-5), (heading, column)
    assert "Not evaluated" not in text


def test_report_md_lists_and_embeds_every_plot(run_dirs: list[Path], dp2fl_report: list[Path]) -> None:
    text = _report(run_dirs[0])
    for name in PLOTS:
        assert f"[`{name}`]({name})" in text and f"]({name})\n" in text


def test_a_run_without_aggregation_or_global_model_still_reports_and_says_why(
    run_dirs: list[Path], local_report: list[Path]
) -> None:
    assert {p.name for p in local_report} == PLOTS - NEEDS_AGGREGATION | {"report.md"}
    _assert_valid_pngs([p for p in local_report if p.suffix == ".png"])
    text = _report(run_dirs[1])
    assert "crosseval.png: skipped" in text and "global_weights.png: skipped" in text
    assert "no metrics/aggregation table" in text
    assert text.count("Not evaluated in this run") == 2  # Tables 3 and 4
    assert "No global model evaluated for local: local has no global model" in text
    table1 = markdown_table(text, "## Table 1").set_index("metric")
    summary = read_summary(run_dirs[1])
    assert _percent(table1.loc["accuracy", "avg"]) == pytest.approx(summary["personalized_acc"], abs=5e-5)


def test_comparison_mode_writes_one_report_with_both_runs_side_by_side(
    run_dirs: list[Path], compared: tuple[Path, list[Path]]
) -> None:
    out, paths = compared
    assert {p.name for p in paths} == {"accuracy.png", "client_accuracy.png", "timing.png", "report.md",
                                       "crosseval-dp2fl.png", "global_weights-dp2fl.png"}  # fmt: skip
    _assert_valid_pngs([p for p in paths if p.suffix == ".png"])
    text = (out / "report.md").read_text()
    table1 = markdown_table(text, "## Table 1")
    accuracy = table1[table1["metric"] == "accuracy"]
    assert accuracy["run"].tolist() == ["dp2fl", "local"]
    for run_dir, (_, row) in zip(run_dirs, accuracy.iterrows()):
        assert _percent(row["avg"]) == pytest.approx(
            read_table(run_dir, "rounds")["personalized_acc"].iloc[-1], abs=5e-5
        )
    assert list(markdown_table(text, "## Headline").columns) == ["field", "dp2fl", "local"]
    table3 = markdown_table(text, "## Table 3").set_index("run")
    assert table3.loc["local", "Init"] == "-" and table3.loc["dp2fl", "Init"] != "-"
    assert "crosseval-local.png: skipped" in text


def test_several_runs_without_out_get_one_report_each(run_dirs: list[Path], dp2fl_report: list[Path],
                                                      local_report: list[Path]) -> None:  # fmt: skip
    paths = write_report(run_dirs)
    assert {p.parent for p in paths} == {d / "report" for d in run_dirs}
    assert sorted(p.name for p in paths) == sorted(p.name for p in dp2fl_report + local_report)


@pytest.mark.parametrize("kind", ["missing", "file", "not_a_run"])
def test_a_bad_path_raises_data_error_naming_it(run_dirs: list[Path], tmp_path: Path, kind: str) -> None:
    path = {"missing": tmp_path / "nope", "file": run_dirs[0] / "summary.json", "not_a_run": tmp_path}[kind]
    with pytest.raises(DataError, match=str(path)):
        write_report([run_dirs[0], path], out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # every run is checked before anything is written


def test_the_parent_of_run_directories_is_refused_with_the_runs_it_holds(run_dirs: list[Path]) -> None:
    with pytest.raises(DataError, match="dp2fl, local"):
        write_report(run_dirs[0].parent)


def test_cli_main_writes_the_comparison_and_prints_each_file(
    run_dirs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    report_command.add_arguments(parser)
    args = parser.parse_args([*map(str, run_dirs), "--out", str(tmp_path / "cmp")])
    assert report_command.cli_main(args) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "cmp" / "report.md") in printed and len(printed) == 6
    assert all(Path(p).is_file() for p in printed)


def test_cli_reports_a_bad_path_as_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.COMMANDS, "report", ("dp2fl_ray.commands.report", "report"))
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err


def test_two_runs_with_the_same_directory_name_get_distinct_files_and_labels(
    run_dirs: list[Path], tmp_path: Path
) -> None:
    twin = shutil.copytree(
        run_dirs[0], tmp_path / "elsewhere" / "dp2fl", ignore=shutil.ignore_patterns("report", "checkpoints")
    )
    names = {p.name for p in write_report([run_dirs[0], twin], out_dir=tmp_path / "out")}
    assert {"crosseval-dp2fl.png", "crosseval-dp2fl-2.png"} <= names
    headline = markdown_table((tmp_path / "out" / "report.md").read_text(), "## Headline")
    assert list(headline.columns) == ["field", "dp2fl", "dp2fl #2"]
