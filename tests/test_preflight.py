"""Finding 5: every data and model error fails before Ray, in < 5 s, in one line, with no run directory.

All cases run in ONE fresh CLI process (``cli.main`` per case, timed there in CPU seconds, the
first one's imports included), so the test also sees that Ray was never imported, let alone
initialised.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dp2fl_ray.config import load_config
from dp2fl_ray.errors import ConfigError
from dp2fl_ray.preflight import check_run_name, preflight

ROOT = Path(__file__).resolve().parents[1]
DRIVER = """
import contextlib, io, json, sys, time
from dp2fl_ray import cli
results = []
for name, argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    results.append({"name": name, "rc": rc, "s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                    "stderr": err.getvalue()})
print(json.dumps({"results": results, "ray_imported": "ray" in sys.modules}))
"""


def _table(folder: Path, train: str, test: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text(train)
    (folder / "test.csv").write_text(test)
    return folder


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[str], str]]:
    """name -> (--set overrides, a phrase the one line must hold)."""
    d = tmp_path_factory.mktemp("inputs")
    rows = "".join(f"utterance {i},{'ab'[i % 2]}\n" for i in range(40))
    ok_test = "text,label\n" + rows
    nolabel = _table(d / "nolabel", "text,intent\nhi,a\n", "text,intent\nhi,a\n")
    empty = _table(d / "empty", "text,label\n" + rows, "")
    badbytes = d / "badbytes"
    _table(badbytes, "text,label\n" + rows, ok_test)
    (badbytes / "train.csv").write_bytes(b"text,label\nhello,a\nbye,b\nca\xff\xfet,a\n")
    testonly = _table(d / "testonly", "text,label\n" + rows, ok_test + "new one,c\n")
    few = _table(d / "few", "text,label\nx,a\ny,b\nz,a\n", "text,label\nx,a\ny,b\nz,a\n")
    nomodel = d / "nomodel"
    nomodel.mkdir()
    (nomodel / "notes.txt").write_text("no weights here")
    csv = ["data.source=csv", "model.backbone=bert"]
    return {
        "missing data.path": ([*csv, f"data.path={d / 'nope'}"], "does not exist"),
        "missing model.path": ([f"model.path={d / 'nope-model'}"], "does not exist"),
        "no label column": ([*csv, f"data.path={nolabel}"], "label"),
        "empty test.csv": ([*csv, f"data.path={empty}"], "test.csv"),
        "non-UTF-8 bytes": ([*csv, f"data.path={badbytes}"], "row 3"),
        "label only in test": ([*csv, f"data.path={testonly}"], "'c'"),
        "bert on digits": (["model.backbone=bert"], "model.backbone"),
        "3 rows for 10 clients": ([*csv, f"data.path={few}", "federation.population=10"], "too few samples"),
        "model.path without weights": ([f"model.path={nomodel}"], "no weights"),
        "name outside --output": (["--name=../escape"], "--name"),
    }


def test_every_data_and_model_error_is_one_line_in_under_5_s_before_ray_with_no_run_directory(
    cases: dict[str, tuple[list[str], str]], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argvs = []
    for name, (sets, _) in cases.items():
        flags = [s for s in sets if s.startswith("--")]
        argv = ["run", "experiments/quickstart.yaml", "--output", str(out), "--quiet", *flags]
        argvs.append((name, argv + [a for s in sets if not s.startswith("--") for a in ("--set", s)]))
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argvs)], check=False, capture_output=True,
                          text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    for result in report["results"]:
        lines = result["stderr"].strip().splitlines()
        phrase = cases[result["name"]][1]
        assert result["rc"] == 2, result
        assert len(lines) == 1 and lines[0].startswith("dp2fl-ray: error: ") and phrase in lines[0], result
        # CPU seconds, first case's torch import included: the bound the issue sets ("< 5 s on 2 cores")
        # without the wall-clock noise of a machine shared by other jobs; wall time only bounded loosely.
        assert result["cpu_s"] < 5 and result["s"] < 60, result
    assert report["ray_imported"] is False  # so never initialised
    assert not out.exists() and not (tmp_path / "escape").exists()


def test_a_vit_without_model_name_gets_the_tiny_architecture_when_model_path_is_null() -> None:
    config = load_config(ROOT / "experiments" / "quickstart.yaml", ["model.backbone=vit"])
    assert config.model.name == "vit_base_patch16_224"
    assert preflight(config).modality == "image"
    named = load_config(None, ["model.backbone=vit", "model.name=vit_small_patch16_224"])
    assert named.model.name == "vit_small_patch16_224"


@pytest.mark.parametrize("name", ["../x", "/abs/path", "a/b", "..", ".", ""])
def test_a_run_name_must_be_a_plain_folder_name(name: str) -> None:
    with pytest.raises(ConfigError, match="--name"):
        check_run_name(name)
    check_run_name("quickstart-2024.01_a")
