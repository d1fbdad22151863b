"""``dp2fl-ray report RUN_DIR [RUN_DIR ...] [--out DIR]``: tables and plots of finished runs."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run directory written by `dp2fl-ray run`"
    )
    parser.add_argument("--out", metavar="DIR",
                        help="write one report comparing all runs here (default: one report in each <RUN_DIR>/report/)")  # fmt: skip


def cli_main(args: argparse.Namespace) -> int:
    from dp2fl_ray.report import write_report  # matplotlib and pandas: only when a report is made

    for path in write_report(args.run_dirs, out_dir=args.out):
        print(path)
    return 0
