"""Data: sources (real loaders and small built-ins) and lazy, per-client seeded partitioners."""

from dp2fl_ray.data.images import DEFAULT_IMAGE_SIZE, LazyImages
from dp2fl_ray.data.partition import ClientIndices, Partitioner, majority_class
from dp2fl_ray.data.source import AVAILABLE_SOURCES, DataSource, Split, load_source

__all__ = [
    "AVAILABLE_SOURCES",
    "DEFAULT_IMAGE_SIZE",
    "ClientIndices",
    "DataSource",
    "LazyImages",
    "Partitioner",
    "Split",
    "load_source",
    "majority_class",
]
