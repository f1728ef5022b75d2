"""A run records the git commit of the code that made it (storylib.provenance), and the report says it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from storylib.provenance import checkout_revision, pip_recorded_commit
from storylib.report.tables import provenance_facts, short_revision


def _git(root: Path, *arguments: str) -> str:
    identity = ["-c", "user.email=test@example.invalid", "-c", "user.name=test"]
    return subprocess.run(["git", "-C", str(root), *identity, *arguments], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout with a package folder, a parameter file and a tracked results file."""
    for name, text in {"storylib/model.py": "x = 1\n", "params/a.yaml": "a: 1\n", "results/r.csv": "1\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_a_clean_checkout_gives_its_head_commit(checkout):
    assert checkout_revision(checkout / "storylib") == _git(checkout, "rev-parse", "HEAD")


def test_a_changed_package_or_parameter_file_marks_the_commit_dirty(checkout):
    head = _git(checkout, "rev-parse", "HEAD")
    (checkout / "params" / "a.yaml").write_text("a: 2\n")
    assert checkout_revision(checkout / "storylib") == head + "+dirty"


def test_new_results_and_untracked_files_do_not_make_it_dirty(checkout):
    (checkout / "results" / "r.csv").write_text("2\n")  # regenerating a committed reference
    (checkout / "storylib" / "scratch.py").write_text("")  # not part of the commit
    assert checkout_revision(checkout / "storylib") == _git(checkout, "rev-parse", "HEAD")


def test_a_package_that_is_not_at_the_root_of_its_checkout_has_no_revision(checkout):
    nested = checkout / "venv" / "site-packages" / "storylib"
    nested.mkdir(parents=True)
    assert checkout_revision(nested) is None


def test_no_checkout_or_no_git_gives_none(tmp_path, checkout, monkeypatch):
    outside = tmp_path.parent / f"{tmp_path.name}-outside" / "storylib"
    outside.mkdir(parents=True)
    assert checkout_revision(outside) is None
    monkeypatch.setenv("PATH", "")  # git cannot be found
    assert checkout_revision(checkout / "storylib") is None


def test_pip_recorded_commit_reads_pep_610_vcs_info_only():
    commit = "0123456789abcdef0123456789abcdef01234567"
    vcs = {"url": "https://example.invalid/storylib.git", "vcs_info": {"vcs": "git", "commit_id": commit}}
    assert pip_recorded_commit(json.dumps(vcs)) == commit
    assert pip_recorded_commit(json.dumps({"url": "file:///src", "dir_info": {"editable": True}})) is None
    assert pip_recorded_commit("not json") is None
    assert pip_recorded_commit("[1, 2]") is None


def test_the_report_names_the_runs_revisions_and_the_runs_that_recorded_none():
    commit = "abcdef0123456789abcdef0123456789abcdef01"
    floors = {"data_source": "synthetic", "tokenizer": "t", "num_test_windows": 3}
    one = pd.DataFrame({"code_revision": [commit, commit]})
    assert provenance_facts(floors, one) == [
        "data source: synthetic", "tokenizer: t", "num test windows: 3", "code revision: abcdef012345"]
    mixed = pd.DataFrame({"code_revision": [commit, commit + "+dirty", None]})
    assert provenance_facts({}, mixed)[-1] == (
        "code revisions: abcdef012345 (1 run), abcdef012345+dirty (1 run), not recorded (1 run)")
    assert provenance_facts({}, pd.DataFrame({"seed": [0, 1]})) == ["code revision: not recorded"]
    assert short_revision(float("nan")) == "not recorded"
