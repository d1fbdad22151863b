"""Checkpoints are data: any nested state round-trips, and nothing read from disk can run code."""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dp2fl_ray.errors import CheckpointError
from dp2fl_ray.runtime.checkpoint import MANIFEST, load_checkpoint, save_checkpoint
from dp2fl_ray.runtime.tree_codec import TreeCodecError, encode_tree
from dp2fl_ray.state.memory import ClientState


class _WritesMarker:
    """Unpickling this object writes a file: the proof that a loader ran a payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pwned"))


def _state() -> dict[str, Any]:
    return {
        "config": {"train": {"lr": 0.035}, "model": {"path": None}},
        "aggregator": {
            "store": {
                3: ClientState(np.arange(4, dtype=np.float32), 0.25, 2),
                10**9: ClientState(np.zeros(4, np.float32), math.inf, 1),
            },
            "global_task": np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3),
            "empty": np.zeros((0, 5), np.float64),
            "scalar": np.array(7, np.int64),
            "rounds_done": np.int64(2),
            "pair": (1, "a"),
            "nothing": None,
            "nan": math.nan,
            "$t": "a key that looks like a tag",
        },
    }  # fmt: skip


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_any_nested_state_round_trips_through_safetensors_and_json(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 2, _state())
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == [MANIFEST, "round-00002.json", "round-00002.safetensors"]
    got = load_checkpoint(tmp_path)
    agg, want = got["aggregator"], _state()["aggregator"]
    assert got["round"] == 2 and got["config"] == _state()["config"]
    assert set(agg["store"]) == {3, 10**9} and isinstance(agg["store"][3], ClientState)
    np.testing.assert_array_equal(agg["store"][3].data_prompt, want["store"][3].data_prompt)
    assert agg["store"][3].data_prompt.dtype == np.float32 and agg["store"][10**9].baseline == math.inf
    np.testing.assert_array_equal(agg["global_task"], want["global_task"])
    assert agg["empty"].shape == (0, 5) and int(agg["scalar"]) == 7 and agg["rounds_done"] == 2
    assert agg["pair"] == (1, "a") and agg["nothing"] is None and math.isnan(agg["nan"])
    assert agg["$t"] == want["$t"]
    agg["global_task"][0, 0] = 5.0  # arrays come back writable


def test_the_manifest_hashes_every_file_of_the_checkpoint(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, _state())
    folder = tmp_path / "checkpoints"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["files"]) == {"round-00001.json", "round-00001.safetensors"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == _sha((folder / name).read_bytes())
    for name in manifest["files"]:  # altering either file is caught
        save_checkpoint(tmp_path, 1, _state())
        data = bytearray((folder / name).read_bytes())
        data[-2] ^= 1
        (folder / name).write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="truncated or altered"):
            load_checkpoint(tmp_path)


def test_an_old_pickle_checkpoint_with_a_matching_manifest_is_refused_and_never_run(tmp_path: Path) -> None:
    """Finding 1: the crafted round-0000N.pkl that used to execute on --resume."""
    marker = tmp_path / "marker"
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    payload = pickle.dumps({"round": 1, "aggregator": _WritesMarker(marker)})
    (folder / "round-00001.pkl").write_bytes(payload)
    old = {"round": 1, "file": "round-00001.pkl", "bytes": len(payload), "sha256": _sha(payload)}
    (folder / MANIFEST).write_text(json.dumps(old))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    assert "round-00001.pkl" in str(info.value) and "pickle" in str(info.value)
    assert "start the run again" in str(info.value).lower()
    (folder / MANIFEST).unlink()  # a folder with only the pickle: the same answer
    with pytest.raises(CheckpointError, match="round-00001.pkl"):
        load_checkpoint(tmp_path)
    assert not marker.exists()


def _forge(tmp_path: Path, tensors: bytes, document: dict[str, Any]) -> None:
    """A checkpoint whose manifest matches the forged files (an attacker can write all three)."""
    folder = tmp_path / "checkpoints"
    folder.mkdir(exist_ok=True)
    text = json.dumps(document).encode()
    (folder / "round-00001.safetensors").write_bytes(tensors)
    (folder / "round-00001.json").write_bytes(text)
    files = {"round-00001.safetensors": tensors, "round-00001.json": text}
    manifest = {"format": "dp2fl-checkpoint/2", "round": 1,
                "files": {n: {"bytes": len(d), "sha256": _sha(d)} for n, d in files.items()}}  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_a_crafted_safetensors_with_a_bad_header_is_refused_and_the_payload_never_runs(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker"
    good = {"format": "dp2fl-checkpoint/2", "state": {"round": 1}}
    pickled = pickle.dumps(_WritesMarker(marker))
    bad_headers = [
        struct.pack("<Q", 1 << 40) + b"{}",  # header length past the end
        struct.pack("<Q", 9) + b"not json!" + pickled,  # header is no JSON
        struct.pack("<Q", len(b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,999]}}'))
        + b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,999]}}'
        + pickled,  # offsets past the data
        pickled,  # a pickle under the safetensors name
    ]
    for tensors in bad_headers:
        _forge(tmp_path, tensors, good)
        with pytest.raises(CheckpointError, match="not a valid safetensors file"):
            load_checkpoint(tmp_path)
    assert not marker.exists()


def test_the_json_half_can_name_only_allow_listed_records(tmp_path: Path) -> None:
    from safetensors.numpy import save

    forged = {"$t": "record", "type": "subprocess.Popen", "fields": {"args": ["touch", str(tmp_path / "m")]}}
    _forge(tmp_path, save({}), {"format": "dp2fl-checkpoint/2", "state": {"round": 1, "x": forged}})
    with pytest.raises(CheckpointError, match="not one of"):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "m").exists()


def test_a_manifest_may_name_only_files_of_its_folder(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"x": 1})
    path = tmp_path / "checkpoints" / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["files"]["../../escape.json"] = manifest["files"].pop("round-00001.json")
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="not a file of its folder"):
        load_checkpoint(tmp_path)


def test_state_the_format_cannot_hold_is_refused_at_save_naming_its_path() -> None:
    with pytest.raises(TreeCodecError, match="aggregator/odd"):
        encode_tree({"aggregator": {"odd": {1, 2}}})
    with pytest.raises(TreeCodecError, match="object arrays"):
        encode_tree({"a": np.array(["x", None], dtype=object)})
