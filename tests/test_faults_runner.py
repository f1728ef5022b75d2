"""run_all.py under faults (issue 12 items 1, 3, 5, 8; issue 9 "Runs" a): Ctrl-C, bad data
sources, bad parameter files, unwritable folders, an empty executed report, a run locked by
another process, and shared files that are missing or damaged."""

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

import pytest

from storylib import runner
from storylib.config import ConfigError
from storylib.runs import CONTRACT_KEYS
from test_runner import fake_hash, no_shared_files, write_notebook

REPO = Path(__file__).resolve().parent.parent
SHARED = 'data = "auto"\nscale = "cpu"\nresults_dir = "../results"'
EXPERIMENT_PARAMETERS = SHARED + '\nexperiment = "baseline"\nseed = 0\ndevice = "auto"'
# An experiment that logs its start, then "trains" for a minute unless interrupted.
SLOW_EXPERIMENT = '''
import json, pathlib, time
run_dir = pathlib.Path(results_dir) / f"synthetic-{scale}" / experiment / f"seed{seed}"
with open(pathlib.Path(results_dir) / "executions.log", "a") as log:
    log.write(f"{experiment} seed{seed} {time.time()}\\n")
time.sleep(SLEEP)
run_dir.mkdir(parents=True, exist_ok=True)
(run_dir / "test_metrics.json").write_text(json.dumps({**dict.fromkeys(KEYS, 0.0), "config_hash": f"hash-{experiment}-{seed}"}))
'''


def finished_metrics(experiment: str, seed: int) -> str:
    return json.dumps({**dict.fromkeys(CONTRACT_KEYS, 0.0), "config_hash": fake_hash(experiment, "", "", seed)})


def make_notebooks(folder: Path, experiment_cell: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_notebook(folder / runner.EXPLORATION_NOTEBOOK, SHARED, "print('explored')")
    write_notebook(folder / runner.EXPERIMENT_NOTEBOOK, EXPERIMENT_PARAMETERS, experiment_cell)
    write_notebook(folder / runner.REPORT_NOTEBOOK, SHARED, "print('report')")
    return folder


def slow_experiment(sleep_cell: str = "time.sleep(60)") -> str:
    return SLOW_EXPERIMENT.replace("time.sleep(SLEEP)", sleep_cell).replace("KEYS", repr(CONTRACT_KEYS))


def start_run_all(tmp_path: Path, notebooks: Path, *argv: str) -> subprocess.Popen:
    """``runner.main`` in a child process, as ``python run_all.py`` runs it, with fake notebooks."""
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / 'tests')!r})
        from storylib import runner
        from test_runner import fake_hash, no_shared_files
        sys.exit(runner.main(sys.argv[1:], notebooks_dir={str(notebooks)!r}, planned_hash=fake_hash,
                             shared_files=no_shared_files))
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(driver), *argv], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_starts(log: Path, count: int, process: subprocess.Popen, limit: float = 240) -> list[str]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.is_file() else []
        if len(lines) >= count:
            return lines
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"{count} notebooks did not start: {process.communicate()}")


@pytest.mark.slow
def test_ctrl_c_stops_starting_notebooks_interrupts_the_kernels_and_exits_130(tmp_path):
    notebooks = make_notebooks(tmp_path / "notebooks", slow_experiment())
    results = tmp_path / "results"
    process = start_run_all(tmp_path, notebooks, "--data", "synthetic", "--scale", "smoke", "--seeds", "2",
                            "--only", "baseline", "vae", "--jobs", "2", "--results-dir", str(results))
    before = wait_for_starts(results / "executions.log", 2, process)
    time.sleep(1.0)                                         # both kernels are inside their cell
    interrupted_at = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    seconds = time.monotonic() - interrupted_at
    assert process.returncode == 130, out + err
    assert seconds < 60, seconds                            # within seconds, not after the minute-long cells
    assert (results / "executions.log").read_text().splitlines() == before      # no notebook started after Ctrl-C
    assert "Traceback" not in out + err
    assert "finished (1): 01_data_exploration" in err
    assert "interrupted (resumes from its last checkpoint on the next call) (2): baseline seed0, vae seed0" in err
    assert "not started (3): baseline seed1, vae seed1, 03_comparison_report" in err
    assert not (results / "synthetic-smoke" / "comparison_report.ipynb").exists()


@pytest.mark.slow
def test_a_second_ctrl_c_kills_kernels_that_ignore_the_first(tmp_path):
    stubborn = "while True:\n    try:\n        time.sleep(60)\n    except KeyboardInterrupt:\n        pass"
    notebooks = make_notebooks(tmp_path / "notebooks", slow_experiment(stubborn))
    results = tmp_path / "results"
    process = start_run_all(tmp_path, notebooks, "--data", "synthetic", "--scale", "smoke", "--seeds", "1",
                            "--only", "baseline", "--jobs", "1", "--results-dir", str(results))
    wait_for_starts(results / "executions.log", 1, process)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    time.sleep(4.0)
    assert process.poll() is None                           # the kernel swallowed the interrupt
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert "killing the running kernels" in err and "interrupted" in err and "Traceback" not in err


