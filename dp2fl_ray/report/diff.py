"""Two runs compared number for number: which metrics tables and columns differ, and where.

A seed fixes a run's numbers (DESIGN.md, determinism), so a change to the code, the config
or the cluster either leaves every number of a run where it was or it does not. This answers
that question for two run directories, table by table, without a notebook. Wall-clock
columns (names ending in ``_s``: phase seconds, ``wall_s``, ``client_updates_per_s``) vary
from run to run by nature and are left out; everything else, ``moved_bytes`` included, is
compared exactly (NaN equals NaN) unless a tolerance is given.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dp2fl_ray.errors import ConfigError
from dp2fl_ray.metrics import read_table


def is_timing(column: str) -> bool:
    """Whether a column measures wall-clock time (or a rate over it), not a result."""
    return column.endswith("_s")


@dataclass(frozen=True)
class ColumnDiff:
    """Where one column's values first differ, and (numeric columns) by how much at most."""

    column: str
    differing: int
    first_round: int
    first_row: int
    max_abs: float | None


@dataclass(frozen=True)
class TableDiff:
    """One table of both runs. ``rows`` is ``None`` for a table only one run has (``only_in``)."""

    table: str
    rows: tuple[int, int] | None
    cells: int = 0
    columns: tuple[ColumnDiff, ...] = ()
    only_in_a: tuple[str, ...] = ()
    only_in_b: tuple[str, ...] = ()
    only_in: str | None = None  # "A" or "B": the run that has this table

    @property
    def in_a(self) -> bool:
        return self.only_in != "B"

    @property
    def in_b(self) -> bool:
        return self.only_in != "A"

    @property
    def identical(self) -> bool:
        return (
            self.rows is not None and self.rows[0] == self.rows[1]
            and not self.columns and not self.only_in_a and not self.only_in_b
        )  # fmt: skip


@dataclass(frozen=True)
class RunDiff:
    a: Path
    b: Path
    tables: tuple[TableDiff, ...]
    ignored: tuple[str, ...] = ()

    @property
    def identical(self) -> bool:
        return all(t.identical for t in self.tables)


def _tables(run_dir: Path) -> set[str]:
    return {p.name for p in (run_dir / "metrics").iterdir() if p.is_dir()}


def check_run_dir(path: str | os.PathLike[str], name: str) -> Path:
    """``path`` as a run directory with metrics tables, or a ``ConfigError`` naming it."""
    run = Path(path)
    if not (run / "metrics").is_dir():
        raise ConfigError(
            name, str(path), "a run directory written by `dp2fl-ray run` (one with a metrics/ folder)",
            "no such directory" if not run.exists() else f"{run / 'metrics'} does not exist",
        )  # fmt: skip
    return run


def _column_diff(
    column: str, a: pd.Series, b: pd.Series, rounds: pd.Series, atol: float
) -> ColumnDiff | None:
    both_na = a.isna().to_numpy() & b.isna().to_numpy()
    max_abs: float | None = None
    if (
        pd.api.types.is_numeric_dtype(a)
        and pd.api.types.is_numeric_dtype(b)
        and not (pd.api.types.is_bool_dtype(a) or pd.api.types.is_bool_dtype(b))
    ):
        x, y = a.to_numpy(np.float64), b.to_numpy(np.float64)
        gap = np.abs(x - y)
        same = both_na | (gap <= atol)
        finite = gap[~same & np.isfinite(gap)]
        max_abs = float(finite.max()) if finite.size else None
    else:
        same = both_na | (a.to_numpy() == b.to_numpy())
    if bool(same.all()):
        return None
    first = int(np.flatnonzero(~same)[0])
    round_rows = rounds.to_numpy()
    first_round = int(round_rows[first])
    first_row = int(first - np.flatnonzero(round_rows == first_round)[0])
    return ColumnDiff(column, int((~same).sum()), first_round, first_row, max_abs)


def diff_tables(
    table: str, a: pd.DataFrame, b: pd.DataFrame, ignore: Iterable[str], atol: float
) -> TableDiff:
    """Compare one table of both runs, row by row in written order (sorted by round)."""
    skip = set(ignore)
    cols_a = [c for c in a.columns if not is_timing(c) and c not in skip]
    cols_b = [c for c in b.columns if not is_timing(c) and c not in skip]
    only_a = tuple(c for c in cols_a if c not in cols_b)
    only_b = tuple(c for c in cols_b if c not in cols_a)
    rows = (len(a), len(b))
    if len(a) != len(b):
        return TableDiff(table, rows, only_in_a=only_a, only_in_b=only_b)
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    shared = [c for c in cols_a if c in cols_b]
    columns = [d for c in shared if (d := _column_diff(c, a[c], b[c], a["round"], atol)) is not None]
    return TableDiff(table, rows, len(a) * len(shared), tuple(columns), only_a, only_b)


def diff_runs(
    a: str | os.PathLike[str], b: str | os.PathLike[str], ignore: Iterable[str] = (), atol: float = 0.0
) -> RunDiff:
    """Every metrics table of run ``a`` against run ``b`` (wall-clock columns left out)."""
    if atol < 0 or not np.isfinite(atol):
        raise ConfigError("--atol", atol, "a finite number >= 0 (0: bit for bit)")
    run_a, run_b = check_run_dir(a, "RUN_A"), check_run_dir(b, "RUN_B")
    ignored = tuple(ignore)
    names_a, names_b = _tables(run_a), _tables(run_b)
    tables = []
    for name in sorted(names_a | names_b):
        if name not in names_a or name not in names_b:
            tables.append(TableDiff(name, None, only_in="A" if name in names_a else "B"))
            continue
        tables.append(diff_tables(name, read_table(run_a, name), read_table(run_b, name), ignored, atol))
    return RunDiff(run_a, run_b, tuple(tables), ignored)


def format_diff(diff: RunDiff) -> str:
    """The comparison as lines a terminal shows: one per table, one per differing column."""
    lines = [f"A: {diff.a}", f"B: {diff.b}"]
    for t in diff.tables:
        head = f"metrics/{t.table}:"
        if t.rows is None:  # a table one run has and the other does not
            lines.append(f"{head} only in {t.only_in}")
            continue
        if t.rows[0] != t.rows[1]:
            lines.append(f"{head} {t.rows[0]} rows in A, {t.rows[1]} in B")
        else:
            verdict = "identical" if not t.columns else f"{len(t.columns)} column(s) differ"
            lines.append(f"{head} {t.rows[0]} rows, {t.cells} cells compared: {verdict}")
        for c in t.columns:
            gap = "" if c.max_abs is None else f", max |A - B| {c.max_abs:.3g}"
            lines.append(f"  {c.column}: {c.differing} value(s) differ{gap}; first at round {c.first_round}, "
                         f"row {c.first_row} of that round")  # fmt: skip
        for side, cols in (("A", t.only_in_a), ("B", t.only_in_b)):
            if cols:
                lines.append(f"  columns only in {side}: {', '.join(cols)}")
    left_out = "columns ending in _s (wall-clock)" + (f", {', '.join(diff.ignored)}" if diff.ignored else "")
    lines.append(f"{'identical' if diff.identical else 'DIFFERENT'} (left out: {left_out})")
    return "\n".join(lines)
