"""One hierarchy for every error a user can act on.

Each error says the value it got, what was expected and how to fix it. Code never uses
``assert`` on user input; it raises one of these.
"""

from __future__ import annotations

from typing import Any


class Dp2flError(Exception):
    """Base class of every error dp2fl-ray raises on purpose."""


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


class StoreError(CheckpointError):
    """A client store's object is missing, corrupt, unreachable or from another run.

    A subclass of ``CheckpointError`` (the store is the run's client checkpoint), so code
    that handled store faults as checkpoint faults keeps working.
    """
