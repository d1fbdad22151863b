"""Two real short runs shared by every report test, and a Markdown table reader.

``dp2fl`` logs every table; ``local`` has no global model and no cross-evaluation, so it
writes no aggregation table and no held-out evaluations: the paths a report must survive.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dp2fl_ray.config import ExperimentConfig


@pytest.fixture(scope="package")
def run_dirs(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    from dp2fl_ray.runtime.simulation import run_experiment

    out = tmp_path_factory.mktemp("report_runs")
    for name in ("dp2fl", "local"):
        config = tiny_config.with_overrides([f"algorithm.name={name}"])
        run_experiment(config, output_dir=out, run_name=name, progress=False)
    return [out / "dp2fl", out / "local"]


def markdown_table(text: str, heading: str) -> pd.DataFrame:
    """The first Markdown table after the line starting with ``heading``, cells as strings."""
    lines = text.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    if not rows:
        raise AssertionError(f"no table under {heading!r}")
    return pd.DataFrame(rows[2:], columns=rows[0])  # rows[1] is the |---| line
