"""Which class ``algorithm.name`` means: a built-in name, or ``package.module:ClassName``.

Built-ins are listed by module path and imported on first use, so the config, the driver
and every worker resolve a name the same way, and a user's class is found by importing its
module (on ``PYTHONPATH``, or shipped to a cluster with ``runtime_env.py_modules``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from dp2fl_ray.errors import ConfigError

if TYPE_CHECKING:
    from dp2fl_ray.algorithms.base import Algorithm

BUILTIN: dict[str, str] = {
    "dp2fl": "dp2fl_ray.algorithms.dp2fl:DP2FL",
    "local": "dp2fl_ray.algorithms.local:Local",
    "promptfl": "dp2fl_ray.algorithms.promptfl:PromptFL",
    "fedprox": "dp2fl_ray.algorithms.fedprox:FedProx",
    "pfedme": "dp2fl_ray.algorithms.pfedme:PFedMe",
    "fedpgp": "dp2fl_ray.algorithms.fedpgp:FedPGP",
    "fedotp": "dp2fl_ray.algorithms.fedotp:FedOTP",
}


def builtin_names() -> list[str]:
    return list(BUILTIN)


def resolve_algorithm(name: str) -> type[Algorithm]:
    """The ``Algorithm`` subclass for ``name``.

    Raises:
        ConfigError: an unknown built-in, a module that does not import, a missing class, or
            a class that is not an ``Algorithm``; each names ``algorithm.name``.
    """
    from dp2fl_ray.algorithms.base import Algorithm

    target = BUILTIN.get(name, name)
    if ":" not in target:
        raise ConfigError(
            "algorithm.name", name, "one of " + ", ".join(BUILTIN) + ", or package.module:ClassName"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            "algorithm.name", name, "an importable package.module:ClassName",
            f"cannot import {module_name!r} ({exc}); put its folder on PYTHONPATH "
            "(or in runtime_env.py_modules on a cluster)",
        ) from exc  # fmt: skip
    kind = getattr(module, class_name, None)
    if not (isinstance(kind, type) and issubclass(kind, Algorithm)):
        raise ConfigError(
            "algorithm.name", name, "a subclass of dp2fl_ray.algorithms.base.Algorithm",
            f"{module_name} has no such class {class_name!r}" if kind is None else f"{class_name} is not one",
        )  # fmt: skip
    return kind


def build_algorithm(config: object) -> Algorithm:
    """The configured algorithm with its options (``config`` is an ``AlgorithmConfig``)."""
    kind = resolve_algorithm(config.name)  # type: ignore[attr-defined]
    return kind(config.options)  # type: ignore[attr-defined]
