"""A nested state as data: numpy arrays as named tensors, everything else as JSON.

Checkpoints must never run code when read (run directories are shared over S3 and NFS), so
they are written as a JSON tree plus a flat ``{key: array}`` mapping for safetensors. The walk
is generic: any nested ``dict``/``list``/``tuple`` of arrays, numpy or Python scalars,
strings and ``None`` round-trips, whatever its keys (the aggregator's snapshot changes shape
as the code evolves; this module must not care). An array becomes a tensor named by its path
(``aggregator/store/17/data_prompt``).

JSON cannot say everything Python can, so a few nodes are tagged objects ``{"$t": kind, ...}``:
``array`` (a tensor key), ``tuple``, ``map`` (a dict whose keys are not all strings, or that
uses the tag key itself) and ``record`` (a frozen dataclass of an allow-listed type, e.g. the
memory store's ``ClientState``). Decoding builds only those: nothing named in a file is ever
imported or called, and an unknown tag or record type is an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from dp2fl_ray.state.memory import ClientState

TAG = "$t"
# The only classes a checkpoint may name. Add a frozen dataclass here to checkpoint it.
RECORDS: dict[str, type] = {"ClientState": ClientState}
_RECORD_NAMES = {cls: name for name, cls in RECORDS.items()}


class TreeCodecError(ValueError):
    """A value cannot be encoded, or a stored tree is malformed (the message names its path)."""


def encode_tree(tree: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Split ``tree`` into a JSON-serialisable tree and the arrays it references.

    Returns:
        ``(json_tree, tensors)``: ``tensors`` maps each array's path to a C-contiguous copy.

    Raises:
        TreeCodecError: a value of a type this format does not hold (object arrays, sets,
            bytes, classes not in :data:`RECORDS`), naming its path.
    """
    tensors: dict[str, np.ndarray] = {}
    return _encode(tree, "", tensors), tensors


def decode_tree(node: Any, tensors: Mapping[str, np.ndarray]) -> Any:
    """Rebuild the tree :func:`encode_tree` split (arrays come back writable).

    Raises:
        TreeCodecError: an unknown tag or record type, a missing tensor, malformed fields.
    """
    return _decode(node, tensors, "")


def _join(path: str, part: Any) -> str:
    return f"{path}/{part}" if path else str(part)


def _encode(value: Any, path: str, tensors: dict[str, np.ndarray]) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic) and not isinstance(value, np.object_):
        return value.item()  # numpy scalars as Python ones
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TreeCodecError(f"checkpoint state at '{path}': object arrays cannot be stored; use a list")
        key = path or "value"
        while key in tensors:  # paths are unique unless keys hold '/'
            key += "#"
        tensors[key] = value.copy(order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        return {TAG: "array", "key": key}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {k: _encode(v, _join(path, k), tensors) for k, v in value.items()}
        items = [[_encode(k, _join(path, "key"), tensors), _encode(v, _join(path, k), tensors)]
                 for k, v in value.items()]  # fmt: skip
        return {TAG: "map", "items": items}
    if isinstance(value, list):
        return [_encode(v, _join(path, i), tensors) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": [_encode(v, _join(path, i), tensors) for i, v in enumerate(value)]}
    name = _RECORD_NAMES.get(type(value))
    if name is not None:
        fields = {f.name: _encode(getattr(value, f.name), _join(path, f.name), tensors)
                  for f in dataclasses.fields(value)}  # fmt: skip
        return {TAG: "record", "type": name, "fields": fields}
    raise TreeCodecError(
        f"checkpoint state at '{path}' is a {type(value).__module__}.{type(value).__qualname__}; "
        "a checkpoint "
        "holds dicts, lists, tuples, numpy arrays, numbers, strings and None (add a frozen dataclass to "
        "tree_codec.RECORDS to store it)"
    )


def _decode(node: Any, tensors: Mapping[str, np.ndarray], path: str) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors, _join(path, i)) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if TAG not in node:
        return {k: _decode(v, tensors, _join(path, k)) for k, v in node.items()}
    kind = node[TAG]
    if kind == "array":
        key = node.get("key")
        if not isinstance(key, str) or key not in tensors:
            raise TreeCodecError(f"'{path}' names tensor {key!r}, which the tensor file does not hold")
        array = tensors[key]
        return array if array.flags.writeable else array.copy()
    if kind == "tuple":
        return tuple(_decode(v, tensors, _join(path, i)) for i, v in enumerate(_items(node, path)))
    if kind == "map":
        pairs = _items(node, path)
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise TreeCodecError(f"'{path}': a map's items must be [key, value] pairs")
        return {
            _hashable(_decode(k, tensors, path), path): _decode(v, tensors, _join(path, k)) for k, v in pairs
        }
    if kind == "record":
        cls = RECORDS.get(node.get("type"))  # type: ignore[arg-type]
        fields = node.get("fields")
        if cls is None or not isinstance(fields, dict):
            raise TreeCodecError(
                f"'{path}': record type {node.get('type')!r} is not one of {sorted(RECORDS)}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        if set(fields) != names:
            raise TreeCodecError(
                f"'{path}': a {node['type']} has fields {sorted(names)}, got {sorted(fields)}"
            )
        return cls(**{k: _decode(v, tensors, _join(path, k)) for k, v in fields.items()})
    raise TreeCodecError(f"'{path}': unknown node kind {kind!r}")


def _items(node: dict[str, Any], path: str) -> list[Any]:
    items = node.get("items")
    if not isinstance(items, list):
        raise TreeCodecError(f"'{path}': a {node[TAG]} node needs a list of items")
    return items


def _hashable(key: Any, path: str) -> Any:
    if isinstance(key, (dict, list)):
        raise TreeCodecError(
            f"'{path}': a map key must be a number, string or tuple, got {type(key).__name__}"
        )
    return key
