"""``dp2fl-ray diff RUN_A RUN_B [--ignore COLUMN ...] [--atol X]``: do two runs have the same
numbers? Exit 0 when every metrics table agrees (wall-clock columns left out), 1 when any
differs, 2 for a path that is not a run, as ``diff`` does."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="a run directory written by `dp2fl-ray run`")
    parser.add_argument("run_b", metavar="RUN_B", help="the run directory to compare it with")
    parser.add_argument("--ignore", metavar="COLUMN", action="append", default=[],
                        help="leave this column out as well (repeatable), e.g. moved_bytes")  # fmt: skip
    parser.add_argument("--atol", type=float, default=0.0,
                        help="numbers within this absolute difference count as equal "
                             "(default 0: bit for bit)")  # fmt: skip


def cli_main(args: argparse.Namespace) -> int:
    from dp2fl_ray.report.diff import diff_runs, format_diff  # pandas, matplotlib: only here

    diff = diff_runs(args.run_a, args.run_b, ignore=args.ignore, atol=args.atol)
    print(format_diff(diff))
    return 0 if diff.identical else 1
