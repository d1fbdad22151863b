"""Fixtures of the data tests: where CLINC150 is, and tiny PNG images written on the spot."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dp2fl_ray.data import DataSource
from dp2fl_ray.data.clinc150 import load_clinc150_source

REPO_ROOT = Path(__file__).resolve().parents[2]

# A PNG writer: (path, RGB colour, (width, height)) -> the path written.
PngWriter = Callable[..., Path]


def clinc150_path() -> Path:
    """CLINC150's folder: env DP2FL_CLINC150 when set (CI), else the shared copy."""
    env = os.environ.get("DP2FL_CLINC150")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "clinc150"


@pytest.fixture(scope="session")
def clinc150_dir() -> Path:
    return clinc150_path()


@pytest.fixture(scope="session")
def clinc150(clinc150_dir: Path) -> DataSource:
    return load_clinc150_source(clinc150_dir)


@pytest.fixture
def write_png() -> PngWriter:
    """Write a solid-colour RGB PNG (parent folders made) and return its path."""

    def write(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (5, 4)) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.empty((size[1], size[0], 3), dtype=np.uint8)  # (H, W, 3)
        pixels[:] = colour
        Image.fromarray(pixels, "RGB").save(path)
        return path

    return write
