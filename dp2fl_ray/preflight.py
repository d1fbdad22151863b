"""Preflight: everything that can fail without Ray fails here, in about a second, before Ray.

A bad ``data.path`` used to surface 40-50 s later as a worker actor's death, in a hundred lines
of Ray traceback, after a run directory had been made. :func:`preflight` is the one check that
``run``, ``submit`` (client side) and ``tune`` call before anything starts. It loads the data
source with the very loaders the workers use (``data/``; their ``DataError`` messages name the
file, the row and the fix), partitions a few clients to see that the federation has enough
samples, checks that ``model.path`` holds weights and a config and that the backbone reads the
source's modality. The config's own cross-field rules already ran when it was built.

It imports no Ray and writes nothing. Workers check again when they load (a cluster's files
may differ from the submitting machine's); their errors reach the user as the same one line.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dp2fl_ray.config import ExperimentConfig
from dp2fl_ray.errors import ConfigError, DataError, ModelError

if TYPE_CHECKING:
    from dp2fl_ray.data.source import DataSource  # imports torch: at run time only inside preflight

log = logging.getLogger("dp2fl_ray")

BACKBONE_MODALITY = {"clip": "image", "vit": "image", "bert": "text"}
PROBED_CLIENTS = 32  # the first clients, plus the last id and the held-out ones
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class PreflightReport:
    """What preflight found (logged; tests read it)."""

    source: str
    modality: str
    classes: int
    rows: dict[str, int]
    seconds: float


def check_run_name(name: str | None, flag: str = "--name") -> None:
    """A run (or sweep) name must be one plain folder name, so the run stays under ``--output``.

    Raises:
        ConfigError: the name holds a path separator, is ``.``/``..``, absolute or empty.
    """
    if name is None:
        return
    if not _PLAIN_NAME.fullmatch(name):
        raise ConfigError(flag, name, "a plain folder name (letters, digits, '_', '.', '-'; no '/')",
                          "the run directory is made under --output; "
                          "pass --output to choose where")  # fmt: skip


def preflight(config: ExperimentConfig, *, root: str | os.PathLike[str] | None = None) -> PreflightReport:
    """Check the data and model a run will use, without Ray; return what was found.

    Args:
        config: the validated experiment config.
        root: the directory relative ``data.path`` and ``model.path`` are read from where the
            run will start (``submit``'s working dir); default: the current directory.

    Raises:
        DataError: a data file is missing, unreadable (bad bytes: the row), lacks a column, or
            the federation would give a client no train, validation or test sample.
        ModelError: ``model.path`` holds no weights or no config, or ``model.name`` is no ViT.
        ConfigError: the backbone does not read the source's modality (text vs image).
    """
    t0 = time.perf_counter()
    from dp2fl_ray.data.source import load_source  # imports torch: only once the config is valid

    data_path = _under(root, config.data.path)
    source = load_source(config.data.source, data_path, config.seed, image_size=config.data.image_size)
    _check_modality(config, source.modality)
    _check_samples(config, source)
    _check_model(config, _under(root, config.model.path) if config.model.path != "minilm" else "minilm")
    rows = {"train": len(source.train), "test": len(source.test)}
    if source.val is not None:
        rows["val"] = len(source.val)
    report = PreflightReport(source.name, source.modality, source.num_classes, rows, time.perf_counter() - t0)
    log.info("preflight: %s (%s, %d classes, rows %s) and model %s checked in %.1f s", report.source,
             report.modality, report.classes, rows, config.model.backbone, report.seconds)  # fmt: skip
    return report


def _under(root: str | os.PathLike[str] | None, path: str | None) -> str | None:
    if path is None or root is None or os.path.isabs(path):
        return path
    return str(Path(root) / path)


def _check_modality(config: ExperimentConfig, modality: str) -> None:
    backbone = config.model.backbone
    if BACKBONE_MODALITY[backbone] != modality:
        fits = sorted(b for b, m in BACKBONE_MODALITY.items() if m == modality)
        raise ConfigError(
            "model.backbone", backbone, f"a backbone that reads {modality} ({', '.join(fits)})",
            f"data.source {config.data.source!r} holds {modality} inputs and {backbone} reads "
            f"{BACKBONE_MODALITY[backbone]}; change model.backbone or data.source",
        )  # fmt: skip


def _check_samples(config: ExperimentConfig, source: DataSource) -> None:
    """Partition a few clients as the workers will: each needs >= 1 train, val and test sample."""
    import numpy as np

    from dp2fl_ray.data.partition import Partitioner

    p, fed = config.data.partition, config.federation
    partitioner = Partitioner(
        source, p.scheme, config.seed, alpha=p.alpha, shots=p.shots,
        drop_class_fraction=p.drop_class_fraction, keep_fraction=p.keep_fraction,
        dominant_fraction=p.dominant_fraction, val_fraction=p.val_fraction,
        test_fraction=p.test_fraction, samples_per_client=p.samples_per_client,
    )  # fmt: skip
    joined = sum(int(part.split("@")[0]) for part in fed.joins.split(",") if part.strip())
    everyone = fed.population + joined
    probes = sorted({*range(min(everyone, PROBED_CLIENTS)), everyone - 1,
                     *range(everyone, everyone + min(fed.new_clients, PROBED_CLIENTS))})  # fmt: skip
    for cid in probes:
        client = partitioner.client(cid)
        counts = {"train": len(client.train), "validation": len(client.val), "test": len(client.test)}
        if min(counts.values()) > 0:
            continue
        got = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        have = f"{len(source.train)} train, {len(source.test)} test" + (
            f", {len(source.val)} val rows" if source.val is not None else " rows and no val table"
        )
        why = ""
        if source.val is None:
            per_class = np.bincount(source.test.labels, minlength=source.num_classes)
            short = [source.class_names[c] for c in np.flatnonzero(per_class < 2)][:5]
            why = (" Without a val table each client's validation and test samples are drawn, disjoint, "
                   "from the test rows, so every class needs at least 2 test rows; "
                   f"{short} have fewer.")  # fmt: skip
        raise DataError(
            f"data source {config.data.source!r} ({config.data.path}) has too few samples "
            f"for the federation: client {cid} would get {got} samples and every client needs "
            f"at least 1 of each; the source has {have}.{why} Add rows (or a val table), "
            "or lower federation.population"
        )


def _check_model(config: ExperimentConfig, path: str | None) -> None:
    model = config.model
    if model.backbone == "vit":
        _check_vit(model.name, path)
    elif path is not None:
        _check_pretrained_dir(model.backbone, path)


def _check_vit(name: str | None, path: str | None) -> None:
    if not name:
        raise ModelError("model.backbone is 'vit' with a model.path but no model.name; set model.name "
                         "to the timm architecture the weights were saved from, "
                         "e.g. vit_base_patch16_224")  # fmt: skip
    import timm

    if not timm.is_model(name):
        raise ModelError(f"model.name {name!r} is not a timm architecture; pick one from "
                         "timm.list_models('vit_*'), e.g. vit_base_patch16_224")  # fmt: skip
    if path is not None:
        from dp2fl_ray.models.vit_prompt import weight_file

        weight_file(path)  # ModelError naming the missing file


def _check_pretrained_dir(backbone: str, path: str) -> None:
    """A ``save_pretrained`` directory: ``config.json`` and weights (or, for clip, a cached hub id)."""
    if path == "minilm":
        return  # the packaged MiniLM (bert_loading.minilm_path); its loader names a missing package
    folder = Path(path)
    if not folder.exists():
        if backbone == "clip" and _HUB_ID.fullmatch(path) and _in_hub_cache(path):
            return
        raise ModelError(
            f"model.path {path!r} does not exist; point it at a directory written by save_pretrained "
            "(config.json and *.safetensors), or set model.path: null for a tiny random backbone"
        )
    if not folder.is_dir():
        raise ModelError(f"model.path {path!r} is a file; {backbone} needs a save_pretrained directory")
    names = os.listdir(folder)
    missing = [what for what, ok in (("weights (*.safetensors or *.bin)",
                                      any(n.endswith((".safetensors", ".bin")) for n in names)),
                                     ("config.json", "config.json" in names)) if not ok]  # fmt: skip
    if missing:
        raise ModelError(
            f"model.path {path!r} holds no {' and no '.join(missing)} (it holds {sorted(names)[:8]}); "
            f"save the model there with "
            f"{backbone.upper() if backbone == 'clip' else 'Auto'}Model.save_pretrained(path)"
        )


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
