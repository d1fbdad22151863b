"""``dp2fl-ray submit CONFIG --address http://HOST:8265``: one experiment as a Ray job.

The config is validated here first (a bad one fails before Ray is contacted). The job ships
the working directory (the repository holding the config, else the current directory) minus
virtual environments, results and caches, and runs ``dp2fl-ray run <config> --set ...`` on the
cluster; its logs are streamed here and the exit status is the job's (0 on SUCCEEDED).

Token authentication (Ray >= 2.52; on by default for clusters a machine starts while it has a
token): the job server wants ``Authorization: Bearer <token>``. Ray's own client sends it only
when ``RAY_AUTH_MODE=token`` is set; this command looks for the token the way Ray does,
``RAY_AUTH_TOKEN``, then the file named by ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``
(``ray get-auth-token`` prints it), and sends it unless ``RAY_AUTH_MODE=disabled``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dp2fl_ray.commands.run import add_config_arguments
from dp2fl_ray.errors import ConfigError, RunError

# Never shipped with the job (gitignore-style, relative to the working dir); Ray also honours .gitignore.
EXCLUDES = (
    ".venv*/", "venv*/", ".git/", "results/", "__pycache__/", "*.pyc", "*.egg-info/", "build/", "dist/",
    ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".hypothesis/",
)  # fmt: skip
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--address", help="the job server, e.g. http://HOST:8265 "
                        "(default: RAY_API_SERVER_ADDRESS, then RAY_ADDRESS)")  # fmt: skip
    parser.add_argument("--working-dir", help="directory shipped with the job (default: the repository "
                        "holding CONFIG, else the current directory); CONFIG must lie inside it")  # fmt: skip
    parser.add_argument("--runtime-env", metavar="YAML", help="extra runtime_env keys (pip, env_vars, ...), "
                        "e.g. cluster/runtime_env.yaml")  # fmt: skip
    parser.add_argument("--job-id", help="submission id (default: chosen by Ray)")
    parser.add_argument("--no-wait", action="store_true", help="submit and return; do not follow the logs")
    parser.add_argument("--wait-s", type=float, default=60.0, metavar="SECONDS",
                        help="how long to retry while the job server is starting (no agent yet, connection "
                        "refused); default 60")  # fmt: skip


def cli_main(args: argparse.Namespace) -> int:
    from dp2fl_ray.config import load_config
    from dp2fl_ray.preflight import preflight

    config = load_config(args.config, args.overrides)  # fails before Ray is contacted
    working_dir = (
        Path(args.working_dir).resolve() if args.working_dir else default_working_dir(Path(args.config))
    )
    preflight(config, root=working_dir)  # the job starts in the working dir: its paths, checked here
    entrypoint = job_entrypoint(
        Path(args.config), args.overrides, working_dir, joins_other_cluster=bool(config.runtime.address)
    )
    runtime_env = job_runtime_env(working_dir, args.runtime_env)
    address = args.address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ConfigError("--address", None, "the job server address, e.g. http://HOST:8265")

    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    t0 = time.perf_counter()

    def attempt() -> tuple[Any, str]:
        client = JobSubmissionClient(address, headers=auth_headers())
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=args.job_id,
                                   metadata={"dp2fl_config": config.name})  # fmt: skip
        return client, job_id

    try:
        client, job_id = retry_transient(attempt, args.wait_s)
    except AuthenticationError as exc:
        raise RunError(
            f"the job server at {address} refused the request: {str(exc).splitlines()[0]}. It uses token "
            "authentication: put the cluster's token (`ray get-auth-token` on the head prints it) in "
            "~/.ray/auth_token, or set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
        ) from None
    except (ConnectionError, RuntimeError, OSError) as exc:
        waited = f" (retried for {args.wait_s:g} s)" if is_transient(exc) else ""
        raise RunError(f"cannot submit to the Ray job server at {address}{waited}: {exc}") from None
    print(f"submitted job {job_id} to {address}: {entrypoint}", flush=True)
    if args.no_wait:
        print(f"follow it with: ray job logs --follow --address {address} {job_id}")
        return 0
    try:
        asyncio.run(_stream_logs(client, job_id))
        status = _wait_terminal(client, job_id)
    except KeyboardInterrupt:
        print(
            f"\nstopped following; the job goes on (stop it with: ray job stop --address {address} {job_id})"
        )
        return 130
    print(f"job {job_id}: {status} after {time.perf_counter() - t0:.1f} s", flush=True)
    return 0 if status == "SUCCEEDED" else 1


# What a job server says while it starts: the dashboard is up before its agent, the port before both.
TRANSIENT = ("no available agent", "connection refused", "failed to connect", "max retries exceeded",
             "status code 502", "status code 503", "status code 504", "temporarily unavailable")  # fmt: skip
_T = TypeVar("_T")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the job server's answers while it starts (worth retrying)."""
    text = str(exc).lower()
    return any(marker in text for marker in TRANSIENT)


