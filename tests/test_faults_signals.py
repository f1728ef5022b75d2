"""SIGTERM (``kill``, a SLURM time limit) is handled as Ctrl-C, and a Ray task whose worker dies
is reported as lost mid-run and resumable (issue 17, "Faults that end in a wrong or silent
report")."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from storylib import runner
from storylib.runner import NotebookRun, RunOutcome
from test_faults_runner import make_notebooks, slow_experiment, start_run_all, wait_for_starts

REPO = Path(__file__).resolve().parent.parent
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray is not installed (pip install -e ".[cluster]")')


@pytest.mark.slow
def test_sigterm_during_the_notebooks_is_a_ctrl_c_summary_and_exit_130(tmp_path):
    notebooks = make_notebooks(tmp_path / "notebooks", slow_experiment())
    results = tmp_path / "results"
    process = start_run_all(tmp_path, notebooks, "--data", "synthetic", "--scale", "smoke", "--seeds", "2",
                            "--only", "baseline", "vae", "--jobs", "2", "--results-dir", str(results))
    before = wait_for_starts(results / "executions.log", 2, process)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == runner.EXIT_INTERRUPTED, out + err
    assert "Traceback" not in out + err
    assert "SIGTERM: starting no more notebooks and interrupting the running kernels" in err
    assert "Interrupted by SIGTERM after" in err
    assert "interrupted (resumes from its last checkpoint on the next call) (2): baseline seed0, vae seed0" in err
    assert "not started (3): baseline seed1, vae seed1, 03_comparison_report" in err
    assert "Run the same command again to continue: finished runs are reused." in err
    assert (results / "executions.log").read_text().splitlines() == before


def test_sigterm_before_any_notebook_is_a_line_and_exit_130(tmp_path):
    """SIGTERM while the runs are planned (outside the notebooks): one line, no traceback."""
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO / 'tests')!r})
        from storylib import runner
        from test_runner import no_shared_files

        def terminated_while_planning(*_):
            os.kill(os.getpid(), signal.SIGTERM)
            return "never reached"

        sys.exit(runner.main(sys.argv[1:], notebooks_dir={str(tmp_path)!r}, planned_hash=terminated_while_planning,
                             shared_files=no_shared_files))
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run([sys.executable, str(driver), "--data", "synthetic", "--scale", "smoke", "--results-dir",
                                str(tmp_path / "results")], env=env, text=True, capture_output=True, timeout=120)
    assert completed.returncode == runner.EXIT_INTERRUPTED, completed.stdout + completed.stderr
    assert completed.stderr.strip().splitlines() == [
        "Interrupted by SIGTERM; run the same command again to continue (finished runs are reused)."]


def test_a_signal_is_named_in_the_messages():
    assert runner.signal_name(signal.SIGTERM) == "SIGTERM"
    assert runner.signal_name(signal.SIGINT) == runner.signal_name(None) == "Ctrl-C"


# --------------------------------------------------------------------------- Ray: a task lost mid-run


def lost_outcome(error: Exception | RunOutcome, stopping: bool = False) -> RunOutcome:
    """The driver's outcome of a task whose ``ray.get`` raises ``error`` (or returns it, an outcome)."""
    import ray

    from storylib.suite.ray_executor import RayExecutor

    def get(_ref):
        if isinstance(error, RunOutcome):
            return error
        raise error

    executor = RayExecutor(SimpleNamespace(exceptions=ray.exceptions, get=get))
    run = NotebookRun("baseline seed0", Path("notebooks/02_experiment.ipynb"),
                      Path("results/synthetic-smoke/baseline/seed0/experiment.ipynb"), {})
    return executor._outcome(object(), run, 12.3, stopping)


@needs_ray
def test_a_task_whose_worker_died_is_lost_mid_run_and_resumes_not_failed_before_any_cell():
    import ray

    outcome = lost_outcome(ray.exceptions.WorkerCrashedError())
    assert (outcome.status, outcome.seconds, outcome.ename) == ("lost", 12.3, "WorkerCrashedError")
    assert outcome.failure_line() == (
        "02_experiment.ipynb [baseline seed0] lost mid-run (12 s after it was submitted): WorkerCrashedError: the Ray "
        "worker running it "
        "died (The worker died unexpectedly while executing this task. Check python-core-worker-*.log files for more "
        "information.); it resumes from its last checkpoint on the next call\n"
        "    executed copy (as far as it got): results/synthetic-smoke/baseline/seed0/experiment.ipynb")
    assert "before any cell ran" not in outcome.failure_line()
    assert lost_outcome(ray.exceptions.NodeDiedError("node 10.0.0.2 died")).status == "lost"
    assert lost_outcome(ray.exceptions.WorkerCrashedError(), stopping=True).status == "interrupted"
    assert lost_outcome(ray.exceptions.TaskCancelledError()).status == "not started"
    unsent = lost_outcome(ray.exceptions.RuntimeEnvSetupError("pip failed"))
    assert (unsent.status, unsent.ename) == ("failed", "RuntimeEnvSetupError")


