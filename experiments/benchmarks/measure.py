"""Run an arm as a child process and record the peak memory of its whole process tree.

Each arm runs in a fresh process (so no arm inherits another's caches, threads or Ray
cluster); a sampler thread sums the resident set size (RSS) of the child and of every
descendant (Ray's GCS, raylet and worker processes included) several times a second and
keeps the maximum. RSS counts pages shared between processes (libraries, Ray's object
store) once per process, so the figure is an upper bound, computed the same way for
every arm. The same samples give the CPU seconds the tree spent during the rounds: on a
shared machine, CPU per client-update is steadier than wall time. Read from ``/proc`` (Linux),
so the benchmark needs no extra package.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

SAMPLE_EVERY_S = 0.2


PAGE = os.sysconf("SC_PAGE_SIZE")


TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, int, float] | None:
    """(parent pid, resident pages, CPU seconds) of a live process, from ``/proc/<pid>/stat``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    # ppid, rss, utime + stime (fields 4, 24, 14 and 15 of proc(5))
    return int(fields[1]), int(fields[21]), (int(fields[11]) + int(fields[12])) / TICK


def tree(pid: int) -> dict[int, tuple[int, float]]:
    """``{pid: (resident bytes, CPU seconds)}`` of process ``pid`` and all its descendants."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(int(p))) is not None}
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in stats.items():
        children.setdefault(parent, []).append(child)
    out, todo = {}, [pid] if pid in stats else []
    while todo:
        p = todo.pop()
        out[p] = (stats[p][1] * PAGE, stats[p][2])
        todo.extend(children.get(p, []))
    return out


def tree_rss(pid: int) -> int:
    """Bytes resident in process ``pid`` and all its descendants (0 once it is gone)."""
    return sum(rss for rss, _ in tree(pid).values())


def cpu_between(snapshots: list[tuple[float, dict[int, float]]], start: float, end: float) -> float:
    """CPU seconds the process tree spent between epoch times ``start`` and ``end``.

    ``snapshots``: (epoch time, {pid: CPU seconds so far}). A process first seen after
    ``start`` counts from 0; one gone before ``end`` counts up to its last sample.
    """
    before = next((cpu for t, cpu in reversed(snapshots) if t <= start), {})
    last: dict[int, float] = {}
    for t, cpu in snapshots:
        if t > end:
            break
        last.update(cpu)
    return sum(c - before.get(p, 0.0) for p, c in last.items())


class PeakSampler:
    """Samples ``tree_rss(pid)`` in a background thread until stopped; keeps the peak."""

    def __init__(self, pid: int, every_s: float = SAMPLE_EVERY_S) -> None:
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self.snapshots: list[tuple[float, dict[int, float]]] = []  # (epoch time, {pid: CPU s})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now, procs = time.time(), tree(self.pid)
            self.peak = max(self.peak, sum(rss for rss, _ in procs.values()))
            self.snapshots.append((now, {p: cpu for p, (_, cpu) in procs.items()}))
            self._stop.wait(self.every_s)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_child(
    cmd: list[str], result_path: Path, timeout_s: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``cmd`` (which writes its JSON result to ``result_path``); add its peak memory.

    Raises:
        RuntimeError: the child failed or wrote no result; the message has its output's tail.
    """
    result_path.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    with PeakSampler(proc.pid) as sampler:
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    if proc.returncode != 0 or not result_path.is_file():
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{output[-4000:]}")
    result = json.loads(result_path.read_text())
    result["peak_rss_mb"] = sampler.peak / 2**20
    if "rounds_epoch" in result:  # CPU seconds of the whole tree during the rounds
        result["rounds_cpu_s"] = cpu_between(sampler.snapshots, *result["rounds_epoch"])
    result["process_s"] = time.perf_counter() - start
    return result