def retry_transient(attempt: Callable[[], _T], wait_s: float, *, first_delay_s: float = 0.5) -> _T:
    """``attempt()``, retried with doubling delays (at most 5 s) for up to ``wait_s`` seconds while
    it fails with a transient answer; any other error, or the last answer, is raised as it came."""
    deadline = time.monotonic() + wait_s
    delay = first_delay_s
    while True:
        try:
            return attempt()
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            first = str(exc).splitlines()[0][:200]
            print(f"job server not ready ({first}); retrying in {delay:.1f} s", file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(2 * delay, 5.0)


def default_working_dir(config: Path) -> Path:
    """The nearest directory above CONFIG holding ``pyproject.toml`` or ``.git``, else the cwd."""
    for folder in config.resolve().parents:
        if (folder / "pyproject.toml").is_file() or (folder / ".git").exists():
            return folder
    return Path.cwd().resolve()


def job_entrypoint(
    config: Path, overrides: list[str], working_dir: Path, joins_other_cluster: bool = False
) -> str:
    """``dp2fl-ray run <config relative to the working dir> --set ...``, shell-quoted.

    A config naming ``runtime.address`` gets ``runtime.address=null``: the job's driver joins
    the cluster it runs on (Ray sets RAY_ADDRESS for it).

    Raises:
        ConfigError: the config does not lie inside the working directory.
    """
    try:
        relative = config.resolve().relative_to(working_dir)
    except ValueError:
        raise ConfigError("CONFIG", str(config), f"a file inside the working directory {working_dir}",
                          "move it there or pass --working-dir")  # fmt: skip
    sets = [*overrides, "runtime.address=null"] if joins_other_cluster else list(overrides)
    return shlex.join(
        ["dp2fl-ray", "run", relative.as_posix(), *[part for s in sets for part in ("--set", s)]]
    )


def job_runtime_env(working_dir: Path, extra: str | None = None) -> dict[str, Any]:
    """``working_dir`` and ``excludes``, plus the keys of the ``--runtime-env`` YAML."""
    env: dict[str, Any] = {}
    if extra:
        try:
            env = yaml.safe_load(Path(extra).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(
                "--runtime-env", extra, "a readable YAML mapping", str(exc).splitlines()[0]
            ) from None
        if not isinstance(env, dict) or "working_dir" in env:
            raise ConfigError("--runtime-env", extra, "a mapping of runtime_env keys without working_dir",
                              "pass the directory with --working-dir")  # fmt: skip
    excludes = list(dict.fromkeys([*EXCLUDES, *env.get("excludes", [])]))
    return {**env, "working_dir": str(working_dir), "excludes": excludes}


def find_auth_token() -> str | None:
    """The cluster token, looked up as Ray does: ``RAY_AUTH_TOKEN``, the file at
    ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``; None when there is none.

    Raises:
        ConfigError: ``RAY_AUTH_TOKEN_PATH`` names a file that cannot be read or is empty.
    """
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip()
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if named:
        try:
            token = Path(named).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(
                "RAY_AUTH_TOKEN_PATH", named, "a readable token file", exc.strerror or ""
            ) from None
        if not token:
            raise ConfigError("RAY_AUTH_TOKEN_PATH", named, "a file holding the token", "it is empty")
        return token
    default = Path.home() / ".ray" / "auth_token"
    return (default.read_text().strip() or None) if default.is_file() else None


def auth_headers() -> dict[str, str]:
    """``Authorization: Bearer <token>`` when a token is found and ``RAY_AUTH_MODE`` is not ``disabled``."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {}
    token = find_auth_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _stream_logs(client: Any, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        sys.stdout.write(lines)
        sys.stdout.flush()


def _wait_terminal(client: Any, job_id: str, timeout_s: float = 60.0) -> str:
    """The job's final status (the log stream can close a moment before the status is final)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL or time.monotonic() > deadline:
            return status
        time.sleep(0.5)
