"""``run_all.py --executor ray`` (issue 10): the smoke suite as Ray tasks on a local cluster gives
the local executor's results (the session's ``local_smoke_suite``) float for float and is
reused by a second call; a failing task is listed and the others finish; Ctrl-C cancels the
tasks; without Ray, one line says how to install it. The slow tests start a local Ray cluster
through the executor itself (``--jobs 2``: 2 CPUs on a 2-core machine), in a child process, as
``python run_all.py --executor ray`` does."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from storylib import runner
from storylib.suite import ray_executor
from storylib.runner import NotebookRun
from _smoke_suite import run_all
from test_end_to_end import assert_results_contract
from test_faults_runner import make_notebooks, slow_experiment, start_run_all, wait_for_starts
from test_runner import FAKE_EXPERIMENT, fake_hash, no_shared_files

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = ["baseline", "vae"]
TIMING_KEYS = {"train_seconds", "stories_per_second"}      # wall-clock figures, not results
CPUS_PER_TASK = max(1, (os.cpu_count() or 1) // 2)         # a local run's kernel threads at --jobs 2
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray is not installed (pip install -e ".[cluster]")')


# --------------------------------------------------------------------------- without a cluster


def test_without_ray_executor_ray_is_one_line_naming_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)             # import ray raises ImportError
    notebooks = make_notebooks(tmp_path / "notebooks", FAKE_EXPERIMENT)
    status = runner.main(["--data", "synthetic", "--scale", "smoke", "--seeds", "1", "--executor", "ray",
                          "--results-dir", str(tmp_path / "results")], notebooks_dir=notebooks,
                         planned_hash=fake_hash, shared_files=no_shared_files)
    err = capsys.readouterr().err
    assert status == runner.EXIT_USAGE and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert 'needs Ray, which is not installed here; install it with pip install -e ".[cluster]"' in err
    assert not (tmp_path / "results" / "synthetic-smoke" / "data_exploration.ipynb").exists()


def test_ray_flags_are_validated(capsys):
    for argv, message in ([["--ray-address", "auto"], "need --executor ray"],
                          [["--executor", "ray", "--ray-cpus-per-task", "0"], "--ray-cpus-per-task must be at least 1"],
                          [["--executor", "dask"], "invalid choice: 'dask'"]):
        with pytest.raises(SystemExit):
            runner.parse_args(argv, ["baseline"])
        assert message in capsys.readouterr().err
    args = runner.parse_args([], ["baseline"])
    assert (args.executor, args.ray_address, args.ray_cpus_per_task) == ("local", None, 1)


def test_tasks_get_the_drivers_source_tree_first_and_its_storylib_and_hub_settings():
    env = ray_executor.forwarded_environment({"PYTHONPATH": "other-packages", "STORYLIB_CACHE": "shared-cache",
                                              "HF_HUB_OFFLINE": "1", "HOME": "home-of-the-driver", "CUDA_VISIBLE_DEVICES": "0"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "other-packages"]
    assert env["STORYLIB_CACHE"] == "shared-cache" and env["HF_HUB_OFFLINE"] == "1"
    assert "HOME" not in env and "CUDA_VISIBLE_DEVICES" not in env       # each node keeps its own


def test_a_task_on_a_node_that_does_not_see_the_results_folder_fails_naming_it(tmp_path):
    missing = tmp_path / "not-mounted" / "synthetic-smoke"
    run = NotebookRun("baseline seed0", REPO / "notebooks" / runner.EXPERIMENT_NOTEBOOK,
                      missing / "baseline" / "seed0" / "experiment.ipynb", {}, planned_hash="h")
    outcome = ray_executor.run_task(run, REPO / "notebooks", cores=1, keep_checkpoints=False)
    assert outcome.status == "failed" and outcome.ename == "SharedFilesystemError"
    assert f"does not see {missing};" in outcome.evalue and "filesystem every node sees" in outcome.evalue
    assert not missing.exists()


class FakeCluster:
    """Stands in for the ``ray`` module where only ``ray.nodes()`` is read."""

    def __init__(self, *nodes: dict):
        self._nodes = [{"Alive": True, "Resources": resources} for resources in nodes]

    def nodes(self) -> list[dict]:
        return self._nodes


def test_runs_that_no_node_can_hold_are_refused_instead_of_waiting_for_ever():
    two_small_nodes = FakeCluster({"CPU": 4.0}, {"CPU": 4.0})
    ray_executor.RayExecutor(two_small_nodes, cpus_per_task=4)._check_a_node_fits()
    with pytest.raises(runner.RunAllError, match=r"no node of the Ray cluster has the 8 CPU\(s\) one run asks for "
                                                 r"\(the largest has 4 CPUs\); lower --ray-cpus-per-task"):
        ray_executor.RayExecutor(two_small_nodes, cpus_per_task=8)._check_a_node_fits()
    gpu_elsewhere = FakeCluster({"CPU": 8.0}, {"CPU": 2.0, "GPU": 1.0})
    ray_executor.RayExecutor(gpu_elsewhere, cpus_per_task=2, gpus=1.0)._check_a_node_fits()
    with pytest.raises(runner.RunAllError, match="CPU\\(s\\) and 1 GPU"):
        ray_executor.RayExecutor(gpu_elsewhere, cpus_per_task=4, gpus=1.0)._check_a_node_fits()


# --------------------------------------------------------------------------- on a local Ray cluster


@pytest.fixture(scope="module")
def ray_smoke_run(tmp_path_factory):
    """The smoke suite for two experiments x one seed through Ray, on a local cluster the executor
    starts: 2 runs at a time with the torch threads of a local run's kernel (cores / 2)."""
    results_dir = tmp_path_factory.mktemp("ray-results")
    completed = run_all(results_dir, "--only", *EXPERIMENTS, "--executor", "ray", "--jobs", "2",
                        "--ray-cpus-per-task", str(CPUS_PER_TASK))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    return results_dir / "synthetic-smoke", completed


