"""The command line: bad configs fail before Ray starts, with the field named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dp2fl_ray.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_unknown_field_fails_fast_naming_it_and_the_nearest() -> None:
    done = _cli("run", "experiments/quickstart.yaml", "--set", "train.lrr=0.1")
    assert done.returncode == 2
    assert "train.lrr" in done.stderr and "train.lr" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_config_never_imports_ray() -> None:
    code = (
        "import sys; from dp2fl_ray.cli import main; "
        "rc = main(['run', 'experiments/quickstart.yaml', '--set', 'train.lr=-1']); "
        "print(rc, 'ray' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert done.stdout.split() == ["2", "False"]
    assert "train.lr" in done.stderr


def test_out_of_range_value_fails_fast() -> None:
    done = _cli("run", "experiments/quickstart.yaml", "--set", "federation.cohort=11")
    assert done.returncode == 2 and "federation.cohort" in done.stderr


def test_missing_config_file_is_named() -> None:
    done = _cli("run", "experiments/nope.yaml")
    assert done.returncode == 2 and "nope.yaml" in done.stderr


def test_quickstart_config_is_valid() -> None:
    from dp2fl_ray.config import load_config

    config = load_config(ROOT / "experiments" / "quickstart.yaml")
    assert config.data.source == "digits" and config.model.path is None and config.algorithm.name == "dp2fl"


def test_debug_adds_the_traceback_to_the_one_line_error() -> None:
    args = (
        "experiments/quickstart.yaml",
        "--set",
        "data.source=csv",
        "--set",
        "data.path=/nonexistent-dp2fl",
    )
    plain = _cli("run", *args)
    debug = _cli("run", *args, "--debug")
    assert plain.returncode == debug.returncode == 2
    assert plain.stderr.strip().startswith("dp2fl-ray: error: ") and "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr and debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()
