"""A real CLI driver in a subprocess, on the session's Ray cluster: start it, stop it once its
first checkpoint lands, and resume it.

The fault, signal and S3 tests share this so that each kills and resumes the driver the same way.
Both the driver and the resume join the session cluster (``--address`` and ``RAY_ADDRESS``): a
second local Ray per process would cost its start-up time and prove nothing more, because the
resume reads everything it needs from the run directory and the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def session_address() -> str:
    import ray

    return str(ray.get_runtime_context().gcs_address)


def _free_the_cluster() -> None:
    """A driver in another process needs the CPUs this one's warm workers hold."""
    from dp2fl_ray.runtime import warm_workers

    warm_workers.release()


def start_driver(config_path: Path, output: Path, name: str, capture: bool = False) -> subprocess.Popen[str]:
    _free_the_cluster()
    cmd = [sys.executable, "-m", "dp2fl_ray.cli", "run", str(config_path), "--quiet", "--name", name,
           "--output", str(output), "--address", session_address()]  # fmt: skip
    pipe = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(cmd, stdout=pipe, stderr=pipe, text=True)


def wait_for_first_checkpoint(driver: subprocess.Popen[str], run_dir: Path, timeout_s: float = 300) -> Path:
    """The manifest path, once the driver has written it (or has exited, or the time is up)."""
    manifest = run_dir / "checkpoints" / "latest.json"
    deadline = time.monotonic() + timeout_s
    while not manifest.exists() and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    return manifest


def checkpointed_round(manifest: Path) -> int:
    return int(json.loads(manifest.read_text())["round"])


def resume(run_dir: Path, timeout_s: int = 600) -> subprocess.CompletedProcess[str]:
    """``dp2fl-ray run --resume RUN_DIR`` on the session cluster."""
    _free_the_cluster()
    env = {**os.environ, "RAY_ADDRESS": session_address()}
    return subprocess.run(
        [sys.executable, "-m", "dp2fl_ray.cli", "run", "--resume", str(run_dir), "--quiet"],
        env=env, check=False, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
