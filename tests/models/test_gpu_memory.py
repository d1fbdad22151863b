"""The GPU free-memory check, as a pure function (it runs on CPU-only machines too)."""

from __future__ import annotations

import pytest
from torch import nn

from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.memory import GIB, check_gpu_fits, module_bytes


def test_a_backbone_that_does_not_fit_fails_with_the_numbers() -> None:
    with pytest.raises(ModelError, match=r"needs about 4.00 GiB .* only 3.00 GiB is free with 2 worker"):
        check_gpu_fits(free_bytes=3 * GIB, backbone_bytes=2 * GIB, workers_per_gpu=2)


def test_a_backbone_that_fits_passes() -> None:
    check_gpu_fits(free_bytes=5 * GIB, backbone_bytes=2 * GIB, workers_per_gpu=1)


def test_module_bytes_counts_parameters_and_buffers() -> None:
    layer = nn.BatchNorm1d(10)  # weight, bias (10 floats each) + running mean/var (10 each) + a counter
    assert module_bytes(layer) == 4 * 10 * 4 + 8