@pytest.mark.slow
@needs_ray
def test_the_smoke_suite_through_ray_writes_the_contract_and_equals_a_local_run(ray_smoke_run, local_smoke_suite):
    ray_data, completed = ray_smoke_run
    local_data = local_smoke_suite[0] / "synthetic-smoke"      # every experiment, the local executor, --jobs 2
    assert f"ray: {2 * CPUS_PER_TASK} CPUs, 0 GPUs on 1 node(s); {CPUS_PER_TASK} CPU(s) per run" in completed.stdout
    assert f"tasks import storylib from {REPO / 'storylib'} " in completed.stdout     # this tree, not another copy
    for experiment in EXPERIMENTS:
        assert f"{experiment} seed0: ok" in completed.stdout
    assert "4 ran, 0 reused, 0 failed" in completed.stdout
    assert_results_contract(ray_data, EXPERIMENTS)
    for experiment in EXPERIMENTS:
        through_ray, local = (json.loads((d / experiment / "seed0" / "test_metrics.json").read_text())
                              for d in (ray_data, local_data))
        assert set(through_ray) == set(local)
        # config_hash included: the same configuration; the checkpoint's digest is not compared, since
        # best.pt holds the training history with its epoch times, which differ between two runs
        for key in sorted(set(local) - TIMING_KEYS - {"checkpoint_sha256"}):
            assert through_ray[key] == local[key], (experiment, key)
        with np.load(ray_data / experiment / "seed0" / "predictions.npz") as a, \
                np.load(local_data / experiment / "seed0" / "predictions.npz") as b:
            assert np.array_equal(a["predicted_frame"], b["predicted_frame"])


@pytest.mark.slow
@needs_ray
def test_a_second_call_through_ray_reuses_every_run_and_starts_no_cluster(ray_smoke_run):
    ray_data = ray_smoke_run[0]
    metrics = {e: (ray_data / e / "seed0" / "test_metrics.json").read_text() for e in EXPERIMENTS}
    completed = run_all(ray_data.parent, "--only", *EXPERIMENTS, "--executor", "ray", "--jobs", "2")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "ray: every run is reused; no task to submit, Ray not started" in completed.stdout
    for experiment in EXPERIMENTS:
        assert f"{experiment} seed0: reused" in completed.stdout
    assert "0 ran, 4 reused, 0 failed" in completed.stdout       # the report too: nothing it reads changed
    assert {e: (ray_data / e / "seed0" / "test_metrics.json").read_text() for e in EXPERIMENTS} == metrics