def test_ctrl_c_before_any_notebook_is_a_line_and_exit_130_not_a_traceback(tmp_path, capsys):
    def interrupted(*_):
        raise KeyboardInterrupt

    status = runner.main(["--data", "synthetic", "--scale", "smoke", "--results-dir", str(tmp_path / "results")],
                         notebooks_dir=tmp_path, planned_hash=interrupted, shared_files=no_shared_files)
    assert status == 130 and "Interrupted by Ctrl-C" in capsys.readouterr().err


@pytest.mark.parametrize("make_source", [lambda tmp: tmp / "no" / "such" / "folder",
                                         lambda tmp: (tmp / "empty").mkdir() or tmp / "empty"])
def test_a_bad_data_folder_is_refused_before_any_kernel_starts(tmp_path, capsys, make_source):
    source = make_source(tmp_path)
    results = tmp_path / "results"
    started = time.monotonic()
    status = runner.main(["--data", str(source), "--scale", "smoke", "--results-dir", str(results)],
                         notebooks_dir=tmp_path, planned_hash=fake_hash, shared_files=no_shared_files)
    assert status == 2 and time.monotonic() - started < 60
    err = capsys.readouterr().err
    assert err.startswith(f"run_all.py: error: --data {source}: this data source cannot be used:")
    assert "data/train-*.parquet" in err and "--data synthetic" in err and "Nothing was run" in err
    assert len(err.strip().splitlines()) == 1                  # one paragraph, no traceback
    assert not results.exists()                                 # nothing written


def test_a_data_folder_whose_test_split_lacks_images_is_refused_before_any_kernel(tmp_path, capsys):
    from test_faults_data import write_parquet_folder

    folder = write_parquet_folder(tmp_path / "stories", drop_test_images=True)
    status = runner.main(["--data", str(folder), "--scale", "smoke", "--results-dir", str(tmp_path / "results")],
                         notebooks_dir=tmp_path, planned_hash=fake_hash, shared_files=no_shared_files)
    err = capsys.readouterr().err
    assert status == 2 and "the test split lacks the column(s) images" in err and "test-00000.parquet" in err
    assert not (tmp_path / "results").exists()


def test_a_bad_parameter_file_is_one_message_and_exit_2(tmp_path, capsys):
    def broken(*_):
        raise ConfigError("params/baseline.yaml: key 'train.lr': expected a finite number, got nan")

    status = runner.main(["--data", "synthetic", "--scale", "smoke", "--results-dir", str(tmp_path / "results")],
                         notebooks_dir=tmp_path, planned_hash=broken, shared_files=no_shared_files)
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert err.strip() == ("run_all.py: error: params/baseline.yaml: key 'train.lr': expected a finite number, "
                           "got nan. Fix the file and rerun. Nothing was run.")
    assert not (tmp_path / "results" / "synthetic-smoke").exists()


def test_a_real_parameter_file_with_nan_is_named_before_any_kernel_starts(tmp_path, capsys, monkeypatch):
    import shutil

    from storylib import config

    params = tmp_path / "params"
    shutil.copytree(config.PARAMS_DIR, params)
    text = (params / "baseline.yaml").read_text()
    assert "\n  lr: 0.001\n" in text
    (params / "baseline.yaml").write_text(text.replace("\n  lr: 0.001\n", "\n  lr: .nan\n", 1))
    monkeypatch.setattr(config, "PARAMS_DIR", params)
    status = runner.main(["--data", "synthetic", "--scale", "smoke", "--seeds", "1", "--only", "baseline",
                          "--results-dir", str(tmp_path / "results")], notebooks_dir=tmp_path)
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{params / 'baseline.yaml'}: key 'train.lr': expected a finite number, got nan" in err

    (params / "baseline.yaml").write_text(text + "train:\n  epochs: 3\n")     # a second 'train' section
    assert runner.main(["--data", "synthetic", "--scale", "smoke", "--only", "baseline", "--results-dir",
                        str(tmp_path / "results")], notebooks_dir=tmp_path) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "duplicate key 'train'" in err and str(params / "baseline.yaml") in err


def test_an_unwritable_results_folder_is_one_message_and_exit_2(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "synthetic-smoke").write_text("a file where the folder should be")
    status = runner.main(["--data", "synthetic", "--scale", "smoke", "--results-dir", str(results)],
                         notebooks_dir=tmp_path, planned_hash=fake_hash, shared_files=no_shared_files)
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert f"the results folder {results / 'synthetic-smoke'} cannot be written" in err and "--results-dir" in err


