"""Data: sources (real loaders and small built-ins) and lazy, per-client seeded partitioners."""

from dp2fl_ray.data.partition import ClientIndices, Partitioner, majority_class
from dp2fl_ray.data.source import DataSource, Split, load_source

__all__ = [
    "ClientIndices",
    "DataSource",
    "Partitioner",
    "Split",
    "load_source",
    "majority_class",
]
