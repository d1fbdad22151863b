"""SIGINT and SIGTERM stop a run cleanly: at the next safe point, or at once on a second signal.

``ray job stop`` and KubeRay deleting a job send SIGTERM; Ctrl-C sends SIGINT. Left to Python
and Ray, the first prints a traceback and the second aborts the driver (exit 134) mid-write.
:class:`StopSignals` replaces both handlers while a run's rounds execute (installed after
``ray.init``, which sets its own, and restored afterwards). The first signal only sets a flag:
the round loop calls :meth:`check` between rounds, where every table and checkpoint of the
finished round is on disk, and that raises :class:`~dp2fl_ray.errors.RunInterrupted`. A second
signal raises it from the handler at once, wherever the driver is; the partial round is
dropped on resume as a killed one would be.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from dp2fl_ray.errors import RunInterrupted

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("dp2fl_ray")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """``with StopSignals() as stop:`` ... ``stop.check(round)`` between rounds.

    Outside the main thread (a Tune trial's function runs in a thread) signals cannot be
    handled there; the context is then inert and the process's own handlers apply.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self, after_round: int) -> None:
        """Raise ``RunInterrupted`` if a signal came (call where stopping loses nothing)."""
        if self.signum is not None:
            raise RunInterrupted(self.signum, f"{signal.Signals(self.signum).name} after round {after_round}")

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            raise RunInterrupted(signum, f"a second signal ({name}) during a round")
        self.signum = signum
        log.warning("%s: stopping after this round (send it again to stop now)", name)

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
