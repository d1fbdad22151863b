"""One hierarchy for every error a user can act on.

Each error says the value it got, what was expected and how to fix it. Code never uses
``assert`` on user input; it raises one of these.
"""

from __future__ import annotations

from typing import Any


class Dp2flError(Exception):
    """Base class of every error dp2fl-ray raises on purpose.

    ``exit_code`` is what the CLI exits with: 2 for bad input (config, data, model,
    checkpoint: nothing was run, fix the input), 1 for a run that started and failed.
    """

    exit_code = 2


class ConfigError(Dp2flError, ValueError):
    """A config field has an unknown name, a wrong type or an out-of-range value."""

    def __init__(self, field: str, value: Any, expected: str, hint: str = "") -> None:
        self.field = field
        self.value = value
        self.expected = expected
        message = f"config field '{field}': got {value!r}; expected {expected}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class DataError(Dp2flError):
    """A data source is missing, corrupt or inconsistent."""


class ModelError(Dp2flError):
    """A backbone cannot be built or loaded."""


class CheckpointError(Dp2flError):
    """A checkpoint is missing, truncated or does not match the config."""


class RunError(Dp2flError):
    """A simulation could not go on (numerical fault, too many failures...)."""

    exit_code = 1


class RunLockedError(Dp2flError):
    """The run directory is locked by another live run or resume (``runtime/run_lock.py``)."""


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run (``runtime/stop_signals.py``).

    A ``KeyboardInterrupt``, not an ``Exception``: no ``except Exception`` on the way out
    (retries, cleanup) may swallow it. The CLI exits ``128 + signum`` (130, 143), as shells do.
    """

    def __init__(self, signum: int, message: str) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(message)


class StoreError(CheckpointError):
    """A client store's object is missing, corrupt, unreachable or from another run.

    A subclass of ``CheckpointError`` (the store is the run's client checkpoint), so code
    that handled store faults as checkpoint faults keeps working.
    """
