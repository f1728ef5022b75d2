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


def test_ci_runs_the_readme_test_commands_every_test_once():
    """The whole suite but the `isolated` tests, then those in a process of their own."""
    assert readme_block("<!-- ci:test -->").strip().splitlines() == [
        'python -m pytest -m "not isolated"', "python -m pytest -m isolated tests"]


def test_readme_shows_the_main_command():
    assert "python run_all.py" in (ROOT / "README.md").read_text()


def fenced_block_after(marker: str) -> str:
    """The fenced code block that follows ``marker`` in README.md (as .ci/run reads one)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    opening = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith("```"))
    return "\n".join(lines[opening + 1:closing])


def test_the_cpu_setup_installs_torch_and_torchvision_from_one_cpu_index_before_the_package():
    """torchvision from PyPI requires the CUDA build of torch: both come from the CPU index, in one
    command, before `pip install -e` (which then finds them installed)."""
    import shlex

    commands = [shlex.split(line) for line in fenced_block_after("<!-- setup:cpu -->").splitlines() if line.strip()]
    torch_line = next(i for i, words in enumerate(commands) if "torch" in words)
    words = commands[torch_line]
    assert words[:2] == ["pip", "install"] and {"torch", "torchvision"} <= set(words)
    index = words[words.index("--index-url") + 1]
    assert index == "https://download.pytorch.org/whl/cpu"
    package = next(i for i, words in enumerate(commands) if words[:3] == ["pip", "install", "-e"])
    assert torch_line < package
    assert not any("--index-url" in words and words is not commands[torch_line] for words in commands)
    # CI keeps the default block (PyTorch's index is not reachable from CI)
    assert "download.pytorch.org" not in readme_block("<!-- ci:setup -->")


def test_the_slurm_example_gives_every_job_its_own_short_node_local_ray_temp_dir():
    script = (ROOT / "README.md").read_text()
    block = script[script.index("#SBATCH --nodes"):]
    block = block[:block.index("```")]
    starts = [line for line in block.replace("\\\n", " ").splitlines() if "ray start" in line]
    assert len(starts) == 2                                        # the head and the workers
    assert all('--temp-dir="$ray_tmp"' in line for line in starts)
    assert "ray_tmp=/tmp/ray-$SLURM_JOB_ID" in block               # per job, node-local, short
    assert len("/tmp/ray-4294967295/session_2026-12-03_17-30-32_123456_1234567/sockets/plasma_store") < 107
