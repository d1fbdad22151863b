"""Whole runs whose client store is on S3 (moto's server on localhost, ``store.uri: s3://...``):
an undisturbed run, a SIGKILLed driver resumed from S3, and three Ray nodes sharing the store.
All three give the same Parquet numbers. The three-node run is also the suite's multi-node
placement check: workers spread over the worker nodes, the driver and the aggregator stay on
the head, and every number equals the single-node run's.

The three-node cluster (``ray.cluster_utils.Cluster``) needs a Ray instance of its own, so it
runs in a subprocess: this file is also that script (``python test_s3_runs.py CONFIG OUT``).
Its nodes start *without* the AWS variables, so the run reaches S3 only if the driver forwards
them to its actors.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from dp2fl_ray.config import ExperimentConfig, config_to_dict, save_config
from dp2fl_ray.metrics import read_summary, read_table

if TYPE_CHECKING:  # the three-node subprocess runs this file without the tests on its path
    from s3_server import S3Server

pytestmark = pytest.mark.ray


def numbers(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Every table's numbers, minus wall-clock timings, in a canonical row order."""
    out = {}
    for table in ("rounds", "clients", "evals", "aggregation"):
        frame = read_table(run_dir, table)
        frame = frame[[c for c in frame.columns if not (c.endswith("_s") or c == "client_updates_per_s")]]
        out[table] = frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)
    return out


def assert_same_numbers(a: Path, b: Path) -> None:
    theirs = numbers(b)
    for table, frame in numbers(a).items():
        pd.testing.assert_frame_equal(frame, theirs[table], check_exact=True, obj=table)


def on_s3(config: ExperimentConfig, uri: str) -> ExperimentConfig:
    return config.with_overrides(["store.backend=sharded", f"store.uri={uri}"])


@pytest.fixture(scope="module")
def base(tiny_config: ExperimentConfig) -> ExperimentConfig:
    return tiny_config.with_overrides(
        ["federation.rounds=3", "output.checkpoint_every=1", "store.shard_size=2"]
    )


@pytest.fixture(scope="module")
def reference(
    ray_cluster: None, s3_server: S3Server, base: ExperimentConfig, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """An undisturbed run on s3://<bucket>/reference."""
    from dp2fl_ray.runtime.simulation import run_experiment

    out = tmp_path_factory.mktemp("s3-reference")
    run_experiment(
        on_s3(base, f"s3://{s3_server.bucket}/reference"), output_dir=out, run_name="ref", progress=False
    )
    return out / "ref"


def test_a_run_keeps_its_client_store_on_s3(reference: Path, s3_server: S3Server) -> None:
    summary = read_summary(reference)
    assert summary["status"] == "completed" and summary["rounds_completed"] == 3
    keys = s3_server.keys("reference/")
    shards = [k for k in keys if k.startswith("reference/shard-")]
    assert shards == [
        "reference/shard-00000000.parquet",
        "reference/shard-00000001.parquet",
    ]  # 4 clients, 2 a shard
    assert any(k.startswith("reference/_checkpoints/round-00003/") for k in keys)
    assert summary["store_bytes"] > 0 and not (reference / "store").exists()


def test_a_sigkilled_driver_resumes_from_s3_to_the_undisturbed_numbers(
    reference: Path, base: ExperimentConfig, s3_uri: str, tmp_path: Path
) -> None:
    from cli_driver import checkpointed_round, resume, start_driver, wait_for_first_checkpoint

    config_path = tmp_path / "config.yaml"
    save_config(on_s3(base, s3_uri), config_path)
    driver = start_driver(config_path, tmp_path, "victim")
    manifest = wait_for_first_checkpoint(driver, tmp_path / "victim")
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert checkpointed_round(manifest) >= 1
    assert read_summary(tmp_path / "victim")["status"] == "running"  # killed: nobody wrote an end
    done = resume(tmp_path / "victim")
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_summary(tmp_path / "victim")["status"] == "completed"
    assert_same_numbers(reference, tmp_path / "victim")


def run_on_three_nodes(config_path: str, out: str) -> None:
    """The subprocess: a head with no CPUs (so no worker can land there) and two 1-CPU worker
    nodes, all started without the AWS variables; a 2-worker run on the S3 store, noting at
    round 1 which actor is on which node; then every node opens the store and reads the rows
    the run left (``nodes.json``: ``stored``, node -> clients stored; ``placement``, actor or
    driver -> node)."""
    import ray
    from ray.cluster_utils import Cluster

    from dp2fl_ray.config import load_config
    from dp2fl_ray.runtime.simulation import run_experiment
    from dp2fl_ray.state import ShardedClientStore

    aws = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("AWS_")}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.head_node] + [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    os.environ.update(aws)  # the driver has them; the nodes' processes do not
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    config = load_config(config_path)
    names = {node.node_id: f"node-{i}" for i, node in enumerate(nodes)}  # node-0 is the head
    placement: dict[str, str] = {"driver": names[ray.get_runtime_context().get_node_id()]}

    def locate(row: dict[str, Any]) -> None:
        if row["round"] != 1:
            return
        for name in ray.util.list_named_actors():
            if name.startswith("dp2fl:"):
                actor = ray.get_actor(name)
                node: ray.ObjectRef[str] = (
                    actor.node_id.remote() if name.endswith(":aggregator") else actor.ping.remote()
                )
                placement[name.rsplit(":", 1)[1]] = names[ray.get(node)]

    @ray.remote(num_cpus=0)
    def rows_seen(uri: str, shard_size: int) -> int:
        return len(ShardedClientStore(uri, shard_size=shard_size))

    try:
        run_experiment(config, output_dir=out, run_name="three-nodes", progress=False, on_round=locate)
        seen: dict[str, Any] = {}
        for i, node in enumerate(nodes):
            where = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node.node_id, soft=False)
            task = rows_seen.options(scheduling_strategy=where, runtime_env={"env_vars": aws})
            seen[f"node-{i}"] = ray.get(task.remote(str(config.store.uri), config.store.shard_size))
    finally:
        ray.shutdown()
        cluster.shutdown()
    Path(out, "nodes.json").write_text(json.dumps({"stored": seen, "placement": placement}, sort_keys=True))


def test_three_nodes_place_the_actors_share_the_s3_store_and_give_the_numbers_of_one(
    reference: Path, base: ExperimentConfig, s3_uri: str, tmp_path: Path
) -> None:
    import yaml

    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config_to_dict(on_s3(base, s3_uri))))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, __file__, str(config_path), str(tmp_path)], env=env, check=False,
                          capture_output=True, text=True, timeout=500)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    nodes = json.loads((tmp_path / "nodes.json").read_text())
    assert nodes["stored"] == {"node-0": 4, "node-1": 4, "node-2": 4}
    placement = nodes["placement"]
    assert placement["driver"] == "node-0" and placement["aggregator"] == "node-0"  # the head
    assert {placement["worker-0"], placement["worker-1"]} == {"node-1", "node-2"}
    assert_same_numbers(reference, tmp_path / "three-nodes")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    run_on_three_nodes(sys.argv[1], sys.argv[2])
