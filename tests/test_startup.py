"""The first contact: what `import headstart` and `--help` load, `python -m headstart`, and an installed wheel.

These check which modules a fresh interpreter imported, not how long it took (timings are in
benchmarks/startup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from .conftest import ROOT

HEAVY = ("torch", "torchvision", "timm", "transformers", "lightning", "torchmetrics", "sklearn", "scipy", "matplotlib",
         "pandas", "safetensors", "onnxruntime", "peft")


def loaded_after(code: str, cwd: Path | None = None) -> set[str]:
    """Run ``code`` in a fresh interpreter; the heavy modules it ended up importing."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, timeout=300,
                         env={**os.environ, "HEADSTART_QUIET": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    return set(json.loads(res.stdout.strip().splitlines()[-1]))


def cli(*argv: str) -> str:
    return ("import sys\nfrom headstart.cli import app\nsys.argv = ['headstart', " + ", ".join(map(repr, argv)) + "]\n"
            "try:\n    app()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n")


def test_import_headstart_loads_nothing_heavy() -> None:
    assert loaded_after("import headstart") == set()
    # reading a configuration or listing what exists needs no model code either
    assert loaded_after("import headstart\nheadstart.FitConfig(data='x.csv')\nheadstart.list_strategies()\n"
                        "headstart.list_backbones()") == set()


@pytest.mark.parametrize("argv", [("--help",), ("fit", "--help"), ("distill", "--help"), ("compare", "--help"),
                                  ("rank", "--help"), ("cache", "--help"), ("--version",), ("strategies",),
                                  ("backbones",)])
def test_help_and_listings_load_no_torch(argv: tuple[str, ...]) -> None:
    assert loaded_after(cli(*argv)) == set()


def test_a_linear_text_fit_loads_neither_lightning_nor_image_code(tmp_path: Path) -> None:
    loaded = loaded_after("import headstart\nheadstart.fit('demo-text', model='minilm', strategy='linear', "
                          "out='run', cv_folds=2, cache_dir='cache')", cwd=tmp_path)
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert "torch" in loaded and "transformers" in loaded  # what it does use
    # (transformers itself imports torchvision when it is installed: modeling_utils -> image_utils)
    assert not loaded & {"timm", "lightning", "torchmetrics"}, loaded
    # headstart's own text path imports no torchvision: a text backbone without transformers shows it
    loaded = loaded_after("import headstart\nheadstart.fit('demo-text', model='scratch:bow', strategy='linear', "
                          "out='run2', cv_folds=2, cache_dir='cache')", cwd=tmp_path)
    assert "sklearn" in loaded and not loaded & {"torchvision", "timm", "transformers", "lightning", "torchmetrics"}, loaded


def test_python_dash_m_and_version() -> None:
    from headstart import __version__

    res = subprocess.run([sys.executable, "-m", "headstart", "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == f"headstart {__version__}", res.stderr
    res = subprocess.run([sys.executable, "-m", "headstart", "fitt"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Did you mean 'fit'?" in res.stderr


@pytest.mark.slow
def test_the_wheel_installs_a_working_console_script(tmp_path: Path) -> None:
    """Build the wheel, install it (without dependencies) into a fresh venv that sees this one's packages, and run
    the console script outside the clone: the package, its data file and its entry point are all in the wheel."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, timeout=600, capture_output=True)
    wheel = next(wheels.glob("headstart-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    site = next((env_dir / "lib").glob("python*/site-packages"))
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "torch").is_dir())
    (site / "deps.pth").write_text(str(deps) + "\n")  # the dependencies, not the editable install of the clone
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "--no-deps",
                    "-q", str(wheel)], check=True, timeout=600, capture_output=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    res = subprocess.run([str(env_dir / "bin" / "headstart"), "--version"], capture_output=True, text=True, cwd=outside,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("headstart "), res.stderr
    probe = ("import headstart, headstart.data as d; print(headstart.__file__); print(d.demo_table_path().is_file())")
    res = subprocess.run([str(env_dir / "bin" / "python"), "-c", probe], capture_output=True, text=True, cwd=outside, timeout=120)
    where, has_table = res.stdout.split()
    assert Path(where).is_relative_to(env_dir) and has_table == "True", res.stdout + res.stderr
    res = subprocess.run([str(env_dir / "bin" / "python"), "-m", "headstart", "fit", "--help"], capture_output=True,
                         text=True, cwd=outside, timeout=120)
    assert res.returncode == 0 and "--strategy" in res.stdout
