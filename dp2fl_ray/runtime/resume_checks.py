"""What a resume checks before any round runs: same config, and whole metrics up to the checkpoint.

A resume that silently used an edited ``config.yaml`` would mix two experiments in one run;
one that went on past a deleted or truncated metrics table would end "completed" with rounds
missing, or fail only at the end, with the checkpoint already past the damage. So the
checkpoint records the resolved config's hash and, per metrics table, the rounds written
when it was taken; :func:`check_resumable` compares both against the run directory, reads
each of those Parquet files, and raises before Ray starts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dp2fl_ray.config import ExperimentConfig, config_to_dict
from dp2fl_ray.errors import CheckpointError
from dp2fl_ray.metrics import TABLES

PART = "part-0.parquet"
_REQUIRED = ("rounds", "clients", "evals")  # written every round (aggregation only by some algorithms)


def config_sha256(config: ExperimentConfig) -> str:
    """SHA-256 of the resolved config (every field, defaults included, in canonical JSON)."""
    text = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def metrics_inventory(run_dir: Path, last_round: int) -> dict[str, list[int]]:
    """Per metrics table, the rounds up to ``last_round`` that have a file (recorded in a checkpoint)."""
    inventory: dict[str, list[int]] = {}
    for table in TABLES:
        folder = Path(run_dir) / "metrics" / table
        rounds = [int(p.parent.name.split("=", 1)[1]) for p in folder.glob(f"round=*/{PART}")]
        inventory[table] = sorted(r for r in rounds if r <= last_round)
    return inventory


def check_resumable(run_dir: Path, config: ExperimentConfig, checkpoint: Mapping[str, Any]) -> None:
    """Refuse a resume whose config changed or whose metrics lost a checkpointed round.

    Raises:
        CheckpointError: ``config.yaml`` differs from the checkpointed config (the message lists
            the changed fields), or a metrics table is missing a round or cannot be read.
    """
    check_config_unchanged(run_dir, config, checkpoint)
    check_metrics(run_dir, int(checkpoint["round"]), checkpoint.get("metrics"))


def check_config_unchanged(run_dir: Path, config: ExperimentConfig, checkpoint: Mapping[str, Any]) -> None:
    """The config being resumed must be the one the checkpoint was taken with."""
    recorded = checkpoint.get("config_sha256")
    if recorded is None or recorded == config_sha256(config):
        return
    before = checkpoint.get("config")
    changes = config_diff(before, config_to_dict(config)) if isinstance(before, Mapping) else []
    listed = "; ".join(changes) or "(the checkpoint holds no config to compare)"
    raise CheckpointError(
        f"{Path(run_dir) / 'config.yaml'} changed since the checkpoint of round "
        f"{checkpoint['round']}: {listed}. "
        "A resumed run must keep its config: undo the edit, or start a new run with the new config"
    )


def config_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """``field: old -> new`` for every dotted field whose value differs."""
    old, new = _flatten(before), _flatten(after)
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]  # fmt: skip


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{dotted}.")
        else:
            flat[dotted] = value
    return flat


def check_metrics(run_dir: Path, last_round: int, recorded: Any = None) -> None:
    """Every round up to the checkpoint has a readable file in each table that had it.

    ``recorded`` is the checkpoint's inventory (:func:`metrics_inventory`); without one, the
    tables written every round must hold rounds 1..``last_round``.
    """
    if isinstance(recorded, Mapping):
        expected = {t: [int(r) for r in rounds] for t, rounds in recorded.items() if t in TABLES}
    else:
        expected = {t: list(range(1, last_round + 1)) for t in _REQUIRED}
    fix = ("checkpoints hold the model state, not the metrics, so the table cannot be rebuilt from one: "
           "restore the file from a copy, or start the run again")  # fmt: skip
    for table, rounds in expected.items():
        for r in rounds:
            path = Path(run_dir) / "metrics" / table / f"round={r}" / PART
            if not path.is_file():
                raise CheckpointError(
                    f"metrics table '{table}' has no round {r} ({path} is missing) but the checkpoint is of "
                    f"round {last_round}; resuming would leave the hole. {fix}"
                )
            try:
                pq.read_table(path)
            except (OSError, pa.ArrowException) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise CheckpointError(
                    f"metrics table '{table}' round {r} is unreadable ({path}: {reason}); {fix}"
                ) from None
