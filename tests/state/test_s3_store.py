"""The sharded store on a real S3-compatible server (moto's, on localhost), reached through the
standard AWS variables: rows round-trip, checkpoints copy and restore, bad objects are named."""

from __future__ import annotations

import numpy as np
import pytest
from s3_server import S3Server

from dp2fl_ray.config import StoreConfig
from dp2fl_ray.errors import StoreError
from dp2fl_ray.state import ClientState, ShardedClientStore, open_store


def row(client: int, dim: int = 5) -> ClientState:
    return ClientState((np.arange(dim, dtype=np.float32) + client) / np.float32(3.0), client / 7.0, 1)


def key_of(uri: str, shard: int) -> str:
    """The object key of a shard: the uri's path inside the bucket."""
    return f"{uri.split('/', 3)[3]}/shard-{shard:08d}.parquet"


def test_rows_round_trip_through_s3_objects_at_the_uri(s3_server: S3Server, s3_uri: str) -> None:
    store = open_store(StoreConfig(backend="sharded", uri=s3_uri, shard_size=4, dtype="bfloat16"), "unused")
    store.put_many([1, 2, 9], [row(1), row(2), row(9)])
    store.close()
    prefix = s3_uri.split("/", 3)[3]
    shards = [k for k in s3_server.keys(prefix) if k.endswith(".parquet")]
    assert shards == [key_of(s3_uri, 0), key_of(s3_uri, 2)]  # on the server, not a local dir
    again = ShardedClientStore(s3_uri, shard_size=4, dtype="bfloat16")
    assert len(again) == 3 and again.get_many([3])[0] is None
    got = again.get_many([9])[0]
    assert got is not None and got.baseline == 9 / 7.0 and got.rounds_seen == 1
    np.testing.assert_allclose(got.data_prompt, row(9).data_prompt, rtol=2**-8)


def test_a_checkpoint_copy_on_s3_restores_the_rows_as_they_were(s3_uri: str) -> None:
    store = ShardedClientStore(s3_uri, shard_size=4)
    store.put_many([0, 5], [row(0), row(5)])
    store.save_copy("round-00001")
    store.put_many([0, 12], [row(100), row(12)])
    store.flush()
    store.restore_copy("round-00001")
    assert len(store) == 2 and store.get_many([12]) == [None]
    got = store.get_many([0])[0]
    assert got is not None
    np.testing.assert_array_equal(got.data_prompt, row(0).data_prompt)


def test_a_corrupt_object_is_an_error_naming_its_key(s3_server: S3Server, s3_uri: str) -> None:
    store = ShardedClientStore(s3_uri, shard_size=4)
    store.put_many([1], [row(1)])
    store.close()
    s3_server.client.put_object(Bucket=s3_server.bucket, Key=key_of(s3_uri, 0), Body=b"not parquet")
    with pytest.raises(StoreError, match=rf"{key_of(s3_uri, 0)}.*not readable Parquet.*delete that file"):
        ShardedClientStore(s3_uri, shard_size=4)


def test_an_object_gone_after_open_is_an_error_naming_its_key(s3_server: S3Server, s3_uri: str) -> None:
    ShardedClientStore(s3_uri, shard_size=4).put_many([1], [row(1)])  # nothing flushed yet
    writer = ShardedClientStore(s3_uri, shard_size=4)
    writer.put_many([1], [row(1)])
    writer.close()
    reader = ShardedClientStore(s3_uri, shard_size=4)  # lists shard 0
    s3_server.client.delete_object(Bucket=s3_server.bucket, Key=key_of(s3_uri, 0))
    with pytest.raises(StoreError, match=rf"{key_of(s3_uri, 0)}.*not readable"):
        reader.get_many([1])


def test_a_missing_checkpoint_copy_is_an_error_naming_it(s3_uri: str) -> None:
    store = ShardedClientStore(s3_uri, shard_size=4)
    with pytest.raises(StoreError, match=r"_checkpoints/round-00003 of a checkpoint is missing"):
        store.restore_copy("round-00003")


def test_an_unreachable_endpoint_names_the_aws_variables(
    monkeypatch: pytest.MonkeyPatch, s3_uri: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(StoreError, match="AWS_ENDPOINT_URL"):
        ShardedClientStore(s3_uri, shard_size=4)
