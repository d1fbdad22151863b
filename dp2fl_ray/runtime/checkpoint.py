"""Checkpoints: the aggregator's whole state after a round, as data that cannot run code.

A checkpoint of round r is two files in ``<run>/checkpoints/``: ``round-0000r.safetensors``
(every numpy array of the state, named by its path) and ``round-0000r.json`` (everything
else, ``runtime/tree_codec.py``). Then ``latest.json``, the manifest, names both with their
size and SHA-256. Each file is written under a temporary name and renamed, the manifest last,
so a kill at any moment leaves the previous manifest pointing at a whole previous checkpoint.

Loading reads the manifest, checks every file it names against its size and hash, then
parses them with ``json`` and ``safetensors`` only: nothing is unpickled, so a crafted run
directory on shared storage cannot execute code. Old pickle checkpoints (``*.pkl``, written
before this format) are refused with how to continue.

The same folder format holds Ray Tune's trial checkpoints (:func:`write_checkpoint_folder`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from dp2fl_ray.errors import CheckpointError
from dp2fl_ray.metrics import atomic_write, write_json
from dp2fl_ray.runtime.tree_codec import TreeCodecError, decode_tree, encode_tree

MANIFEST = "latest.json"
FORMAT = "dp2fl-checkpoint/2"
_FILE_NAME = re.compile(r"[A-Za-z0-9_.-]+\.(json|safetensors)")  # a manifest names files of its folder only


def save_checkpoint(run_dir: Path, round_idx: int, state: dict[str, Any]) -> Path:
    """Write the state of round ``round_idx`` and point the manifest at it; returns the manifest.

    ``state`` is any nested dict of numpy arrays, numbers, strings, lists, dicts and None.
    """
    return write_checkpoint_folder(Path(run_dir) / "checkpoints", round_idx, state)


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The state the manifest points at, with ``round``.

    Raises:
        CheckpointError: no manifest, a pickle checkpoint, a file missing, truncated or
            altered, or a file that is not what its name says (the message names the file).
    """
    folder = Path(run_dir) / "checkpoints"
    if not (folder / MANIFEST).is_file():
        _refuse_pickles(folder, run_dir)
        raise CheckpointError(
            f"no checkpoint manifest at {folder / MANIFEST}: the run wrote no checkpoint yet "
            "(set output.checkpoint_every, e.g. 1) and cannot be resumed; start it again"
        )
    return read_checkpoint_folder(folder, run_dir)


def write_checkpoint_folder(folder: Path, round_idx: int, state: dict[str, Any]) -> Path:
    """``<stem>.safetensors`` + ``<stem>.json`` + the manifest ``latest.json`` in ``folder``."""
    try:
        tree, tensors = encode_tree({"round": int(round_idx), **state})
    except TreeCodecError as exc:
        raise CheckpointError(str(exc)) from None
    stem = f"round-{int(round_idx):05d}"
    payloads = {
        f"{stem}.safetensors": save_tensors(tensors, metadata={"format": FORMAT}),
        f"{stem}.json": json.dumps({"format": FORMAT, "state": tree}, sort_keys=True).encode(),
    }
    for name, payload in payloads.items():
        _write_bytes(folder / name, payload)
    files = {name: {"bytes": len(p), "sha256": _sha256(p)} for name, p in payloads.items()}
    write_json(folder / MANIFEST, {"format": FORMAT, "round": int(round_idx), "files": files})
    return folder / MANIFEST


def read_checkpoint_folder(folder: Path, run_dir: Path | None = None) -> dict[str, Any]:
    """The state of the checkpoint whose manifest is ``folder/latest.json`` (see module doc)."""
    manifest_path = folder / MANIFEST
    fix = f"restore {folder} from a copy or start the run again"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the checkpoint manifest {manifest_path}: {exc}; {fix}") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"checkpoint manifest {manifest_path} is not a JSON object; {fix}")
    if manifest.get("format") != FORMAT:
        _refuse_pickles(folder, run_dir or folder.parent, str(manifest.get("file", "")))
        raise CheckpointError(
            f"checkpoint manifest {manifest_path} has format {manifest.get('format')!r}, "
            f"expected {FORMAT!r}; {fix}"
        )
    payloads = _verified_payloads(folder, manifest, fix)
    json_name = next(n for n in payloads if n.endswith(".json"))
    tensor_name = next(n for n in payloads if n.endswith(".safetensors"))
    try:
        tensors: dict[str, np.ndarray] = load_tensors(payloads[tensor_name])
    except Exception as exc:  # noqa: BLE001 -- safetensors' SafetensorError is no public class to catch
        raise CheckpointError(
            f"checkpoint {folder / tensor_name} is not a valid safetensors file: {exc}; {fix}"
        )
    try:
        document = json.loads(payloads[json_name])
        state = decode_tree(document["state"], tensors)
    except (ValueError, KeyError, TypeError) as exc:  # TreeCodecError is a ValueError
        raise CheckpointError(f"checkpoint {folder / json_name} is malformed: {exc}; {fix}") from None
    if not isinstance(state, dict) or state.get("round") != manifest.get("round"):
        raise CheckpointError(f"checkpoint {folder / json_name} is not the round its manifest names; {fix}")
    return state


def _verified_payloads(folder: Path, manifest: dict[str, Any], fix: str) -> dict[str, bytes]:
    """Every file the manifest names, read and checked against its size and SHA-256."""
    files = manifest.get("files")
    if not isinstance(files, dict) or sorted(Path(n).suffix for n in files) != [".json", ".safetensors"]:
        raise CheckpointError(f"checkpoint manifest {folder / MANIFEST} must name one .json and one "
                              f".safetensors file; {fix}")  # fmt: skip
    payloads: dict[str, bytes] = {}
    for name, expected in files.items():
        if not _FILE_NAME.fullmatch(name) or not isinstance(expected, dict):
            raise CheckpointError(f"checkpoint manifest {folder / MANIFEST} names {name!r}, not a file of "
                                  f"its folder; {fix}")  # fmt: skip
        path = folder / name
        try:
            payload = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(
                f"cannot read checkpoint file {path}: {exc.strerror or exc}; {fix}"
            ) from None
        if len(payload) != expected.get("bytes") or _sha256(payload) != expected.get("sha256"):
            raise CheckpointError(
                f"checkpoint {path} is truncated or altered ({len(payload)} bytes, manifest says "
                f"{expected.get('bytes')}, or its SHA-256 differs); {fix}"
            )
        payloads[name] = payload
    return payloads


def _refuse_pickles(folder: Path, run_dir: Path, named: str = "") -> None:
    """Raise if the folder holds only an old pickle checkpoint: say which file and what to do."""
    pickles = sorted(folder.glob("*.pkl")) if folder.is_dir() else []
    if named.endswith(".pkl") or pickles:
        file = folder / named if named.endswith(".pkl") else pickles[-1]
        raise CheckpointError(
            f"checkpoint {file} is a pickle, written by an older dp2fl-ray; a pickle can run any code "
            "when loaded, so it is never read. Start the run again "
            f"(dp2fl-ray run {Path(run_dir) / 'config.yaml'}"
            " --name NEW_NAME); new checkpoints are safetensors + JSON"
        )


def _write_bytes(path: Path, payload: bytes) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_bytes(payload)

    atomic_write(path, write)


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()
