"""Run outputs: Parquet tables hive-partitioned by round, ``summary.json``, all written atomically.

Layout under a run directory (columns documented in ``results/README.md``)::

    metrics/<table>/round=<r>/part-0.parquet    table in rounds | clients | evals | aggregation
    summary.json

Every file is written to a temporary name in its final directory and then renamed, so a
reader (or a killed run) sees a file whole or not at all. The ``round`` column lives in the
directory name (hive style), not in the files; ``read_table`` returns it as int64.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

TABLES = ("rounds", "clients", "evals", "aggregation")


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Run ``write(tmp_path)`` then rename to ``path``; on failure nothing is left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Atomic JSON with NaN/inf written as null (strict JSON readers reject NaN)."""
    text = json.dumps(_json_safe(payload), indent=2, sort_keys=True) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


class MetricsWriter:
    """Writes one Parquet file per table per round under ``run_dir/metrics``."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.root = Path(run_dir) / "metrics"

    def write(self, table: str, round_idx: int, frame: pd.DataFrame) -> Path:
        if table not in TABLES:
            raise ValueError(f"unknown metrics table {table!r}; tables: {TABLES}")
        if "round" in frame.columns:
            raise ValueError("the round goes in the partition directory, not in the rows")
        path = self.root / table / f"round={int(round_idx)}" / "part-0.parquet"
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        atomic_write(path, lambda tmp: pq.write_table(arrow, tmp))
        return path

    def drop_rounds_after(self, last_round: int) -> None:
        """Remove every table's partitions of rounds after ``last_round`` and stray temp files
        (a resumed run writes those rounds again)."""
        if not self.root.is_dir():
            return
        for table_dir in self.root.iterdir():
            for part in table_dir.glob("round=*"):
                if int(part.name.split("=", 1)[1]) > last_round:
                    shutil.rmtree(part)
        for stray in self.root.rglob(".*.tmp"):
            stray.unlink()


def read_table(run_dir: str | os.PathLike[str], table: str) -> pd.DataFrame:
    """One metrics table of a run as a DataFrame with an int64 ``round`` column, sorted by round."""
    path = Path(run_dir) / "metrics" / table
    if not path.is_dir():
        raise FileNotFoundError(f"no metrics table {table!r} under {run_dir} (expected {path})")
    partitioning = ds.partitioning(pa.schema([("round", pa.int64())]), flavor="hive")
    dataset = ds.dataset(path, format="parquet", partitioning=partitioning)
    # Rounds may differ in which columns they hold (a round with no evaluation writes none):
    # read every file under the union of their schemas, not the first file's alone.
    schemas = [fragment.physical_schema for fragment in dataset.get_fragments()]
    schema = pa.unify_schemas([*schemas, pa.schema([("round", pa.int64())])], promote_options="permissive")
    frame = (
        ds.dataset(path, schema=schema, format="parquet", partitioning=partitioning).to_table().to_pandas()
    )
    return frame.sort_values("round", kind="stable").reset_index(drop=True)


def read_summary(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    with open(Path(run_dir) / "summary.json") as f:
        return json.load(f)
