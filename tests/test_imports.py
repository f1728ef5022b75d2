"""Imports run one way: no cycle among storylib's modules, counting imports inside functions;
and the modules that read a results folder load without torch (notebook 03 starts with them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import storylib

PACKAGE = Path(storylib.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module → the storylib modules it imports anywhere in its file (a package counts as its
    ``__init__``; ``from a import b`` counts ``a`` and, when it is a module, ``a.b``)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *([base] if base else [])])
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_hand_made_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_storylib_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_reading_a_results_folder_needs_no_torch():
    code = ("import sys; import storylib.results.contract, storylib.runs, storylib.reporting, storylib.comparisons; "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_every_module_of_results_and_report_and_the_browser_loads_without_torch():
    names = sorted(module_name(path) for folder in ("results", "report") for path in (PACKAGE / folder).glob("*.py"))
    assert "storylib.report.figures" in names and "storylib.results.folder" in names
    code = (f"import sys, importlib; [importlib.import_module(n) for n in {[*names, 'storylib.widgets']!r}]; "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


# The house rule of issue 18: a module a reader takes in at one sitting, functions one screen long.
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
LONG_BY_DESIGN = {"storylib.data.synthetic"}   # the generator's world: tables of shots and phrases


def test_no_module_or_function_of_storylib_is_too_long():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_MODULE_LINES and module_name(path) not in LONG_BY_DESIGN:
            too_long.append(f"{module_name(path)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= MAX_FUNCTION_LINES:
                too_long.append(f"{module_name(path)}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, "split these (docs/architecture.md says where things live):\n" + "\n".join(too_long)
