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
import sys
from collections.abc import Sequence

from dp2fl_ray.errors import Dp2flError

COMMANDS = {
    "run": ("dp2fl_ray.commands.run", "run one experiment (local Ray unless --address or RAY_ADDRESS)"),
    "tune": ("dp2fl_ray.commands.tune", "run a Ray Tune sweep of experiments (SWEEP.yaml), or --resume one"),
    "submit": ("dp2fl_ray.commands.submit", "submit one experiment as a Ray job and follow its logs"),
    "report": (
        "dp2fl_ray.commands.report",
        "write report.md and PNG plots of one run, or compare several runs into --out",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dp2fl-ray", description="Simulate dual-prompt personalised FL on Ray."
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        importlib.import_module(module).add_arguments(sub.add_parser(name, help=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ["DP2FL_LOG_LEVEL"] = args.log_level  # workers inherit DP2FL_* variables
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).cli_main(args))
    except Dp2flError as exc:
        print(f"dp2fl-ray: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
