"""The client store: per-client state that exists only for clients that have been sampled."""

from __future__ import annotations

from dp2fl_ray.config import StoreConfig
from dp2fl_ray.state.base import ClientState, ClientStore
from dp2fl_ray.state.memory import InMemoryClientStore
from dp2fl_ray.state.sharded import ShardedClientStore

__all__ = ["ClientState", "ClientStore", "InMemoryClientStore", "ShardedClientStore", "open_store"]


def open_store(store_cfg: StoreConfig, default_uri: str) -> ClientStore:
    """The client store ``store_cfg`` asks for.

    Args:
        store_cfg: the ``store`` section of the config.
        default_uri: where a sharded store lives when ``store.uri`` is null (the caller
            picks it, usually ``<run dir>/store``); unused by the memory backend.

    Raises:
        CheckpointError: a sharded store exists at the uri but cannot be opened (see
            ``ShardedClientStore``).
    """
    if store_cfg.backend == "memory":
        return InMemoryClientStore(dtype=store_cfg.dtype)
    uri = store_cfg.uri if store_cfg.uri is not None else default_uri
    return ShardedClientStore(
        uri,
        shard_size=store_cfg.shard_size,
        cache_shards=store_cfg.cache_shards,
        cache_mib=store_cfg.cache_mib,
        dtype=store_cfg.dtype,
    )