@pytest.mark.slow
@needs_ray
def test_a_failing_task_is_listed_with_notebook_cell_and_error_and_the_others_finish(tmp_path):
    notebooks = make_notebooks(tmp_path / "notebooks", FAKE_EXPERIMENT)    # the vae run raises in cell 2
    results = tmp_path / "results"
    driver = start_run_all(tmp_path, notebooks, "--data", "synthetic", "--scale", "smoke", "--seeds", "1", "--only",
                           "baseline", "vae", "enhanced", "--results-dir", str(results), "--executor", "ray",
                           "--jobs", "2")
    out, err = driver.communicate(timeout=600)
    data_dir = results / "synthetic-smoke"
    assert driver.returncode == 1, out + err
    assert "1 step(s) failed:" in err
    assert "02_experiment.ipynb [vae seed0] cell 2" in err and "ValueError: boom in vae" in err
    assert f"executed copy: {data_dir / 'vae' / 'seed0' / 'experiment.ipynb'}" in err
    assert (data_dir / "vae" / "seed0" / "experiment.ipynb").is_file()
    for finished in ("baseline", "enhanced"):
        assert (data_dir / finished / "seed0" / "test_metrics.json").is_file()
        assert f"{finished} seed0: ok" in out
    assert "4 ran, 0 reused, 1 failed" in out
    assert sorted((results / "executions.log").read_text().splitlines()) == ["baseline seed0", "enhanced seed0",
                                                                              "vae seed0"]


@pytest.mark.slow
@pytest.mark.isolated
@needs_ray
def test_ctrl_c_cancels_the_tasks_a_second_kills_the_kernel_and_nothing_is_left_to_trust(tmp_path):
    # One CPU: the baseline task runs, its kernel logs its pid and swallows every interrupt; the
    # vae task is queued behind it.
    stubborn = ('import os\n(pathlib.Path(results_dir) / "pids.log").write_text(str(os.getpid()))\n'
                'while True:\n    try:\n        time.sleep(60)\n    except KeyboardInterrupt:\n'
                '        (pathlib.Path(results_dir) / "swallowed.log").write_text("interrupt swallowed")')
    notebooks = make_notebooks(tmp_path / "notebooks", slow_experiment(stubborn))
    results = tmp_path / "results"
    driver = start_run_all(tmp_path, notebooks, "--data", "synthetic", "--scale", "smoke", "--seeds", "1", "--only",
                           "baseline", "vae", "--results-dir", str(results), "--executor", "ray", "--jobs", "1")
    wait_for_starts(results / "executions.log", 1, driver)
    wait_for_file(results / "pids.log", driver)
    kernel = int((results / "pids.log").read_text())

    driver.send_signal(signal.SIGINT)                         # the task is cancelled, its kernel interrupted
    wait_for_file(results / "swallowed.log", driver)
    assert driver.poll() is None                              # the kernel swallowed it: still running
    driver.send_signal(signal.SIGINT)                         # cancelled again: the kernel is killed
    out, err = driver.communicate(timeout=180)
    assert driver.returncode == runner.EXIT_INTERRUPTED, out + err
    assert "Ctrl-C again: killing the running kernels" in err
    assert "interrupted (resumes from its last checkpoint on the next call) (1): baseline seed0" in err
    assert "not started (2): vae seed0, 03_comparison_report" in err
    assert len((results / "executions.log").read_text().splitlines()) == 1  # the queued task never started
    assert not list(results.glob("synthetic-smoke/*/seed0/test_metrics.json"))
    assert not (results / "synthetic-smoke" / "comparison_report.ipynb").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(kernel, 0)


def wait_for_file(path: Path, process, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while not path.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear: {process.communicate()}")
        time.sleep(0.2)
