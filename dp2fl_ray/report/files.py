"""Atomic writes of report files, readable by others (a report is meant to be shared)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from dp2fl_ray.metrics import atomic_write

MODE = 0o644  # mkstemp creates 0600 files; a report is read by people other than its writer


def write_file(path: Path, write: Callable[[str], None]) -> Path:
    """``write(tmp)`` to a temporary name beside ``path``, make it world-readable, rename it."""

    def write_readable(tmp: str) -> None:
        write(tmp)
        os.chmod(tmp, MODE)

    atomic_write(path, write_readable)
    return path


def write_text(path: Path, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write_file(path, write)
