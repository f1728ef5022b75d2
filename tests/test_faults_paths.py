"""Where kernels run and write (issue 17, "Runs that land outside the results folder").

papermill's ``execute_notebook(cwd=...)`` is a process-wide ``os.chdir`` (and its local file
handler changes folder around every save); ``storylib.runner`` executes notebooks from a
thread pool, so one thread restoring its folder moved the kernels the others were starting.
These tests execute several throwaway notebooks at once, each kernel reporting its working
folder and where it wrote, from a process whose working folder is not ``notebooks/``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import papermill
import pytest

from storylib import runner
from storylib.runs import CONTRACT_KEYS
from test_runner import write_notebook

REPO = Path(__file__).resolve().parent.parent

# A kernel that reports its working folder and the absolute path of the file it wrote.
REPORTING_CELL = '''
import json, os, pathlib, time
time.sleep(1.0)
target = pathlib.Path(results_dir) / f"{name}.json"
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(json.dumps({"cwd": os.getcwd(), "wrote": str(target.resolve())}))
'''


def test_kernels_started_at_once_run_in_notebooks_and_write_in_the_results_folder(tmp_path, monkeypatch):
    """Deterministic form of the race: run ``first`` enters papermill before the others, and
    their kernels start only after ``first`` has returned (when papermill's ``chdir`` restores
    the folder it found, which was ``notebooks/`` for the others)."""
    repository = tmp_path / "checkout"
    notebooks = repository / "notebooks"
    notebooks.mkdir(parents=True)
    write_notebook(notebooks / "probe.ipynb", 'name = "x"\nresults_dir = "../results"', REPORTING_CELL)
    monkeypatch.chdir(repository)                      # run_all.py is called from the checkout's root

    names = ["first", "second", "third"]
    runs = [runner.NotebookRun(name, notebooks / "probe.ipynb", repository / "results" / "executed" / f"{name}.ipynb",
                               {"name": name, "results_dir": "../results"}) for name in names]
    first_returned = threading.Event()
    execute_notebook = papermill.execute_notebook
    run_of_thread: dict[int, str] = {}                  # nbclient launches the kernel in the caller's thread

    def ordered_execute(*args, **kwargs):
        name = run_of_thread[threading.get_ident()] = kwargs["parameters"]["name"]
        if name != "first":
            time.sleep(0.5)                             # enter after "first" is inside papermill
        try:
            return execute_notebook(*args, **kwargs)
        finally:
            if name == "first":
                first_returned.set()

    launch = runner.TrackedKernelManager._async_launch_kernel

    async def delayed_launch(self, kernel_cmd, **kw):
        if run_of_thread[threading.get_ident()] != "first":   # "second" and "third" start after "first" returned
            assert first_returned.wait(120)
            time.sleep(0.2)
        await launch(self, kernel_cmd, **kw)

    monkeypatch.setattr(papermill, "execute_notebook", ordered_execute)
    monkeypatch.setattr(runner.TrackedKernelManager, "_async_launch_kernel", delayed_launch)
    (repository / "results" / "executed").mkdir(parents=True)

    outcomes = runner.execute_all(runs, 3, notebooks, runner.ProgressReporter(3, interactive=False),
                                  runner.Interruption())

    assert [(o.run.label, o.status) for o in outcomes] == [(name, "ok") for name in names], \
        [o.failure_line() for o in outcomes]
    for name in names:
        reported = json.loads((repository / "results" / f"{name}.json").read_text())
        assert reported == {"cwd": str(notebooks), "wrote": str(repository / "results" / f"{name}.json")}
    assert not (tmp_path / "results").exists()          # "../results" from the checkout's root
    assert Path.cwd() == repository                      # the process never changed folder


def test_kernel_resources_give_an_absolute_folder():
    assert runner.kernel_resources(Path("/srv/suite/notebooks")) == {"metadata": {"path": "/srv/suite/notebooks"}}


# An experiment that resumes: its first start leaves a "checkpoint" and trains for a minute,
# a later start finds the checkpoint and finishes at once.
RESUMING_EXPERIMENT = '''
import json, os, pathlib, time
run_dir = pathlib.Path(results_dir) / f"synthetic-{scale}" / experiment / f"seed{seed}"
run_dir.mkdir(parents=True, exist_ok=True)
checkpoint = run_dir / "checkpoint"
resumed = checkpoint.is_file()
checkpoint.write_text("epoch 1")
with open(pathlib.Path(results_dir) / "executions.log", "a") as log:
    log.write(json.dumps({"run": f"{experiment} seed{seed}", "resumed": resumed, "cwd": os.getcwd()}) + "\\n")
if not resumed:
    time.sleep(60)
(run_dir / "test_metrics.json").write_text(json.dumps({**dict.fromkeys(KEYS, 0.0), "config_hash": f"hash-{experiment}-{seed}"}))
'''.replace("KEYS", repr(CONTRACT_KEYS))


@pytest.mark.slow
def test_a_rerun_after_ctrl_c_with_a_relative_results_folder_resumes_in_that_folder(tmp_path):
    """The issue's sequence: ``--results-dir ../cpu-results`` from the checkout's root, Ctrl-C
    during two experiments, the same command again: both resume in ``../cpu-results``."""
    checkout = tmp_path / "home" / "checkout"
    notebooks = checkout / "notebooks"
    notebooks.mkdir(parents=True)
    shared = 'data = "auto"\nscale = "cpu"\nresults_dir = "../results"'
    write_notebook(notebooks / runner.EXPLORATION_NOTEBOOK, shared, "print('explored')")
    write_notebook(notebooks / runner.EXPERIMENT_NOTEBOOK,
                   shared + '\nexperiment = "baseline"\nseed = 0\ndevice = "auto"', RESUMING_EXPERIMENT)
    write_notebook(notebooks / runner.REPORT_NOTEBOOK, shared, "print('report')")
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / 'tests')!r})
        from storylib import runner
        from test_runner import fake_hash, no_shared_files
        sys.exit(runner.main(sys.argv[1:], notebooks_dir="notebooks", planned_hash=fake_hash,
                             shared_files=no_shared_files))
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, str(driver), "--data", "synthetic", "--scale", "smoke", "--seeds", "1", "--only",
            "baseline", "vae", "--jobs", "2", "--results-dir", "../cpu-results"]
    results = tmp_path / "home" / "cpu-results"
    log = results / "executions.log"

    first = subprocess.Popen(argv, cwd=checkout, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while (len(log.read_text().splitlines()) if log.is_file() else 0) < 2 and first.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 130, out + err
    assert "interrupted (resumes from its last checkpoint on the next call) (2): baseline seed0, vae seed0" in err

    second = subprocess.run(argv, cwd=checkout, env=env, text=True, capture_output=True, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "01_data_exploration: reused" in second.stdout
    starts = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((s["run"], s["resumed"]) for s in starts) == [
        ("baseline seed0", False), ("baseline seed0", True), ("vae seed0", False), ("vae seed0", True)]
    assert {s["cwd"] for s in starts} == {str(notebooks)}
    for experiment in ("baseline", "vae"):
        assert (results / "synthetic-smoke" / experiment / "seed0" / "test_metrics.json").is_file()
    assert not (tmp_path / "cpu-results").exists()      # "../cpu-results" from notebooks/ one folder up
    assert not (checkout / "synthetic-smoke").exists()
