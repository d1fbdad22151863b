"""One writer per run directory: ``run.lock``, created exclusively, holding pid and host.

Two resumes of one run, or a resume of a live run, would both write its metrics and
checkpoints. The lock is an ``O_CREAT | O_EXCL`` create, atomic on local filesystems and on
NFSv3+, so exactly one process wins. A lock whose pid no longer exists on this same host is
stale (a killed driver) and is taken over, with a log line saying so; a lock held from
another host cannot be checked from here and is refused, naming the holder and how to clear it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dp2fl_ray.errors import RunLockedError

LOCK_FILE = "run.lock"
if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("dp2fl_ray")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (signal 0 probes without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``with RunLock(run_dir):`` holds the run directory for this process.

    Raises (on enter):
        RunLockedError: a live process (or one on another host) holds the lock.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.held = False

    def acquire(self) -> None:
        for _ in range(2):  # a second try only after removing a stale lock
            if self._create():
                self.held = True
                return
            holder = self._holder()
            if not self._stale(holder):
                raise RunLockedError(
                    f"run directory {self.path.parent} is in use by pid {holder.get('pid')} on host "
                    f"{holder.get('host')} (since {holder.get('since')}); wait for that run to end, or if it "
                    f"is gone (another host cannot be checked from here) delete {self.path}"
                )
            log.warning(
                "taking over the stale lock %s of pid %s on %s: that process is gone",
                self.path, holder.get("pid"), holder.get("host"),
            )  # fmt: skip
            self.path.unlink(missing_ok=True)
        raise RunLockedError(f"run directory {self.path.parent}: another process took the lock {self.path} "
                             "as this one took over a stale lock; wait for it to end")  # fmt: skip

    def release(self) -> None:
        if self.held:
            if self._holder().get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(),
        }
        with os.fdopen(fd, "w") as f:
            json.dump(holder, f)
        return True

    def _holder(self) -> dict[str, Any]:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # being written this instant, or garbage: treated as held by an unknown process
        return holder if isinstance(holder, dict) else {}

    @staticmethod
    def _stale(holder: dict[str, Any]) -> bool:
        pid = holder.get("pid")
        if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
            return False
        return not pid_alive(pid)
