"""A built wheel (not the checkout) carries the package and its experiment files.

The wheel is built from a copy of the sources (so the checkout gets no build/ or egg-info),
unpacked into a throwaway folder and imported from there in a fresh interpreter whose working
directory is outside any checkout: what ``pip install storylib-*.whl`` gives a user.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "storylib", "params")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--wheel-dir", str(work / "dist"), str(source)],
                   check=True, capture_output=True, text=True)
    (built,) = (work / "dist").glob("storylib-*.whl")
    return built


def test_wheel_holds_every_module_and_every_params_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "storylib").rglob("*.py")}
    assert modules - names == set(), "a subpackage is missing from [tool.setuptools] packages"
    params = {"storylib/params/" + p.relative_to(ROOT / "params").as_posix() for p in (ROOT / "params").rglob("*.yaml")}
    assert params and params <= names


def test_every_experiment_loads_from_the_installed_wheel_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)          # what pip install puts in site-packages
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import json, storylib, storylib.config as c\n"
        "names = c.available_experiments()\n"
        "loaded = {f'{n}/{s}': c.load_experiment_config(n, s).train.epochs for n in names for s in c.SCALES}\n"
        "print(json.dumps({'file': storylib.__file__, 'params': str(c.PARAMS_DIR), 'names': names, 'loaded': loaded}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, capture_output=True, text=True,
                            env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["file"]).is_relative_to(site)
    assert Path(report["params"]) == site / "storylib" / "params"
    assert report["names"] == sorted(p.stem for p in (ROOT / "params").glob("*.yaml"))
    assert len(report["loaded"]) == len(report["names"]) * 3
    assert report["loaded"]["baseline/smoke"] == 1          # the smoke overlay was applied


def test_a_checkout_reads_the_top_level_params_folder():
    from storylib import config

    assert config.PARAMS_DIR == ROOT / "params"
