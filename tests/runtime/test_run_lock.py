"""One writer per run directory: a live holder is refused by name, a dead one's lock is taken over."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dp2fl_ray.errors import RunLockedError
from dp2fl_ray.runtime.run_lock import LOCK_FILE, RunLock

HOLD = (
    "import sys, time; from dp2fl_ray.runtime.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
    "print('held', flush=True); time.sleep(60)"
)


def test_a_second_holder_is_refused_naming_the_live_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError) as info:
            RunLock(tmp_path).acquire()
        assert f"pid {holder.pid}" in str(info.value) and socket.gethostname() in str(info.value)
        assert str(tmp_path / LOCK_FILE) in str(info.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_pid_is_taken_over_saying_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid no longer exists
    stale = {"pid": gone.pid, "host": socket.gethostname(), "since": "2020-01-01T00:00:00+00:00"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
    with caplog.at_level(logging.WARNING, logger="dp2fl_ray"), RunLock(tmp_path):
        mine = json.loads((tmp_path / LOCK_FILE).read_text())
        assert mine["pid"] != gone.pid
    assert any("stale lock" in r.getMessage() and str(gone.pid) in r.getMessage() for r in caplog.records)
    assert not (tmp_path / LOCK_FILE).exists()  # released on exit


def test_a_lock_from_another_host_is_never_taken_over(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": time.ctime()}))
    with pytest.raises(RunLockedError, match="elsewhere"):
        RunLock(tmp_path).acquire()
