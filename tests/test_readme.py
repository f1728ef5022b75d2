"""The README's set-up and test commands are what CI runs, and they say what the suite needs."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_block(marker: str) -> str:
    script = (ROOT / ".ci" / "run").read_text()
    start = script.index("readme_block() {")
    function = script[start : script.index("\n}\n", start) + 3]
    result = subprocess.run(
        ["bash", "-c", f"{function}\nreadme_block '{marker}'"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_ci_reads_exactly_two_setup_commands_from_the_readme():
    setup = readme_block("<!-- ci:setup -->").strip().splitlines()
    assert len(setup) == 2
    assert "venv" in setup[0]
    assert setup[1] == 'pip install -e ".[dev]"'


def test_ci_runs_the_readme_test_command():
    assert readme_block("<!-- ci:test -->").strip() == "python -m pytest"


def test_readme_shows_the_main_command():
    assert "python run_all.py" in (ROOT / "README.md").read_text()
