"""CSV and Parquet tables of any shape load as a valid source or fail as a DataError, nothing else."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dp2fl_ray.data.source import DataSource
from dp2fl_ray.data.tables import load_table_source
from dp2fl_ray.errors import DataError

LABELS = st.one_of(st.sampled_from(["a", "b", "c", ""]), st.none(), st.just(math.nan), st.integers(0, 2))
TEXTS = st.one_of(st.text(max_size=8), st.none(), st.just(math.nan))


@st.composite
def tables(draw: st.DrawFn) -> dict[str, Any]:
    """A train and a test table: columns may be missing or extra, rows empty, labels NaN."""
    columns = draw(st.lists(st.sampled_from(["text", "label", "other"]), unique=True, max_size=3))
    frames = {}
    for split in ("train", "test"):
        n = draw(st.integers(0, 6))
        data = {c: draw(st.lists(LABELS if c == "label" else TEXTS, min_size=n, max_size=n)) for c in columns}
        frames[split] = pd.DataFrame(data)
    return {"frames": frames, "empty_file": draw(st.sampled_from([None, "train", "test"])),
            "bad_bytes": draw(st.sampled_from([None, "train", "test"]))}  # fmt: skip


def _write(folder: Path, kind: str, case: dict[str, Any]) -> None:
    for split, frame in case["frames"].items():
        path = folder / f"{split}.{kind}"
        if kind == "csv":
            frame.to_csv(path, index=False)
        else:
            as_text = {c: [None if pd.isna(v) else str(v) for v in frame[c]] for c in frame.columns}
            pd.DataFrame(as_text, index=range(len(frame))).to_parquet(path, index=False)  # NaN stays null
        if case["empty_file"] == split:
            path.write_bytes(b"")
        elif case["bad_bytes"] == split and kind == "csv":
            path.write_bytes(path.read_bytes() + b"\xff\xfe,\xff\n")


def _valid(source: DataSource) -> None:
    for split in (source.train, source.test):
        assert len(split) > 0 and 0 <= split.labels.min() and split.labels.max() < source.num_classes
        assert split.modality == "text" and all(
            isinstance(t, str) for t in split.take(np.arange(len(split)))[0]
        )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=tables(), kind=st.sampled_from(["csv", "parquet"]))
def test_any_table_is_a_data_error_or_a_valid_source(case: dict[str, Any], kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _write(Path(tmp), kind, case)
        try:
            source = load_table_source(kind, tmp)
        except DataError:
            return
        _valid(source)
