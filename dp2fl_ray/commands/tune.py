"""``dp2fl-ray tune SWEEP``: a Ray Tune sweep of experiments (see ``dp2fl_ray/tune.py``)."""

from __future__ import annotations

import argparse

SHOWN = ("trial_id", "status", "rounds_completed", "personalized_acc", "global_acc", "train_loss")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", nargs="?", help="sweep YAML: base + space (omit with --resume)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                        help="override a field of the base experiment (repeatable), "
                             "e.g. --set federation.rounds=4")  # fmt: skip
    parser.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep (its directory)")
    parser.add_argument(
        "--name", help="sweep directory name (default: the YAML's name, else <file>-<UTC time>)"
    )
    parser.add_argument(
        "--output", help="parent directory of sweeps (default: the YAML's output, else results/sweeps)"
    )
    parser.add_argument("--quiet", action="store_true", help="no Tune progress tables")


def cli_main(args: argparse.Namespace) -> int:
    from dp2fl_ray.config import config_from_dict
    from dp2fl_ray.errors import ConfigError
    from dp2fl_ray.preflight import check_run_name, preflight
    from dp2fl_ray.tune import load_sweep

    verbose = 0 if args.quiet else 1
    if args.resume:
        if args.sweep or args.overrides or args.name or args.output:
            raise ConfigError(
                "--resume",
                args.resume,
                "no SWEEP, --set, --name or --output",
                "a resumed sweep keeps its spec",
            )
        from dp2fl_ray.tune import resume_sweep

        sweep_dir = args.resume
        trials = resume_sweep(sweep_dir, verbose=verbose)
    else:
        if not args.sweep:
            raise ConfigError("SWEEP", None, "a sweep YAML", "e.g. dp2fl-ray tune experiments/sweep.yaml")
        check_run_name(args.name)
        spec = load_sweep(
            args.sweep, args.overrides, name=args.name, output=args.output
        )  # fails before Ray starts
        preflight(config_from_dict(spec.base))  # the base's data and model, before Ray and any directory
        from dp2fl_ray.tune import run_sweep

        sweep_dir = str(spec.sweep_dir)
        trials = run_sweep(spec, verbose=verbose)
    columns = [c for c in SHOWN if c in trials] + [c for c in trials.columns if "." in c]
    print(trials[columns].to_string(index=False))
    print(f"sweep: {sweep_dir} (trials.parquet, rounds.parquet, best_config.yaml)")
    unfinished = trials["status"].isin(["unfinished", "failed"])
    if unfinished.any():
        print(
            f"{int(unfinished.sum())} trial(s) unfinished or failed; "
            f"go on with: dp2fl-ray tune --resume {sweep_dir}"
        )
        return 1
    return 0