def test_an_empty_executed_report_is_one_failure_line_and_the_summary_still_prints(tmp_path, capsys, monkeypatch):
    import storylib.suite.execute as execute_module   # where the local executor finds execute

    notebooks = make_notebooks(tmp_path / "notebooks", slow_experiment("pass"))
    real_execute = execute_module.execute

    def disk_full_after_the_report(run, cwd, interruption=None):
        outcome = real_execute(run, cwd, interruption)
        if run.label == "03_comparison_report":
            run.output.write_bytes(b"")                    # what a full disk left
        return outcome

    monkeypatch.setattr(execute_module, "execute", disk_full_after_the_report)
    results = tmp_path / "results"
    status = runner.main(["--data", "synthetic", "--scale", "smoke", "--seeds", "1", "--only", "baseline",
                          "--results-dir", str(results)],
                         notebooks_dir=notebooks, planned_hash=fake_hash, shared_files=no_shared_files)
    captured = capsys.readouterr()
    report = results / "synthetic-smoke" / "comparison_report.ipynb"
    assert status == 1 and "Traceback" not in captured.err
    assert "3 notebooks in" in captured.out and "3 ran, 0 reused, 0 failed" in captured.out
    assert f"report.html: RunAllError: {report} cannot be converted to report.html" in captured.err
    assert "empty or damaged" in captured.err and "free disk space and rerun" in captured.err
    assert not (results / "synthetic-smoke" / "report.html").exists()


def test_a_run_locked_by_another_process_is_waited_for_then_reused(tmp_path, capsys):
    from filelock import FileLock

    notebooks = make_notebooks(tmp_path / "notebooks", slow_experiment("pass"))
    results = tmp_path / "results"
    run_dir = results / "synthetic-smoke" / "baseline" / "seed0"
    lock = FileLock(str(results / "synthetic-smoke" / runner.LOCKS_FOLDER / "baseline-seed0.lock"))
    (results / "synthetic-smoke" / runner.LOCKS_FOLDER).mkdir(parents=True)
    lock.acquire()
    statuses = []
    argv = ["--data", "synthetic", "--scale", "smoke", "--seeds", "1", "--only", "baseline", "--results-dir",
            str(results)]
    thread = threading.Thread(target=lambda: statuses.append(runner.main(
        argv, notebooks_dir=notebooks, planned_hash=fake_hash, shared_files=no_shared_files)))
    thread.start()
    deadline = time.monotonic() + 240
    while "another process is running it" not in capsys.readouterr().err and time.monotonic() < deadline:
        time.sleep(0.2)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "test_metrics.json").write_text(finished_metrics("baseline", 0))   # the other process finishes
    lock.release()
    thread.join(240)
    captured = capsys.readouterr()
    assert statuses == [0]
    assert "baseline seed0: finished by the other process; reusing it" in captured.err
    assert "baseline seed0: reused" in captured.out
    assert not (results / "executions.log").exists() or "baseline" not in (results / "executions.log").read_text()


@pytest.mark.slow
def test_run_all_rebuilds_missing_and_damaged_shared_files_even_when_every_run_is_reused(tmp_path, capsys):
    notebooks = make_notebooks(tmp_path / "notebooks", slow_experiment("pass"))
    results = tmp_path / "results"
    data_dir = results / "synthetic-smoke"
    argv = ["--data", "synthetic", "--scale", "smoke", "--seeds", "1", "--only", "baseline",
            "--results-dir", str(results)]
    assert runner.main(argv, notebooks_dir=notebooks, planned_hash=fake_hash) == 0
    assert "rebuilt floors.json and floor_windows.csv (floors.json: missing)" in capsys.readouterr().out
    floors = json.loads((data_dir / "floors.json").read_text())
    npz = (data_dir / "test_windows.npz").read_bytes()

    (data_dir / "floors.json").unlink()
    (data_dir / "test_windows.npz").write_bytes(npz[: len(npz) // 2])          # truncated
    assert runner.main(argv, notebooks_dir=notebooks, planned_hash=fake_hash) == 0
    out = capsys.readouterr().out
    assert "baseline seed0: reused" in out
    assert "rebuilt floors.json and floor_windows.csv (floors.json: missing)" in out
    assert "rebuilt test_windows.npz and test_windows.csv (test_windows.npz: unreadable" in out
    assert json.loads((data_dir / "floors.json").read_text()) == floors
    assert (data_dir / "test_windows.npz").read_bytes() == npz

    (data_dir / "floors.json").write_text("[]")
    assert runner.main(argv + ["--force"], notebooks_dir=notebooks, planned_hash=fake_hash) == 0
    assert "(floors.json: holds a JSON list, not an object)" in capsys.readouterr().out
    assert json.loads((data_dir / "floors.json").read_text()) == floors
