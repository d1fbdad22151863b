"""Three Ray nodes on one machine: workers spread over the worker nodes, the aggregator stays on
the driver's (head) node, and the numbers equal a single-node run with the same seed.

The multi-node cluster (``ray.cluster_utils.Cluster``) needs a Ray instance of its own, so it
runs in a subprocess: this file is also that script (``python test_multinode.py CONFIG OUT``).
The single-node run for comparison uses the session's shared cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from dp2fl_ray.config import ExperimentConfig, config_to_dict, load_config
from dp2fl_ray.metrics import read_table

COMPARED = [
    "train_loss",
    "baseline_loss",
    "val_loss",
    "test_loss",
    "test_acc",
    "start_test_acc",
    "data_prompt_shift",
]


def run_on_three_nodes(config_path: str, out: str) -> None:
    """The subprocess: a head with no CPUs (so no worker can land there) and two 1-CPU worker
    nodes; a 2-worker run; at round 1, which actor is on which node -> ``placement.json``."""
    import ray
    from ray.cluster_utils import Cluster

    from dp2fl_ray.runtime.simulation import run_experiment

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    assert cluster.head_node is not None  # initialize_head=True
    names = {cluster.head_node.node_id: "head"} | {n.node_id: f"node-{i + 1}" for i, n in enumerate(workers)}
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    placement: dict[str, Any] = {"driver": names[ray.get_runtime_context().get_node_id()]}

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

    try:
        run_experiment(
            load_config(config_path), output_dir=out, run_name="three-nodes", progress=False, on_round=locate
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    Path(out, "placement.json").write_text(json.dumps(placement, indent=1, sort_keys=True))


@pytest.mark.ray
def test_workers_spread_over_nodes_aggregator_on_the_head_and_numbers_match_one_node(
    ray_cluster: None, tiny_config: ExperimentConfig, tmp_path: Path
) -> None:
    from dp2fl_ray.runtime.simulation import run_experiment

    config = tiny_config.with_overrides(["runtime.workers=2", "runtime.cpus_per_worker=1"])
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config_to_dict(config)))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t0 = time.perf_counter()
    multi = subprocess.Popen([sys.executable, __file__, str(config_path), str(tmp_path / "multi")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:  # the single-node run meanwhile, on the session's cluster
        run_experiment(config, output_dir=tmp_path / "single", run_name="one-node", progress=False)
        log, _ = multi.communicate(timeout=400)
    finally:
        multi.kill()
    assert multi.returncode == 0, log[-4000:]
    placement = json.loads((tmp_path / "multi" / "placement.json").read_text())
    print(f"\nplacement on 3 nodes (both runs: {time.perf_counter() - t0:.1f} s): {placement}")

    assert placement["driver"] == "head" and placement["aggregator"] == "head"
    assert {placement["worker-0"], placement["worker-1"]} == {"node-1", "node-2"}
    single = read_table(tmp_path / "single" / "one-node", "clients")
    multi_nodes = read_table(tmp_path / "multi" / "three-nodes", "clients")
    assert len(single) == 8
    key = ["round", "client_id"]
    pd.testing.assert_frame_equal(
        single.sort_values(key)[key + COMPARED].reset_index(drop=True),
        multi_nodes.sort_values(key)[key + COMPARED].reset_index(drop=True),
        check_exact=True,
    )


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    run_on_three_nodes(sys.argv[1], sys.argv[2])
