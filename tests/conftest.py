"""Shared fixtures: offline hub, a tiny model config, and ONE local Ray cluster per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub look-up would hang ~45 s, then fail
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from collections.abc import Iterator

import pytest

# moto's S3 server for the store's S3 tests (defined once, so the session has one server)
from s3_server import s3_server, s3_uri  # noqa: F401

from dp2fl_ray.config import ExperimentConfig, config_from_dict

TINY = {"hidden": 64, "layers": 2, "heads": 4, "projection": 32, "image_size": 16, "patch_size": 8}


@pytest.fixture(scope="session")
def tiny_config() -> ExperimentConfig:
    """A small, fast experiment: tiny CLIP on digits, 4 clients.

    ``keep_workers``: the session's runs reuse one warm set of workers while the backbone is
    the same, as a notebook's would; the fault tests turn it off (they kill named workers)."""
    return config_from_dict(
        {
            "name": "test",
            "model": {"tiny": TINY, "prompt": {"n_ctx": 2, "depth": 2}, "device": "cpu"},
            "data": {"source": "digits"},
            "federation": {"population": 4, "cohort": 4, "rounds": 2, "new_clients": 1},
            "train": {"local_epochs": 1, "batch_size": 8},
            "runtime": {"workers": 2, "cpus_per_worker": 1, "clients_per_slice": 2, "keep_workers": True},
        }
    )


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster shared by every Ray test of the session."""
    import ray

    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    yield
    ray.shutdown()
