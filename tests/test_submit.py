"""``dp2fl-ray submit``: fails fast on bad input, and runs a tiny experiment as a job on a real
head with token authentication (started here, on 127.0.0.1, and stopped at the end)."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from dp2fl_ray import cli
from dp2fl_ray.commands.submit import EXCLUDES, auth_headers, job_entrypoint, job_runtime_env
from dp2fl_ray.config import load_config
from dp2fl_ray.errors import ConfigError
from dp2fl_ray.metrics import read_summary, read_table

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SUBMIT = ("dp2fl_ray.commands.submit", "submit one experiment as a Ray job and follow its logs")
TINY_SETS = [  # the quickstart shrunk to the tests' tiny run (conftest.TINY): 4 clients, 2 rounds, 1 worker
    "model.tiny={hidden: 64, layers: 2, heads: 4, projection: 32, image_size: 16, patch_size: 8}",
    "model.prompt.n_ctx=2", "model.prompt.depth=2", "model.device=cpu",
    "federation.population=4", "federation.cohort=4", "federation.rounds=2", "federation.new_clients=1",
    "train.local_epochs=1", "train.batch_size=8", "runtime.workers=1", "runtime.clients_per_slice=2",
]  # fmt: skip


def _submit(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys; from dp2fl_ray import cli; cli.COMMANDS.setdefault('submit', {SUBMIT!r}); "
        "sys.exit(cli.main(sys.argv[1:]))"
    )
    return subprocess.run([sys.executable, "-c", code, "submit", *args], check=False,
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)  # fmt: skip


# --- no Ray ------------------------------------------------------------------------------------


def test_a_bad_config_fails_before_the_job_server_is_contacted() -> None:
    t0 = time.perf_counter()
    done = _submit("experiments/quickstart.yaml", "--set", "train.lrr=0.1", "--address", "http://127.0.0.1:9")
    assert done.returncode == 2 and "train.lrr" in done.stderr and "Traceback" not in done.stderr
    assert time.perf_counter() - t0 < 60


def test_the_entrypoint_runs_the_config_relative_to_the_working_dir_with_every_set() -> None:
    entry = job_entrypoint(
        ROOT / "experiments" / "quickstart.yaml", ["train.lr=0.1", "model.tiny={hidden: 64}"], ROOT
    )
    assert (
        entry
        == "dp2fl-ray run experiments/quickstart.yaml --set train.lr=0.1 --set 'model.tiny={hidden: 64}'"
    )
    joined = job_entrypoint(ROOT / "experiments" / "quickstart.yaml", [], ROOT, joins_other_cluster=True)
    assert joined.endswith("--set runtime.address=null")


def test_a_config_outside_the_working_dir_is_refused_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--working-dir"):
        job_entrypoint(tmp_path / "x.yaml", [], ROOT)


def test_the_runtime_env_ships_the_working_dir_without_venvs_results_or_caches(tmp_path: Path) -> None:
    extra = tmp_path / "env.yaml"
    extra.write_text("pip: [dp2fl-ray]\nenv_vars: {HF_HUB_OFFLINE: '1'}\nexcludes: [data/]\n")
    env = job_runtime_env(ROOT, str(extra))
    assert env["working_dir"] == str(ROOT) and env["pip"] == ["dp2fl-ray"]
    assert {".venv*/", ".git/", "results/", "data/"} <= set(env["excludes"]) and set(EXCLUDES) <= set(
        env["excludes"]
    )
    extra.write_text("working_dir: s3://bucket/x.zip\n")
    with pytest.raises(ConfigError, match="--working-dir"):
        job_runtime_env(ROOT, str(extra))


def test_the_token_is_found_where_ray_looks_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert auth_headers() == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    assert auth_headers() == {"Authorization": "Bearer from-home"}
    (tmp_path / "tok").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "tok"))
    assert auth_headers() == {"Authorization": "Bearer from-path"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert auth_headers() == {"Authorization": "Bearer from-env"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert auth_headers() == {}


# --- a real head -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    address: str  # the job server, http://127.0.0.1:<port>
    token_file: Path


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:  # 401 without a token: the server is up
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"no job server at {url} after {timeout_s} s")


@contextlib.contextmanager
def _started_head(folder: Path, wait: bool = True) -> Iterator[Head]:
    """A Ray head with a dashboard (the job server) and token auth, on ports of its own so the
    session's in-process cluster and anyone else's Ray on this machine are never touched.
    ``wait=False`` yields as soon as ``ray start`` is launched (the job server not up yet)."""
    token_file = folder / "token"
    token_file.write_text(uuid.uuid4().hex)
    temp_dir = tempfile.mkdtemp(
        prefix="dp2fl-head-", dir="/tmp"
    )  # short: Ray's socket paths must stay < 108 chars
    gcs, dash, client, agent, agent_grpc, env_agent, metrics, node_mgr, obj_mgr = _free_ports(9)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file), "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}  # fmt: skip
    args = [
        str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
        f"--temp-dir={temp_dir}", "--num-cpus=2", "--num-gpus=0", f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
        f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}",
    ]  # fmt: skip
    with open(folder / "head.log", "w") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if wait:
                _wait_http(f"http://127.0.0.1:{dash}/api/version", timeout_s=120)
            yield Head(f"http://127.0.0.1:{dash}", token_file)
        finally:
            _stop_head(proc, temp_dir)


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    with _started_head(tmp_path_factory.mktemp("head")) as started:
        yield started


def _stop_head(proc: subprocess.Popen[bytes], temp_dir: str) -> None:
    """SIGTERM to ``ray start --block`` stops every process it started; stragglers (found by
    this head's own temp dir in their command line) are killed by pid; then the dir goes."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    deadline = time.monotonic() + 30
    while (pids := _pids_using(temp_dir)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    for _ in range(3):  # a process that was exiting may still have written a file
        shutil.rmtree(temp_dir, ignore_errors=True)
        time.sleep(0.5)


def _pids_using(temp_dir: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if temp_dir.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _client_env(head: Head) -> dict[str, str]:
    """As on a user's laptop: no RAY_AUTH_MODE; the token in a file named by RAY_AUTH_TOKEN_PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return env | {
        "RAY_AUTH_TOKEN_PATH": str(head.token_file),
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    }


def _submit_in_background(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    code = (
        f"import sys; from dp2fl_ray import cli; cli.COMMANDS.setdefault('submit', {SUBMIT!r}); "
        "sys.exit(cli.main(sys.argv[1:]))"
    )
    return subprocess.Popen([sys.executable, "-c", code, "submit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)  # fmt: skip


def test_jobs_exit_with_their_status_and_a_tiny_run_writes_its_parquet_on_the_cluster(
    head: Head, tmp_path: Path
) -> None:
    env = _client_env(head)
    # a valid config whose pool cannot fit the 2-CPU head: the run fails on the cluster, the job FAILS
    failing = _submit_in_background("experiments/quickstart.yaml", "--address", head.address,
                                    "--set", "runtime.workers=3", "--set", f"output.dir={tmp_path / 'x'}",
                                    env=env)  # fmt: skip
    out = tmp_path / "runs"
    t0 = time.perf_counter()
    done = _submit("experiments/quickstart.yaml", "--address", head.address,
                   *[a for s in TINY_SETS for a in ("--set", s)], "--set", f"output.dir={out}",
                   env=env)  # fmt: skip
    seconds = time.perf_counter() - t0
    print(f"\nsubmit round trip (validate, upload, run, stream logs, final status): {seconds:.1f} s")
    failed_log, _ = failing.communicate(timeout=300)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SUCCEEDED" in done.stdout and "dp2fl-ray run experiments/quickstart.yaml" in done.stdout
    assert '"personalized_acc"' in done.stdout  # the job's own output, streamed back
    (run_dir,) = out.iterdir()
    summary = read_summary(run_dir)
    assert (summary["status"], summary["rounds_completed"], summary["population"]) == ("completed", 2, 4)
    clients = read_table(run_dir, "clients")
    assert len(clients) == 8 and clients["test_acc"].between(0, 1).all()
    assert failing.returncode == 1 and "FAILED" in failed_log and "runtime.workers" in failed_log, failed_log[
        -3000:
    ]


def test_without_the_token_the_head_refuses_and_the_error_says_so(head: Head, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    done = _submit(
        "experiments/quickstart.yaml", "--address", head.address, "--no-wait", env=env, timeout=120
    )
    assert done.returncode != 0 and "token" in (done.stdout + done.stderr).lower()
    assert "Traceback" not in done.stderr


def test_submit_to_a_head_that_is_still_starting_retries_until_it_takes_the_job(tmp_path: Path) -> None:
    """Finding 7: ``ray start --head`` then at once ``submit`` used to fail with "No available agent"."""
    with _started_head(tmp_path, wait=False) as starting:  # no waiting for the job server
        done = _submit("experiments/quickstart.yaml", "--address", starting.address, "--no-wait",
                       "--wait-s", "240", *[a for s in TINY_SETS for a in ("--set", s)],
                       "--set", f"output.dir={tmp_path / 'runs'}", env=_client_env(starting),
                       timeout=400)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "submitted job" in done.stdout and "Traceback" not in done.stderr


def test_submit_gives_up_after_wait_s_with_the_last_answer() -> None:
    port = _free_ports(1)[0]  # nobody listens there
    t0 = time.perf_counter()
    done = _submit("experiments/quickstart.yaml", "--address", f"http://127.0.0.1:{port}", "--wait-s", "3",
                   "--no-wait", timeout=120)  # fmt: skip
    assert done.returncode == 1 and "job server not ready" in done.stderr, done.stderr[-2000:]
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("dp2fl-ray: error:")]
    assert f"127.0.0.1:{port}" in line and "retried for 3 s" in line
    assert time.perf_counter() - t0 < 90


def test_submit_is_registered_in_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli.COMMANDS, "submit", SUBMIT)
    with pytest.raises(SystemExit):
        cli.main(["submit", "--help"])


# --- the cluster manifests ---------------------------------------------------------------------


def _yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / "cluster" / name).read_text())


def _runs_a_valid_experiment(command: str) -> None:
    """``dp2fl-ray run CONFIG --set ...`` whose config and overrides pass validation here."""
    words = shlex.split(command)
    assert words[:2] == ["dp2fl-ray", "run"], command
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    load_config(ROOT / words[2], sets)


def _gpu_limits(pod_template: dict) -> list[int]:
    return [c["resources"]["limits"].get("nvidia.com/gpu", 0) for c in pod_template["spec"]["containers"]]


def test_the_rayjob_runs_dp2fl_on_gpu_workers_installs_the_package_and_shuts_down() -> None:
    job = _yaml("rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    _runs_a_valid_experiment(spec["entrypoint"])
    assert "runtime.gpus_per_worker=1" in spec["entrypoint"]
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert any("dp2fl-ray" in p for p in env["pip"]["packages"]) and env["working_dir"].endswith(".zip")
    (gpu,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert _gpu_limits(gpu["template"]) == [1]
    assert _gpu_limits(spec["rayClusterSpec"]["headGroupSpec"]["template"]) == [0]  # a CPU head


def test_the_raycluster_has_a_gpu_worker_group_and_token_auth_on_every_node() -> None:
    cluster = _yaml("raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["template"]
    (gpu,) = cluster["spec"]["workerGroupSpecs"]
    assert _gpu_limits(gpu["template"]) == [1] and _gpu_limits(head) == [0]
    for template in (head, gpu["template"]):
        env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
        assert (
            env["RAY_AUTH_MODE"]["value"] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
        )
    assert (
        _yaml("results-pvc.yaml")["metadata"]["name"]
        == head["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    )


def test_the_launcher_config_has_a_cpu_head_gpu_workers_the_package_and_the_token() -> None:
    up = _yaml("ray-up.yaml")
    types = up["available_node_types"]
    assert up["head_node_type"] in types
    workers = [t for name, t in types.items() if name != up["head_node_type"]]
    assert len(workers) == 1 and workers[0]["resources"]["GPU"] == 1 and workers[0]["max_workers"] >= 1
    assert "GPU" not in types[up["head_node_type"]]["resources"]
    assert any("pip install" in c and "dp2fl" in c for c in up["setup_commands"])
    assert all(
        "RAY_AUTH_MODE=token" in " ".join(up[k])
        for k in ("head_start_ray_commands", "worker_start_ray_commands")
    )
    assert any("auth_token" in dest for dest in up["file_mounts"])


def test_the_runtime_env_file_installs_the_package_and_submit_accepts_it() -> None:
    env = job_runtime_env(ROOT, str(ROOT / "cluster" / "runtime_env.yaml"))
    assert any("dp2fl-ray" in p for p in env["pip"]["packages"]) and env["working_dir"] == str(ROOT)
