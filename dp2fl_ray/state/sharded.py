"""The sharded client store: Parquet shards on any pyarrow filesystem, read and written by shard.

Client ``c`` lives in shard ``c // shard_size``, the file ``<uri>/shard-<s:08d>.parquet``:

    client_id    int64                        sorted; a row exists only once the client is put
    data_prompt  fixed_size_list<T>[Dd]      T: float32, halffloat, or uint16 (bfloat16 bits)
    baseline     float64
    rounds_seen  int32

with schema metadata ``dp2fl.shard_size``, ``dp2fl.shard`` and ``dp2fl.dtype`` (``store.dtype``,
see ``state/dtypes.py``) so a store reopened with another shard size or dtype fails instead of
looking clients up in the wrong files or reading bits as the wrong type.

On object stores (``s3://bucket/prefix``) the endpoint and credentials come from the standard
AWS environment variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), see ``_resolve``.

At most ``cache_shards`` shards are held in memory (least recently used first out), whatever
the population; a dirty shard is written back when evicted and on ``flush()``/``close()``.
Each write goes to a hidden temporary file in the same directory, then ``fs.move`` puts it
in place (a rename on a local disk, an atomic PUT on object stores), so a killed writer
leaves the old shard or the new one, never half of one; a killed writer's stray
``.shard-*.tmp`` file is ignored. Rows put but not yet flushed are lost if the process dies.

The store is its own checkpoint: ``snapshot()`` would load every shard, so it is not offered;
``flush()`` (or ``checkpoint_manifest()``, which flushes and lists the files) makes it durable
and reopening the uri restores it. One writer per shard: processes sharing a uri must put
disjoint shards, and each counts rows as of its own open.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dp2fl_ray.errors import StoreError
from dp2fl_ray.state.base import ClientState, ClientStore
from dp2fl_ray.state.dtypes import decode, encode, itemsize, storage_type

_SHARD_NAME = re.compile(r"shard-(\d{8,})\.parquet")
_META_SIZE, _META_SHARD, _META_DTYPE = b"dp2fl.shard_size", b"dp2fl.shard", b"dp2fl.dtype"
# The Arrow type of a prompt value, per store dtype (bfloat16 has none: its uint16 bits).
_ARROW = {"float32": pa.float32(), "float16": pa.float16(), "bfloat16": pa.uint16()}
# Fixed width of the columns besides the prompt: client_id int64 + baseline float64 + rounds_seen int32.
_ROW_OVERHEAD = 8 + 8 + 4


def _schema(dim: int, shard: int, shard_size: int, dtype: str) -> pa.Schema:
    fields = [
        pa.field("client_id", pa.int64(), nullable=False),
        pa.field("data_prompt", pa.list_(_ARROW[dtype], dim), nullable=False),
        pa.field("baseline", pa.float64(), nullable=False),
        pa.field("rounds_seen", pa.int32(), nullable=False),
    ]
    meta = {_META_SIZE: str(shard_size), _META_SHARD: str(shard), _META_DTYPE: dtype}
    return pa.schema(fields, metadata=meta)


def _prompt_dtype(schema: pa.Schema) -> str | None:
    """The store dtype a shard was written with (shards older than store.dtype are float32)."""
    meta = schema.metadata or {}
    if _META_DTYPE in meta:
        return meta[_META_DTYPE].decode()
    value = schema.field("data_prompt").type.value_type
    return next((name for name, t in _ARROW.items() if t == value and name != "bfloat16"), None)


def _prompt_dim(schema: pa.Schema) -> int | None:
    """Dd of a shard's schema, or None when its columns are not the store's (any dtype)."""
    expected = {"client_id": pa.int64(), "baseline": pa.float64(), "rounds_seen": pa.int32()}
    if any(schema.field(n).type != t for n, t in expected.items() if n in schema.names):
        return None
    if set(schema.names) != {*expected, "data_prompt"}:
        return None
    prompt = schema.field("data_prompt").type
    if not pa.types.is_fixed_size_list(prompt) or prompt.value_type not in _ARROW.values():
        return None
    return int(prompt.list_size)


class _Shard:
    """One shard's rows in growable numpy arrays (row order = insertion order)."""

    def __init__(
        self,
        dim: int,
        dtype: str,
        ids: np.ndarray,
        prompts: np.ndarray,
        baseline: np.ndarray,
        rounds: np.ndarray,
    ) -> None:
        self.dim, self.dtype, self.n, self.dirty = dim, dtype, len(ids), False
        self.row = {int(c): i for i, c in enumerate(ids)}
        self.ids, self.prompts, self.baseline, self.rounds = ids, prompts, baseline, rounds

    @classmethod
    def empty(cls, dim: int, dtype: str) -> _Shard:
        prompts = np.empty((0, dim), storage_type(dtype))
        return cls(dim, dtype, np.empty(0, np.int64), prompts, np.empty(0), np.empty(0, np.int32))

    @classmethod
    def from_table(cls, table: pa.Table, dim: int, dtype: str) -> _Shard:
        flat = table.column("data_prompt").combine_chunks().flatten()  # (n * Dd,) as stored
        return cls(
            dim,
            dtype,
            np.array(table.column("client_id").to_numpy(), np.int64),  # copies: owned and writable
            np.array(flat.to_numpy(), storage_type(dtype)).reshape(table.num_rows, dim),  # (n, Dd)
            np.array(table.column("baseline").to_numpy(), np.float64),
            np.array(table.column("rounds_seen").to_numpy(), np.int32),
        )

    def get(self, client_id: int) -> ClientState | None:
        i = self.row.get(client_id)
        if i is None:
            return None
        return ClientState(decode(self.prompts[i], self.dtype), float(self.baseline[i]), int(self.rounds[i]))

    def put(self, client_id: int, state: ClientState, prompt: np.ndarray) -> bool:
        """Write one row (``prompt`` already encoded); True when the client is new to this shard."""
        i = self.row.get(client_id)
        new = i is None
        if i is None:
            if self.n == len(self.ids):
                self._grow(max(16, 2 * self.n))
            i = self.row[client_id] = self.n
            self.n += 1
        self.ids[i], self.prompts[i] = client_id, prompt
        self.baseline[i], self.rounds[i] = float(state.baseline), int(state.rounds_seen)
        self.dirty = True
        return new

    def _grow(self, capacity: int) -> None:
        def grown(a: np.ndarray) -> np.ndarray:
            out = np.empty((capacity, *a.shape[1:]), a.dtype)
            out[: self.n] = a[: self.n]
            return out

        self.ids, self.prompts = grown(self.ids), grown(self.prompts)
        self.baseline, self.rounds = grown(self.baseline), grown(self.rounds)

    def to_table(self, schema: pa.Schema) -> pa.Table:
        order = np.argsort(self.ids[: self.n], kind="stable")  # files sorted by client id
        prompts = pa.array(self.prompts[: self.n][order].reshape(-1), _ARROW[self.dtype])  # (n * Dd,)
        columns = [
            pa.array(self.ids[: self.n][order], pa.int64()),
            pa.FixedSizeListArray.from_arrays(prompts, self.dim),
            pa.array(self.baseline[: self.n][order], pa.float64()),
            pa.array(self.rounds[: self.n][order], pa.int32()),
        ]
        return pa.Table.from_arrays(columns, schema=schema)


