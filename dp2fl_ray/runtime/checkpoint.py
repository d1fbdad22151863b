"""Checkpoints: the aggregator's whole state after a round, valid once its manifest says so.

A checkpoint file is written under a temporary name and renamed; then ``latest.json`` (the
manifest: round, file, size, SHA-256) is written the same way. A kill at any moment leaves
the previous manifest pointing at a whole previous checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

from dp2fl_ray.errors import CheckpointError
from dp2fl_ray.metrics import atomic_write, write_json

MANIFEST = "latest.json"


def save_checkpoint(run_dir: Path, round_idx: int, state: dict[str, Any]) -> Path:
    """Write the state of round ``round_idx`` and point the manifest at it."""
    folder = run_dir / "checkpoints"
    path = folder / f"round-{round_idx:05d}.pkl"
    payload = pickle.dumps({"round": round_idx, **state}, protocol=pickle.HIGHEST_PROTOCOL)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(payload)

    atomic_write(path, write)
    manifest = {"round": round_idx, "file": path.name, "bytes": len(payload), "sha256": _sha256(payload)}
    write_json(folder / MANIFEST, manifest)
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The state the manifest points at; a missing, truncated or altered file is a clear error."""
    folder = run_dir / "checkpoints"
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(
            f"no checkpoint manifest at {manifest_path}: the run wrote no checkpoint yet "
            "(set output.checkpoint_every, e.g. 1) and cannot be resumed; start it again"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        path = folder / manifest["file"]
        payload = path.read_bytes()
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot read the checkpoint of {run_dir}: {exc}; start the run again") from exc
    if len(payload) != manifest["bytes"] or _sha256(payload) != manifest["sha256"]:
        raise CheckpointError(
            f"checkpoint {path} is truncated or altered ({len(payload)} bytes, manifest says "
            f"{manifest['bytes']}); restore it from a copy or start the run again"
        )
    state: dict[str, Any] = pickle.loads(payload)
    return state


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()
