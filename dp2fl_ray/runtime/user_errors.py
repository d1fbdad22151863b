"""A worker's ``DataError``/``ModelError`` reaches the user as its own one line, not a Ray dump.

Workers load data and models again (a cluster's files may differ from those preflight saw).
Ray wraps what they raise: a method's error as ``RayTaskError(DataError)`` (also an instance of
the cause's class, with ``.cause``), an ``__init__``'s as ``ActorDiedError``, whose text
embeds the creation task's traceback and whose cause object is not always kept. So
:func:`user_error` looks for the cause object first and, failing that, for the last
``DataError: ...`` line of the text, and rebuilds it from that message only.
"""

from __future__ import annotations

import re

from dp2fl_ray.errors import CheckpointError, DataError, Dp2flError, ModelError

_BY_NAME: dict[str, type[Dp2flError]] = {"DataError": DataError, "ModelError": ModelError,
                                          "CheckpointError": CheckpointError}  # fmt: skip
_LINE = re.compile(r"^(?:[\w.]*\.)?(DataError|ModelError|CheckpointError): (.+)$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Text without terminal colour codes (Ray colours its error text)."""
    return _ANSI.sub("", text)


def user_error(exc: BaseException) -> Dp2flError | None:
    """The ``Dp2flError`` a worker raised inside ``exc`` (a Ray error), or None if there is none."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        cause = getattr(node, "cause", None)  # RayTaskError keeps the worker's exception object
        if isinstance(cause, Dp2flError):
            return cause
        node = cause if isinstance(cause, BaseException) else node.__cause__
    matches = _LINE.findall(strip_ansi(str(exc)))
    if matches:
        name, message = matches[-1]
        return _BY_NAME[name](message.strip())
    return None