def _s3_endpoint_from_env(uri: str) -> tuple[pafs.FileSystem, str] | None:
    """An ``s3://bucket/prefix`` URI on the endpoint of ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL``, when one is set and the URI names none (no query string).

    Every AWS tool reads those variables; the AWS SDK inside pyarrow honours them only from
    some versions on, so the endpoint is passed explicitly (scheme and host:port split as
    ``S3FileSystem`` wants them). Credentials and region stay with the SDK's own chain
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, profiles...).
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not endpoint or parts.query:
        return None
    where = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    fs = pafs.S3FileSystem(
        endpoint_override=f"{where.netloc}{where.path.rstrip('/')}", scheme=where.scheme, region=region
    )
    return fs, f"{parts.netloc}{parts.path}"


def _resolve(uri: str, filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of ``uri`` (a URI such as s3://b/p or file:///d, or a local path)."""
    if filesystem is not None:
        return filesystem, uri.rstrip("/")
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    try:
        fs, root = _s3_endpoint_from_env(uri) or pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise StoreError(
            f"store uri {uri!r} is not a pyarrow filesystem URI ({exc}); "
            "set store.uri to a local directory or e.g. s3://bucket/prefix"
        ) from None
    return fs, root.rstrip("/")


class ShardedClientStore(ClientStore):
    """Client rows in Parquet shards of ``shard_size`` ids, ``cache_shards`` of them in memory.

    ``bytes_per_client()`` counts one row's fixed-width Arrow payload: the data prompt
    (itemsize x Dd: 4 for float32, 2 for bfloat16/float16) + baseline float64 (8) + rounds_seen
    int32 (4) + client_id int64 (8), i.e. ``itemsize * Dd + 20``; Parquet encoding, compression
    and file footers are not counted (see ``on_disk_bytes()`` for what the files take).
    Not thread-safe: one caller at a time.

    Args:
        uri: a local directory, or a URI pyarrow understands (``file:///d``, ``s3://b/p``,
            ``gs://b/p``...); with ``filesystem``, a path inside that filesystem.
        shard_size: client ids per shard; must match the one the store was written with.
        cache_shards: shards kept in memory at once...
        filesystem: an already built pyarrow filesystem (credentials, endpoints, tests).
        dtype: how prompts are kept at rest (``store.dtype``: float32, bfloat16, float16);
            rows are put and got as float32 whatever it is. Must match the store's shards.
        cache_mib: ...unless the cached rows take less than this many MiB: a random cohort of
            a huge population touches one sparse shard per client, and evicting those by
            count would turn every round into a file write per client. Memory stays bounded
            by ``max(cache_shards shards, cache_mib)``; 0 bounds by count alone.

    Raises:
        StoreError: a shard is not readable Parquet, has foreign columns, was written
            with another shard size or dtype, or shards disagree on the prompt size Dd.
    """

    def __init__(
        self,
        uri: str,
        shard_size: int = 4096,
        cache_shards: int = 16,
        filesystem: pafs.FileSystem | None = None,
        cache_mib: float = 0.0,
        dtype: str = "float32",
    ) -> None:
        if shard_size < 1 or cache_shards < 1:
            raise ValueError(f"shard_size ({shard_size}) and cache_shards ({cache_shards}) must be >= 1")
        storage_type(dtype)  # a ValueError naming the choices for an unknown dtype
        self.dtype = dtype
        self.uri, self.shard_size, self.cache_shards = uri, int(shard_size), int(cache_shards)
        self.cache_bytes = int(cache_mib * 2**20)
        self._fs, self._root = _resolve(uri, filesystem)
        self._cache: OrderedDict[int, _Shard] = OrderedDict()  # least recently used first
        self._dim: int | None = None  # Dd, known from the first shard read or row put
        self._dir_made = False
        self._on_disk: set[int] = set()
        self._rows = 0
        self._cached_rows = 0  # rows in the cache, kept as they change: the eviction test is O(1)
        for shard, info in self._list_shards().items():
            self._rows += self._read_footer(shard, info.path)
            self._on_disk.add(shard)

    # --- the ClientStore interface ---------------------------------------------------

    def get_many(self, client_ids: Iterable[int]) -> list[ClientState | None]:
        """Each client's state (a fresh copy), or None for a client never put."""
        ids = [self._check_id(c) for c in client_ids]
        out: list[ClientState | None] = [None] * len(ids)
        for shard, positions in self._by_shard(ids).items():
            rows = self._load(shard, create=False)
            if rows is not None:
                for p in positions:
                    out[p] = rows.get(ids[p])
        return out

    def put_many(self, client_ids: Sequence[int], states: Sequence[ClientState]) -> None:
        """Store (replace) the rows of ``client_ids`` in their cached shards, marked dirty.

        Raises:
            StoreError: a data prompt's size differs from the store's Dd.
        """
        if len(client_ids) != len(states):
            raise ValueError(f"{len(client_ids)} ids but {len(states)} states")
        ids = [self._check_id(c) for c in client_ids]
        prompts = self._check_prompts(ids, states)
        for shard, positions in self._by_shard(ids).items():
            rows = self._load(shard, create=True)
            assert rows is not None  # create=True always gives a shard
            for p in positions:
                new = rows.put(ids[p], states[p], prompts[p])
                self._rows += new
                self._cached_rows += new

    def __len__(self) -> int:
        return self._rows

    def __contains__(self, client_id: object) -> bool:
        if not isinstance(client_id, (int, np.integer)) or isinstance(client_id, bool) or client_id < 0:
            return False
        return self.get_many([int(client_id)])[0] is not None

    def bytes_per_client(self) -> int:
        """``itemsize * Dd + 20`` (prompt, baseline, rounds_seen, client_id); 0 before Dd is known."""
        return 0 if self._dim is None else itemsize(self.dtype) * self._dim + _ROW_OVERHEAD

    def flush(self) -> None:
        """Write every dirty cached shard (atomically, one file each)."""
        for shard, rows in self._cache.items():
            if rows.dirty:
                self._write(shard, rows)

    def close(self) -> None:
        """Flush, then drop the cache (the store can still be used; shards reload on demand)."""
        self.flush()
        self._drop_cache()

    # --- beyond the interface --------------------------------------------------------

    def cached_shards(self) -> list[int]:
        """The shards now in memory, least recently used first (never more than cache_shards)."""
        return list(self._cache)

    def shard_path(self, shard: int) -> str:
        """Where shard ``shard`` lives inside the store's filesystem."""
        return f"{self._root}/shard-{shard:08d}.parquet"

    def on_disk_bytes(self) -> int:
        """Sum of the shard file sizes as they are now (dirty cached shards count once flushed)."""
        return sum(int(info.size or 0) for info in self._list_shards().values())

    def checkpoint_manifest(self) -> list[tuple[str, int]]:
        """Flush, then list ``(shard path, size in bytes)`` of every shard file, by shard."""
        self.flush()
        return [(info.path, int(info.size or 0)) for _, info in sorted(self._list_shards().items())]

    def save_copy(self, tag: str) -> str:
        """Flush, then copy every shard into ``<root>/_checkpoints/<tag>/`` (same filesystem).

        The copy is what a checkpoint keeps: shards are rewritten in place as rounds go on,
        so resuming bit for bit needs the shards as they were at the checkpoint. A run only
        touches sampled clients, so the copy costs touched clients x bytes per client.
        """
        self.flush()
        dest = f"{self._root}/_checkpoints/{tag}"
        self._fs.create_dir(dest, recursive=True)
        for shard, info in sorted(self._list_shards().items()):
            self._fs.copy_file(info.path, f"{dest}/{info.base_name}")
        return dest

    def checkpoint(self, tag: str) -> dict[str, Any]:
        """The shards are their own storage: copy them aside (``save_copy``) and name the copy."""
        return {"store_copy_tag": tag, "store_copy": self.save_copy(tag)}

    def restore_checkpoint(self, saved: dict[str, Any]) -> None:
        """Back to the copy ``checkpoint`` made (found under this store's root, wherever the
        run directory moved)."""
        self.restore_copy(str(saved.get("store_copy_tag") or str(saved["store_copy"]).rsplit("/", 1)[-1]))

    def restore_copy(self, tag: str) -> None:
        """Make the store exactly what ``save_copy(tag)`` saw: shards written later are removed."""
        src = f"{self._root}/_checkpoints/{tag}"
        if self._fs.get_file_info(src).type != pafs.FileType.Directory:
            raise StoreError(f"the store copy {src} of a checkpoint is missing; start the run again")
        self._drop_cache()
        for info in self._list_shards().values():
            self._fs.delete_file(info.path)
        for info in self._fs.get_file_info(pafs.FileSelector(src)):
            self._fs.copy_file(info.path, f"{self._root}/{info.base_name}")
        self._dim, self._on_disk, self._rows = None, set(), 0
        for shard, info in self._list_shards().items():
            self._rows += self._read_footer(shard, info.path)
            self._on_disk.add(shard)

    # --- shards ----------------------------------------------------------------------

    def _check_id(self, client_id: int) -> int:
        c = int(client_id)
        if c < 0:
            raise ValueError(f"client ids are >= 0, got {c}")
        return c

    def _check_prompts(self, ids: list[int], states: Sequence[ClientState]) -> list[np.ndarray]:
        """The prompts of ``states`` in the store's dtype, all of the store's Dd (the first fixes it)."""
        prompts = [np.asarray(s.data_prompt, np.float32) for s in states]
        dim = self._dim if self._dim is not None else (prompts[0].size if prompts else None)
        for c, p in zip(ids, prompts):
            if p.ndim != 1 or p.size == 0:
                raise ValueError(f"client {c}: data_prompt must be a non-empty vector, got shape {p.shape}")
            if p.size != dim:
                raise StoreError(
                    f"client {c}: data prompt has {p.size} values but the store at {self.uri!r} "
                    f"holds prompts of Dd={dim}; use a fresh store.uri, or the model/prompt config "
                    "the store was written with"
                )
        if dim is not None:
            self._dim = int(dim)
        return [encode(p, self.dtype) for p in prompts]

    def _by_shard(self, ids: list[int]) -> dict[int, list[int]]:
        """Positions in ``ids`` grouped by shard, so each shard is loaded once."""
        groups: dict[int, list[int]] = {}
        for p, c in enumerate(ids):
            groups.setdefault(c // self.shard_size, []).append(p)
        return groups

    def _load(self, shard: int, create: bool) -> _Shard | None:
        """A shard from the cache, or read from disk (evicting first so the bound holds)."""
        rows = self._cache.get(shard)
        if rows is not None:
            self._cache.move_to_end(shard)
            return rows
        if shard not in self._on_disk and not create:
            return None
        while len(self._cache) >= self.cache_shards and self._cached_bytes() >= self.cache_bytes:
            old, victim = next(iter(self._cache.items()))
            if victim.dirty:
                self._write(old, victim)  # if it fails, the shard stays cached and dirty
            del self._cache[old]
            self._cached_rows -= victim.n
        if shard in self._on_disk:
            rows = self._read(shard)
        else:
            assert self._dim is not None  # set by _check_prompts before any create
            rows = _Shard.empty(self._dim, self.dtype)
        self._cache[shard] = rows
        self._cached_rows += rows.n
        return rows

    def _drop_cache(self) -> None:
        self._cache.clear()
        self._cached_rows = 0

    def _cached_bytes(self) -> int:
        """Payload bytes of the cached rows (a sparse shard of a huge population holds few)."""
        return self._cached_rows * self.bytes_per_client()

    def _corrupt(self, shard: int, why: str) -> StoreError:
        lo = shard * self.shard_size
        return StoreError(
            f"client store shard {self.shard_path(shard)!r} {why}; delete that file to restart "
            f"clients {lo}..{lo + self.shard_size - 1} from scratch, or restore the store from a checkpoint"
        )

    def _read_footer(self, shard: int, path: str) -> int:
        """Check a shard's footer (columns, Dd, shard size) and return its row count."""
        try:
            with self._fs.open_input_file(path) as handle:
                meta = pq.read_metadata(handle)
            schema = meta.schema.to_arrow_schema()
        except (pa.ArrowException, OSError) as exc:
            raise self._corrupt(shard, f"is not readable Parquet ({exc})") from None
        self._check_schema(shard, schema)
        return int(meta.num_rows)

    def _check_schema(self, shard: int, schema: pa.Schema) -> int:
        """A shard's Dd, after checking its columns and shard metadata against the store's."""
        dim = _prompt_dim(schema)
        if dim is None:
            raise self._corrupt(shard, f"does not have the store's columns (found {schema.names})")
        meta = schema.metadata or {}
        if _META_SIZE in meta and int(meta[_META_SIZE]) != self.shard_size:
            written = int(meta[_META_SIZE])
            raise StoreError(
                f"client store {self.uri!r} was written with shard_size {written} "
                f"(shard {self.shard_path(shard)!r}); set store.shard_size={written} or use a fresh store.uri"
            )
        if _META_SHARD in meta and int(meta[_META_SHARD]) != shard:
            raise self._corrupt(shard, f"was written as shard {int(meta[_META_SHARD])} (renamed?)")
        written_dtype = _prompt_dtype(schema)
        if written_dtype != self.dtype:
            raise StoreError(
                f"client store {self.uri!r} was written with store.dtype {written_dtype} (shard "
                f"{self.shard_path(shard)!r}); set store.dtype={written_dtype} or use a fresh store.uri"
            )
        if self._dim is not None and dim != self._dim:
            raise StoreError(
                f"client store shard {self.shard_path(shard)!r} holds prompts of Dd={dim} but the "
                f"store holds Dd={self._dim}; the store mixes runs: use a fresh store.uri"
            )
        self._dim = dim
        return dim

    def _read(self, shard: int) -> _Shard:
        try:
            with self._fs.open_input_file(self.shard_path(shard)) as handle:
                table = pq.read_table(handle)
        except (pa.ArrowException, OSError) as exc:
            raise self._corrupt(shard, f"is not readable Parquet ({exc})") from None
        rows = _Shard.from_table(table, self._check_schema(shard, table.schema), self.dtype)
        lo = shard * self.shard_size
        if rows.n and (rows.ids.min() < lo or rows.ids.max() >= lo + self.shard_size):
            raise self._corrupt(shard, f"holds client ids outside [{lo}, {lo + self.shard_size})")
        return rows

    def _write(self, shard: int, rows: _Shard) -> None:
        """Write a shard to a temporary file beside it, then move it in place."""
        if not self._dir_made:
            self._fs.create_dir(self._root, recursive=True)
            self._dir_made = True
        path = self.shard_path(shard)
        tmp = f"{self._root}/.shard-{shard:08d}.{uuid.uuid4().hex}.tmp"
        try:
            table = rows.to_table(_schema(rows.dim, shard, self.shard_size, self.dtype))
            pq.write_table(table, tmp, filesystem=self._fs, use_dictionary=False)
            self._fs.move(tmp, path)
        except BaseException as exc:
            try:
                self._fs.delete_file(tmp)
            except (pa.ArrowException, OSError):
                pass  # never created, or already moved
            if isinstance(exc, (pa.ArrowException, OSError)):
                raise StoreError(
                    f"could not write client store shard {path!r} ({exc}); "
                    "the previous version of that file is intact"
                ) from exc
            raise
        rows.dirty = False
        self._on_disk.add(shard)

    def _list_shards(self) -> dict[int, pafs.FileInfo]:
        """The shard files under the root by shard number (temporary files are skipped)."""
        selector = pafs.FileSelector(self._root, allow_not_found=True)
        try:
            infos = self._fs.get_file_info(selector)
        except (pa.ArrowException, OSError) as exc:
            raise StoreError(
                f"cannot list client store {self.uri!r} ({exc}); check store.uri "
                "and the filesystem's credentials (for S3: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY, AWS_REGION)"
            ) from None
        found = {}
        for info in infos:
            match = _SHARD_NAME.fullmatch(info.base_name)
            if match and info.type == pafs.FileType.File:
                found[int(match.group(1))] = info
        return found
