"""The notebooks' form: jupytext pairs in sync, no outputs, a literals-only parameters cell,
the Colab bootstrap first. (Executing them is nbval's job: pytest collects notebooks/.)"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jupytext
import pytest

import storylib.experiment
from storylib import colab

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("01_data_exploration", "02_experiment", "03_comparison_report")
# "auto": the GPU scale where CUDA is there, results under /content on Colab (storylib/colab.py)
PARAMETERS = {
    "01_data_exploration": {"data": "auto", "scale": "auto", "results_dir": "auto"},
    "02_experiment": {"experiment": "baseline", "data": "auto", "scale": "auto", "seed": 0,
                      "results_dir": "auto", "device": "auto"},
    "03_comparison_report": {"data": "auto", "scale": "auto", "results_dir": "auto", "update_reference": False},
}


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def parameters_cell(notebook):
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    return tagged[0]


@pytest.mark.parametrize("name", NAMES)
def test_pair_is_in_sync(name):
    script = jupytext.read(NOTEBOOKS_DIR / f"{name}.py")
    notebook = jupytext.read(NOTEBOOKS_DIR / f"{name}.ipynb")
    assert [(c.cell_type, c.source) for c in script.cells] == [(c.cell_type, c.source) for c in notebook.cells], (
        f"run `jupytext --sync notebooks/{name}.py`")
    assert parameters_cell(script).source == parameters_cell(notebook).source


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_is_committed_clean_with_the_python3_kernel(name):
    raw = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text(encoding="utf-8"))
    assert raw["metadata"]["kernelspec"] == {"display_name": "Python 3", "language": "python", "name": "python3"}
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("name", NAMES)
def test_parameters_cell_holds_only_literal_assignments(name):
    source = parameters_cell(jupytext.read(NOTEBOOKS_DIR / f"{name}.py")).source
    values = {}
    for statement in ast.parse(source).body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1, ast.unparse(statement)
        assert isinstance(statement.targets[0], ast.Name), ast.unparse(statement)
        values[statement.targets[0].id] = ast.literal_eval(statement.value)   # raises unless a literal
    assert values == PARAMETERS[name]


@pytest.mark.parametrize("name", NAMES)
def test_first_code_cell_is_the_colab_bootstrap_then_parameters(name):
    notebook = jupytext.read(NOTEBOOKS_DIR / f"{name}.py")
    cells = code_cells(notebook)
    assert cells[0].source == colab.cell_source()       # its behaviour: tests/test_colab_cell.py
    assert cells[1] is parameters_cell(notebook)


@pytest.mark.parametrize("name", NAMES)
def test_every_code_cell_after_the_parameters_is_short_and_explained(name):
    """Thin notebooks: one or two calls per cell, each preceded by a markdown line."""
    notebook = jupytext.read(NOTEBOOKS_DIR / f"{name}.py")
    cells = notebook.cells
    start = next(i for i, cell in enumerate(cells) if cell is parameters_cell(notebook)) + 1
    for position in range(start, len(cells)):
        cell = cells[position]
        if cell.cell_type != "code" or cell.source.startswith(("import ", "from ")):
            continue
        tree = ast.parse(cell.source)
        assert len(tree.body) <= 2, cell.source
        assert not any(isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.For, ast.While, ast.If, ast.Lambda))
                       for node in ast.walk(tree)), cell.source
        assert cells[position - 1].cell_type == "markdown", cell.source


def test_experiment_notebook_calls_the_whole_experiment_api_in_order_and_records_last():
    sources = [cell.source for cell in code_cells(jupytext.read(NOTEBOOKS_DIR / "02_experiment.py"))]
    steps = ["setup", "prepare", "build", "train", "evaluate", "show_visualization", "record"]
    positions = [next(i for i, s in enumerate(sources) if f"storylib.experiment.{step}(" in s) for step in steps]
    assert positions == sorted(positions)
    assert positions[-1] == len(sources) - 1


def test_an_overriding_environment_is_announced_every_time(monkeypatch, capsys):
    monkeypatch.setenv("STORYLIB_SCALE", "smoke")
    monkeypatch.delenv("STORYLIB_RESULTS_DIR", raising=False)
    for _ in range(2):
        assert storylib.experiment.resolve_scale("cpu") == "smoke"
    assert capsys.readouterr().out.count("note: STORYLIB_SCALE=smoke in the environment overrides the parameter "
                                         "scale='cpu'") == 2
    assert storylib.experiment.resolve_scale("smoke") == "smoke"         # no override, no note
    assert capsys.readouterr().out == ""


def test_report_notebook_on_a_missing_folder_announces_the_override_and_writes_nothing(tmp_path, monkeypatch):
    """Notebook 03 run by plain papermill (no run_all.py), the scale overridden by the environment."""
    import papermill

    monkeypatch.setenv("STORYLIB_SCALE", "smoke")
    monkeypatch.delenv("STORYLIB_RESULTS_DIR", raising=False)
    results = tmp_path / "no-such-results"
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS_DIR / "03_comparison_report.ipynb"), str(executed),
                               parameters={"data": "synthetic", "scale": "cpu", "results_dir": str(results)},
                               kernel_name="python3", cwd=str(NOTEBOOKS_DIR), progress_bar=False)
    outputs = json.dumps(json.loads(executed.read_text())["cells"])
    assert "note: STORYLIB_SCALE=smoke in the environment overrides the parameter scale='cpu'" in outputs
    assert "no results folder synthetic-smoke" in outputs and "Nothing written" in outputs
    assert not results.exists()


def test_jupytext_pairs_ipynb_with_py_percent():
    assert 'formats = "ipynb,py:percent"' in (NOTEBOOKS_DIR / "jupytext.toml").read_text()
