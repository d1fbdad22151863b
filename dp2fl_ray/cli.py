"""``dp2fl-ray``: the command line. Every command calls the same ``run_experiment(config)``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from dp2fl_ray.errors import Dp2flError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dp2fl-ray", description=__doc__)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one experiment (local Ray unless --address or RAY_ADDRESS)")
    run.add_argument("config", help="experiment YAML")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                     help="override a config field (repeatable), e.g. --set train.lr=0.01")  # fmt: skip
    run.add_argument("--address", help="Ray cluster address (overrides runtime.address)")
    run.add_argument("--output", help="directory for run directories (overrides output.dir)")
    run.add_argument("--name", help="run directory name (default: <config name>-<UTC timestamp>)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            return _run(args)
    except Dp2flError as exc:
        print(f"dp2fl-ray: error: {exc}", file=sys.stderr)
        return 2
    return 1


def _run(args: argparse.Namespace) -> int:
    from dp2fl_ray.config import load_config

    overrides = list(args.overrides)
    if args.address:
        overrides.append(f"runtime.address={args.address}")
    if args.output:
        overrides.append(f"output.dir={args.output}")
    config = load_config(args.config, overrides)  # fails before Ray starts
    from dp2fl_ray.runtime.simulation import run_experiment

    summary = run_experiment(config, run_name=args.name, progress=not args.quiet)
    print(json.dumps({k: summary[k] for k in _HEADLINE if k in summary}, indent=2))
    return 0


_HEADLINE = (
    "run_dir", "status", "rounds_completed", "personalized_acc", "personalized_micro_f1", "global_acc",
    "zero_shot_acc", "majority_acc", "client_updates_per_s", "wall_s",
)  # fmt: skip

if __name__ == "__main__":
    sys.exit(main())
