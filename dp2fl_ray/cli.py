"""``dp2fl-ray``: the command line. ``run``, ``tune`` and ``submit`` all end in ``run_experiment(config)``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``cli_main(args) -> int``; modules import Ray and torch only inside ``cli_main``, so a bad
config fails fast and ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence

from dp2fl_ray.errors import Dp2flError, RunInterrupted

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
COMMANDS = {
    "run": ("dp2fl_ray.commands.run", "run one experiment (local Ray unless --address or RAY_ADDRESS)"),
    "tune": ("dp2fl_ray.commands.tune", "run a Ray Tune sweep of experiments (SWEEP.yaml), or --resume one"),
    "submit": ("dp2fl_ray.commands.submit", "submit one experiment as a Ray job and follow its logs"),
    "report": (
        "dp2fl_ray.commands.report",
        "write report.md and PNG plots of one run, or compare several runs into --out",
    ),
    "diff": (
        "dp2fl_ray.commands.diff",
        "whether two runs have the same numbers, table by table (exit 1 if not)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dp2fl-ray", description="Simulate dual-prompt personalised FL on Ray."
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error")  # fmt: skip
        importlib.import_module(module).add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; every error reaches the terminal one way.

    A ``Dp2flError`` prints ``dp2fl-ray: error: <message>`` and exits with its ``exit_code``
    (2 bad input, 1 a failed run); any other exception prints the same one line and exits 1.
    ``--debug`` adds the traceback. SIGINT/SIGTERM during a run exit 130/143 with how to resume.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ["DP2FL_LOG_LEVEL"] = args.log_level  # workers inherit DP2FL_* variables
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).cli_main(args))
    except RunInterrupted as exc:
        _report(args, f"dp2fl-ray: stopped by {exc}", exc)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C outside a run's rounds (start-up, shutdown)
        _report(args, "dp2fl-ray: interrupted", exc)
        return 130
    except Dp2flError as exc:
        _report(args, f"dp2fl-ray: error: {exc}", exc)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 -- a bug or a crashed cluster: one line, traceback with --debug
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        _report(args, f"dp2fl-ray: error: {type(exc).__name__}: {first_line}"
                " (run with --debug for the traceback)", exc)  # fmt: skip
        return 1


def _report(args: argparse.Namespace, line: str, exc: BaseException) -> None:
    if getattr(args, "debug", False):
        traceback.print_exception(exc)
    print(_ANSI.sub("", line), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
