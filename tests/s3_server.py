"""A real S3-compatible server on localhost for the store's S3 tests: moto's, one per session.

Import the fixtures into a test module (``from s3_server import s3_server, s3_uri``). The
server listens on a free port; the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``) point every S3 client of
this process and of its children (the CLI, Ray nodes) at it for the session, and are put
back afterwards. ``s3_uri`` gives each test a prefix of its own in the one bucket.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

BUCKET = "dp2fl-test"


@dataclass(frozen=True)
class S3Server:
    """Where the server listens and a boto3 client for looking behind the store's back."""

    endpoint: str
    bucket: str
    client: Any  # boto3 S3 client

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix`` (a bucket-relative path, no s3://)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free localhost port, the AWS variables aimed at it, one bucket."""
    import boto3  # the test extra's: missing, the S3 tests fail rather than skip
    import moto.server as moto_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint, BUCKET, client)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def s3_uri(s3_server: S3Server) -> str:
    """``s3://<bucket>/<a fresh prefix>`` for one test."""
    return f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:12]}"