@needs_ray
def test_a_task_whose_worker_got_sigterm_is_lost_mid_run_unless_the_call_is_stopping():
    run = NotebookRun("vae seed0", Path("02_experiment.ipynb"), Path("experiment.ipynb"), {})
    interrupted = RunOutcome(run, "interrupted", 7.0, 2, "time.sleep(60)", "KeyboardInterrupt", "")
    outcome = lost_outcome(interrupted)
    assert (outcome.status, outcome.seconds, outcome.ename) == ("lost", 7.0, "SIGTERM")
    assert outcome.evalue == ("the Ray worker running it was stopped (SIGTERM) and interrupted it; it resumes from "
                              "its last checkpoint on the next call")
    assert lost_outcome(interrupted, stopping=True) is interrupted


def test_the_progress_line_and_the_interrupted_summary_name_a_lost_run(capsys):
    run = NotebookRun("baseline seed0", Path("02_experiment.ipynb"), Path("experiment.ipynb"), {})
    lost = RunOutcome(run, "lost", 12.3, ename="WorkerCrashedError", evalue="the Ray worker running it died")
    runner.ProgressReporter(1, interactive=False).finished(lost)
    assert capsys.readouterr().out == "[1/1] baseline seed0: lost mid-run (12.3 s): WorkerCrashedError: the Ray worker running it died\n"
    runner.print_interrupted([lost], time.perf_counter(), "SIGTERM")
    assert ("lost mid-run, its Ray worker died (resumes from its last checkpoint on the next call) (1): baseline seed0"
            in capsys.readouterr().err)


# Logs the pid of the Ray worker running it (the kernel's parent), then trains for a minute.
WORKER_REPORTING = slow_experiment(
    'import os\n(pathlib.Path(results_dir) / f"worker-{experiment}.pid").write_text(str(os.getppid()))\ntime.sleep(60)')


def worker_pid(results: Path, experiment: str) -> int:
    pid_file = results / f"worker-{experiment}.pid"
    deadline = time.monotonic() + 120
    while not pid_file.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    return int(pid_file.read_text())


@pytest.mark.slow
@pytest.mark.isolated
@needs_ray
def test_ray_a_killed_worker_is_lost_mid_run_and_sigterm_on_the_driver_is_a_ctrl_c_summary(tmp_path):
    notebooks = make_notebooks(tmp_path / "notebooks", WORKER_REPORTING)
    results = tmp_path / "results"
    driver = start_run_all(tmp_path, notebooks, "--data", "synthetic", "--scale", "smoke", "--seeds", "1", "--only",
                           "baseline", "enhanced", "vae", "--results-dir", str(results), "--executor", "ray",
                           "--jobs", "3")
    wait_for_starts(results / "executions.log", 3, driver)
    os.kill(worker_pid(results, "baseline"), signal.SIGKILL)    # the worker running baseline dies
    os.kill(worker_pid(results, "enhanced"), signal.SIGTERM)    # the one running enhanced is stopped
    time.sleep(5.0)                                              # Ray notices; vae is still running
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=180)
    assert driver.returncode == runner.EXIT_INTERRUPTED, out + err
    assert "baseline seed0: lost mid-run (" in out and ": WorkerCrashedError: the Ray worker running it died" in out
    assert "enhanced seed0: lost mid-run (" in out
    assert ": SIGTERM: the Ray worker running it was stopped (SIGTERM) and interrupted it" in out   # its kernel too
    assert "before any cell ran" not in out + err
    assert "SIGTERM: starting no more notebooks" in err and "Interrupted by SIGTERM after" in err
    assert ("lost mid-run, its Ray worker died (resumes from its last checkpoint on the next call) (2): baseline seed0, "
            "enhanced seed0") in err
    assert "interrupted (resumes from its last checkpoint on the next call) (1): vae seed0" in err
    assert "Run the same command again to continue: finished runs are reused." in err
    assert "Traceback" not in err
    assert not list(results.glob("synthetic-smoke/*/seed0/test_metrics.json"))
