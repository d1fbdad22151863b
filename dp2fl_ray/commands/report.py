"""``dp2fl-ray report DIR [DIR ...] [--out DIR] [--baseline METHOD]``: tables and plots of finished
runs, or of a sweep (a directory written by ``dp2fl-ray tune``: mean ± 95% CI over seeds)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR",
        help="run directory written by `dp2fl-ray run`, or one sweep directory written by `dp2fl-ray tune`",
    )  # fmt: skip
    parser.add_argument("--out", metavar="DIR",
                        help="write one report comparing all runs here "
                             "(default: one report in each <RUN_DIR>/report/)")  # fmt: skip
    parser.add_argument("--baseline", metavar="METHOD",
                        help="sweeps: the method the others are compared against "
                             "(default: the sweep's first)")  # fmt: skip


def cli_main(args: argparse.Namespace) -> int:
    from dp2fl_ray.errors import ConfigError
    from dp2fl_ray.report import (
        is_sweep_dir,
        write_report,
        write_sweep_report,
    )  # matplotlib, pandas: only here

    sweeps = [d for d in args.run_dirs if is_sweep_dir(d)]
    if sweeps and len(args.run_dirs) > 1:
        raise ConfigError("RUN_DIR", args.run_dirs, "run directories, or a single sweep directory",
                          f"{sweeps[0]} is a sweep: report it alone")  # fmt: skip
    if args.baseline and not sweeps:
        raise ConfigError("--baseline", args.baseline, "a sweep directory to compare methods in",
                          "--baseline applies to sweep reports only")  # fmt: skip
    if sweeps:
        paths = write_sweep_report(sweeps[0], out_dir=args.out, baseline=args.baseline)
    else:
        paths = write_report(args.run_dirs, out_dir=args.out)
    for path in paths:
        print(path)
    return 0
