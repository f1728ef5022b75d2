"""The notebooks' install cell (storylib/colab.py), run as Colab would run it.

Each case executes the cell in a fresh interpreter without site-packages (``-S -E``: the
installed storylib is invisible, as on a fresh Colab machine), in a temporary working folder,
with ``subprocess.check_call`` replaced by a recorder, and reads back what pip was asked to do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from storylib import colab

ROOT = Path(__file__).resolve().parent.parent
ADDRESS = "https://example.org/someone/storylib"
PRELUDE = """\
import json, subprocess, sys
calls = []
subprocess.check_call = lambda command, **kwargs: calls.append(command[3:])
try:
    exec(compile(open(sys.argv[1]).read(), "cell", "exec"), {"__name__": "__main__"})
except Exception as error:
    print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
else:
    print(json.dumps({"pip": calls}))
"""


def run_cell(cwd: Path, tmp_path: Path, repository: str = ADDRESS) -> dict:
    cell = tmp_path / "cell.py"
    cell.write_text(colab.cell_source(repository))
    result = subprocess.run([sys.executable, "-S", "-E", "-c", PRELUDE, str(cell)], cwd=cwd,
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_checkout(folder: Path) -> Path:
    (folder / "storylib").mkdir(parents=True)
    (folder / "storylib" / "__init__.py").write_text("")
    (folder / "notebooks").mkdir()
    (folder / "pyproject.toml").write_text('[project]\nname = "storylib"\n')
    return folder


def test_a_stray_storylib_folder_does_not_count_as_installed(tmp_path):
    work = tmp_path / "content"
    (work / "storylib").mkdir(parents=True)              # e.g. a download without pyproject.toml
    (work / "storylib" / "notes.txt").write_text("")
    assert run_cell(work, tmp_path) == {"pip": [["install", "--quiet", f"git+{ADDRESS}"]]}


def test_a_clone_in_the_working_folder_is_installed(tmp_path):
    work = tmp_path / "content"
    make_checkout(work / "storylib")                     # `!git clone ...` in Colab's /content
    assert run_cell(work, tmp_path) == {"pip": [["install", "--quiet", str(work / "storylib")]]}


def test_a_notebook_inside_a_checkout_installs_that_checkout(tmp_path):
    checkout = make_checkout(tmp_path / "checkout")
    assert run_cell(checkout / "notebooks", tmp_path) == {"pip": [["install", "--quiet", str(checkout)]]}


def test_neither_installs_from_the_repository(tmp_path):
    work = tmp_path / "content"
    work.mkdir()
    assert run_cell(work, tmp_path) == {"pip": [["install", "--quiet", f"git+{ADDRESS}"]]}


def test_without_an_address_it_stops_with_a_message_instead_of_guessing(tmp_path):
    work = tmp_path / "content"
    work.mkdir()
    outcome = run_cell(work, tmp_path, repository="")
    assert outcome["error"].startswith("RuntimeError: storylib is not installed")
    assert "git clone" in outcome["error"]


def test_an_importable_storylib_is_left_alone(tmp_path):
    work = tmp_path / "content"
    package = work / "storylib"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "experiment.py").write_text("")
    assert run_cell(work, tmp_path) == {"pip": []}


@pytest.mark.parametrize("name", ["01_data_exploration", "02_experiment", "03_comparison_report"])
def test_every_notebook_starts_with_the_current_cell(name):
    for suffix in (".py", ".ipynb"):
        notebook = jupytext.read(ROOT / "notebooks" / f"{name}{suffix}")
        first = next(cell for cell in notebook.cells if cell.cell_type == "code")
        assert first.source == colab.cell_source(), "run `python -m storylib.colab`"


def test_the_address_is_written_down_once_and_the_readme_points_there():
    literal = f"REPOSITORY_URL = {json.dumps(colab.REPOSITORY_URL)}"
    assert literal in (ROOT / "storylib" / "colab.py").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "REPOSITORY_URL" in readme and "storylib/colab.py" in readme and "python -m storylib.colab" in readme
    assert "github.com/storylib/storylib" not in readme


def test_a_clone_under_any_folder_name_is_installed(tmp_path):
    work = tmp_path / "content"
    (work / "sample_data").mkdir(parents=True)            # what Colab's /content holds besides
    make_checkout(work / "my-fork-of-the-suite")          # `!git clone <address> my-fork-of-the-suite`
    assert run_cell(work, tmp_path) == {"pip": [["install", "--quiet", str(work / "my-fork-of-the-suite")]]}


def test_in_colab_the_notebooks_default_to_the_gpu_scale_and_a_results_folder_under_content(monkeypatch):
    import types

    import torch

    from storylib import experiment

    for name in ("STORYLIB_SCALE", "STORYLIB_RESULTS_DIR", "COLAB_RELEASE_TAG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert experiment.resolve_scale("auto") == "cpu"
    assert experiment.resolve_results_dir("auto") == Path("../results")       # beside notebooks/ in a checkout

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))   # a Colab GPU runtime
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert experiment.resolve_scale("auto") == "full"
    assert experiment.resolve_results_dir("auto") == Path("/content/results")
    assert experiment.resolve_scale("smoke") == "smoke"                         # an explicit value wins
    assert experiment.resolve_results_dir("../results") == Path("../results")


@pytest.mark.parametrize("name", ["01_data_exploration", "02_experiment", "03_comparison_report"])
def test_every_notebook_defaults_to_the_automatic_scale_and_results_folder(name):
    notebook = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    [parameters] = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert 'scale = "auto"' in parameters.source and 'results_dir = "auto"' in parameters.source


def test_a_found_storylib_is_not_imported_by_the_cell(tmp_path):
    """Importing storylib.experiment loads torch: the cell only finds it (notebook 03 spent 17 s here)."""
    work = tmp_path / "content"
    package = work / "storylib"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "experiment.py").write_text("open('imported', 'w').write('yes')\n")
    assert run_cell(work, tmp_path) == {"pip": []}
    assert not (work / "imported").exists()
