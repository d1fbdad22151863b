"""``dp2fl-ray run CONFIG``: one experiment, on local Ray or a cluster."""

from __future__ import annotations

import argparse
import json


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """CONFIG and repeatable --set, shared by run, submit and tune."""
    parser.add_argument("config", help="experiment YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                        help="override a config field (repeatable), e.g. --set train.lr=0.01")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="experiment YAML (omit with --resume)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                        help="override a config field (repeatable), e.g. --set train.lr=0.01")  # fmt: skip
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    parser.add_argument("--address", help="Ray cluster address (overrides runtime.address)")
    parser.add_argument("--output", help="directory for run directories (overrides output.dir)")
    parser.add_argument("--name", help="run directory name (default: <config name>-<UTC timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


HEADLINE = (
    "run_dir", "status", "rounds_completed", "personalized_acc", "personalized_micro_f1", "global_acc",
    "zero_shot_acc", "majority_acc", "client_updates_per_s", "wall_s",
)  # fmt: skip


def cli_main(args: argparse.Namespace) -> int:
    from dp2fl_ray.config import load_config
    from dp2fl_ray.errors import ConfigError
    from dp2fl_ray.preflight import check_run_name, preflight

    if args.resume:
        if args.config or args.overrides:
            raise ConfigError(
                "--resume", args.resume, "no CONFIG and no --set", "a resumed run keeps its saved config"
            )
        from dp2fl_ray.runtime.simulation import resume_experiment

        summary = resume_experiment(args.resume, progress=not args.quiet)
        print(json.dumps({k: summary[k] for k in HEADLINE if k in summary}, indent=2))
        return 0
    if not args.config:
        raise ConfigError(
            "CONFIG", None, "an experiment YAML", "e.g. dp2fl-ray run experiments/quickstart.yaml"
        )

    overrides = list(args.overrides)
    if args.address:
        overrides.append(f"runtime.address={args.address}")
    if args.output:
        overrides.append(f"output.dir={args.output}")
    config = load_config(args.config, overrides)  # fails before Ray starts
    check_run_name(args.name)
    preflight(config)  # data and model, before Ray is even imported (run_experiment checks again)
    from dp2fl_ray.runtime.simulation import run_experiment

    summary = run_experiment(config, run_name=args.name, progress=not args.quiet)
    print(json.dumps({k: summary[k] for k in HEADLINE if k in summary}, indent=2))
    return 0
