"""The results contract is declared once, in storylib/results/contract.py: no other module of
storylib spells one of its file names as a string literal, and the contract imports nothing
(any module can take its names from it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from storylib.results import contract

PACKAGE = Path(contract.__file__).resolve().parents[1]
FILE_NAMES = {value for name, value in vars(contract).items() if name.isupper() and isinstance(value, str) and "." in value}
FILE_NAMES |= {contract.BEST_CHECKPOINT.name, contract.LAST_CHECKPOINT.name}


def string_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant in code, docstrings excluded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_the_contract_lists_the_files_a_results_folder_holds():
    assert {"floors.json", "test_metrics.json", "metrics.csv", "predictions.csv", "config.yaml", "best.pt",
            "report.html", "run_plan.json"} <= FILE_NAMES


def test_no_module_spells_a_file_name_of_the_contract():
    stray = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "contract.py" or "data" in path.relative_to(PACKAGE).parts:
            continue  # storylib/data has its own cache files (manifest.json, windows.json …), not results
        for line, text in string_literals(path):
            # an exact name, or a glob / path that ends in it ("*/seed*/test_metrics.json")
            if any(text == name or text.endswith("/" + name) for name in FILE_NAMES):
                stray.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}")
    assert not stray, "use the name from storylib/results/contract.py:\n" + "\n".join(stray)


def test_the_contract_imports_nothing_of_storylib_nor_torch():
    code = ("import sys; import storylib.results.contract; "
            "print(sorted(m for m in sys.modules if m.startswith(('storylib', 'torch'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['storylib', 'storylib.results', 'storylib.results.contract']"


def test_folders_are_built_one_way():
    assert contract.data_folder("results", "synthetic", "cpu") == Path("results/synthetic-cpu")
    assert contract.run_folder(Path("results/synthetic-cpu"), "shots", 2) == Path("results/synthetic-cpu/shots/seed2")
