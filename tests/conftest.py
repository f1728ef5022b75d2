"""Fixtures shared by test modules (the test-session environment is set in ../conftest.py)."""

from __future__ import annotations

import pytest

from _smoke_suite import run_all


@pytest.fixture(scope="session")
def local_smoke_suite(tmp_path_factory):
    """``run_all.py --data synthetic --scale smoke --seeds 1``, every experiment, the local
    executor, once per session: (results folder, completed process). The end-to-end tests check
    it; the Ray executor's tests compare their runs with it."""
    results_dir = tmp_path_factory.mktemp("results")
    completed = run_all(results_dir)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    return results_dir, completed
