"""storylib.runner with throwaway notebooks: failures listed, finished runs reused, --force."""

from __future__ import annotations

import json

import nbformat
import pytest

from storylib import runner
from storylib.runs import CONTRACT_KEYS

FAKE_EXPERIMENT = '''
import json, pathlib
run_dir = pathlib.Path(results_dir) / f"synthetic-{scale}" / experiment / f"seed{seed}"
with open(pathlib.Path(results_dir) / "executions.log", "a") as log:
    log.write(f"{experiment} seed{seed}\\n")
if experiment == "vae":
    raise ValueError("boom in vae")
run_dir.mkdir(parents=True, exist_ok=True)
metrics = dict.fromkeys(CONTRACT_KEYS, 0.0)
metrics["config_hash"] = f"hash-{experiment}-{seed}"
(run_dir / "test_metrics.json").write_text(json.dumps(metrics))
'''.replace("CONTRACT_KEYS", repr(CONTRACT_KEYS))


def fake_hash(experiment: str, data: str, scale: str, seed: int) -> str:
    return f"hash-{experiment}-{seed}"


def write_notebook(path, parameters: str, *cells: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameter_cell = nbformat.v4.new_code_cell(parameters)
    parameter_cell.metadata["tags"] = ["parameters"]
    notebook.cells = [parameter_cell, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(notebook, str(path))


@pytest.fixture(scope="module")
def notebooks_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notebooks")
    shared = 'data = "auto"\nscale = "cpu"\nresults_dir = "../results"'
    write_notebook(folder / runner.EXPLORATION_NOTEBOOK, shared, "print('explored', data)")
    write_notebook(folder / runner.EXPERIMENT_NOTEBOOK, shared + '\nexperiment = "baseline"\nseed = 0\ndevice = "auto"',
                   FAKE_EXPERIMENT)
    write_notebook(folder / runner.REPORT_NOTEBOOK, shared, "print('comparison report for', scale)")
    return folder


def no_shared_files(*_) -> list[str]:
    return []


def run(notebooks_dir, results_dir, *extra: str) -> int:
    argv = ["--data", "synthetic", "--scale", "smoke", "--seeds", "1", "--results-dir", str(results_dir),
            "--jobs", "2", *extra]
    return runner.main(argv, notebooks_dir=notebooks_dir, planned_hash=fake_hash, shared_files=no_shared_files)


def executions(results_dir) -> list[str]:
    return (results_dir / "executions.log").read_text().splitlines()


def test_failure_is_listed_others_finish_then_finished_runs_are_reused_and_force_reruns(
        notebooks_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STORYLIB_SCALE", "full")          # must not reach the kernels
    results_dir = tmp_path / "results"
    data_dir = results_dir / "synthetic-smoke"

    assert run(notebooks_dir, results_dir, "--only", "baseline", "vae") == 1
    captured = capsys.readouterr()
    assert f"results: {data_dir}" in captured.out
    assert "STORYLIB_SCALE=full is ignored" in captured.out
    failure = captured.err
    assert "02_experiment.ipynb [vae seed0] cell 2" in failure          # 0 parameters, 1 injected, 2 failing
    assert "ValueError: boom in vae" in failure
    assert f"executed copy: {data_dir / 'vae' / 'seed0' / 'experiment.ipynb'}" in failure
    assert (data_dir / "vae" / "seed0" / "experiment.ipynb").is_file()   # kept for reading
    assert (data_dir / "baseline" / "seed0" / "test_metrics.json").is_file()
    assert (data_dir / "data_exploration.ipynb").is_file()
    assert "comparison report for" in (data_dir / "report.html").read_text()
    assert sorted(executions(results_dir)) == ["baseline seed0", "vae seed0"]
    executed = json.loads((data_dir / "baseline" / "seed0" / "experiment.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"]["scale"] == "smoke"
    assert not (notebooks_dir / "baseline").exists()

    assert run(notebooks_dir, results_dir, "--only", "baseline") == 0
    out = capsys.readouterr().out
    assert "baseline seed0: reused" in out and "01_data_exploration: reused" in out
    assert "1 ran, 2 reused, 0 failed" in out                            # only the report ran
    assert sorted(executions(results_dir)) == ["baseline seed0", "vae seed0"]

    assert run(notebooks_dir, results_dir, "--only", "baseline", "--force") == 0
    assert "3 ran, 0 reused" in capsys.readouterr().out
    assert sorted(executions(results_dir)) == ["baseline seed0", "baseline seed0", "vae seed0"]


def test_a_changed_config_hash_reruns(tmp_path):
    run_dir = tmp_path / "synthetic-smoke" / "baseline" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "test_metrics.json").write_text(json.dumps({**dict.fromkeys(CONTRACT_KEYS, 0.0),
                                                           "config_hash": "hash-baseline-0"}))
    plan = runner.plan_experiment_runs(["baseline"], 2, "synthetic", "smoke", tmp_path, tmp_path / "synthetic-smoke",
                                       tmp_path, force=False, planned_hash=fake_hash)
    assert [(r.label, r.reused) for r in plan] == [("baseline seed0", True), ("baseline seed1", False)]
    changed = runner.plan_experiment_runs(["baseline"], 1, "synthetic", "smoke", tmp_path, tmp_path / "synthetic-smoke",
                                          tmp_path, force=False, planned_hash=lambda *a: "other")
    assert not changed[0].reused
    assert changed[0].output == run_dir / "experiment.ipynb"
    assert changed[0].parameters == {"experiment": "baseline", "data": "synthetic", "scale": "smoke", "seed": 0,
                                     "results_dir": str(tmp_path), "device": "auto"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--only", "baseline", "nosuch"], "unknown experiment(s) nosuch; known experiments: baseline, both"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--scale", "huge"], "invalid choice: 'huge'"),
])
def test_arguments_are_validated(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        runner.parse_args(argv, ["baseline", "both", "vae"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults():
    args = runner.parse_args([], ["baseline"])
    assert (args.data, args.scale, args.seeds, args.results_dir, args.force, args.only) == (
        "auto", "auto", 3, "results", False, None)
    assert runner.default_jobs(cores=1) == 1 and runner.default_jobs(cores=16) == 2
    assert runner.resolve_scale("smoke") == "smoke"


def test_kernel_environment_splits_cores_and_drops_the_scale_switch():
    env = runner.kernel_environment(jobs=2, base={"STORYLIB_SCALE": "smoke", "MPLBACKEND": "Agg", "KEEP": "1"}, cores=8)
    assert env["STORYLIB_THREADS"] == env["OMP_NUM_THREADS"] == "4"
    assert env["STORYLIB_NO_PROGRESS"] == "1" and env["KEEP"] == "1"
    assert "STORYLIB_SCALE" not in env and "MPLBACKEND" not in env
    assert runner.kernel_environment(jobs=4, base={}, cores=2)["STORYLIB_THREADS"] == "1"


def test_an_executed_copy_names_no_folder_of_the_machine(tmp_path):
    import nbformat

    from storylib.runner import relativize_papermill_paths

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["papermill"] = {"input_path": str(tmp_path / "notebooks" / "02_experiment.ipynb"),
                                      "output_path": str(tmp_path / "results" / "experiment.ipynb"), "parameters": {"seed": 1}}
    path = tmp_path / "experiment.ipynb"
    path.write_text(nbformat.writes(notebook))
    relativize_papermill_paths(path)
    recorded = nbformat.read(str(path), as_version=4).metadata["papermill"]
    assert recorded == {"input_path": "notebooks/02_experiment.ipynb", "output_path": "experiment.ipynb", "parameters": {"seed": 1}}
    assert str(tmp_path) not in path.read_text()


# --------------------------------------------------------------------------- the report phase (issue 17, 16)

REPORT_CELL = '''
import pathlib
with open(pathlib.Path(results_dir) / "executions.log", "a") as log:
    log.write("report\\n")
if (pathlib.Path(results_dir) / "fail-report").exists():
    raise RuntimeError("report boom")
print("comparison report for", scale, "update_reference" in dir() and update_reference)
'''


@pytest.fixture()
def report_notebooks(tmp_path):
    """Throwaway notebooks whose report fails while a flag file exists in the results root."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shared = 'data = "auto"\nscale = "cpu"\nresults_dir = "../results"'
    write_notebook(folder / runner.EXPLORATION_NOTEBOOK, shared, "print('explored', data)")
    write_notebook(folder / runner.EXPERIMENT_NOTEBOOK, shared + '\nexperiment = "baseline"\nseed = 0\ndevice = "auto"',
                   FAKE_EXPERIMENT)
    write_notebook(folder / runner.REPORT_NOTEBOOK, shared + "\nupdate_reference = False", REPORT_CELL)
    return folder


def test_a_failed_report_is_neither_rebuilt_from_the_old_notebook_nor_announced(report_notebooks, tmp_path, capsys):
    results_dir = tmp_path / "results"
    html = results_dir / "synthetic-smoke" / "report.html"
    assert run(report_notebooks, results_dir, "--only", "baseline") == 0
    assert f"report: {html}" in capsys.readouterr().out
    assert "comparison report for smoke True" in html.read_text()        # run_all.py asks to update
    before = html.stat().st_mtime_ns

    (results_dir / "fail-report").touch()
    assert run(report_notebooks, results_dir, "--only", "baseline", "--force") == 1
    captured = capsys.readouterr()
    assert "\nreport: " not in captured.out and "report.html (" not in captured.out
    assert "report.html not built: notebook 03 did not finish in this call" in captured.out
    assert "RuntimeError: report boom" in captured.err
    assert html.stat().st_mtime_ns == before                               # not rebuilt from the failed copy
    assert not (results_dir / "synthetic-smoke" / "report_inputs.json").exists()

    (results_dir / "fail-report").unlink()          # fixed: the next call builds it, though no input changed
    assert run(report_notebooks, results_dir, "--only", "baseline") == 0
    assert f"report: {html}\n" in capsys.readouterr().out
    assert html.stat().st_mtime_ns != before


def test_a_rerun_that_reuses_everything_starts_no_report_kernel_until_an_input_changes(report_notebooks, tmp_path, capsys):
    results_dir = tmp_path / "results"
    data_dir = results_dir / "synthetic-smoke"
    assert run(report_notebooks, results_dir, "--only", "baseline") == 0
    capsys.readouterr()
    assert executions(results_dir).count("report") == 1
    built = (data_dir / "report.html").stat().st_mtime_ns

    assert run(report_notebooks, results_dir, "--only", "baseline") == 0
    out = capsys.readouterr().out
    assert "03_comparison_report: reused" in out and "0 ran, 3 reused" in out
    assert "(unchanged: nothing it reads changed since it was built; report_inputs.json" in out
    assert executions(results_dir).count("report") == 1                      # no kernel
    assert (data_dir / "report.html").stat().st_mtime_ns == built

    floors = data_dir / "floors.json"                                        # something the report reads
    floors.write_text('{"median_image": {"image_mae": 0.2}}')
    assert run(report_notebooks, results_dir, "--only", "baseline") == 0
    assert "03_comparison_report: ok" in capsys.readouterr().out
    assert executions(results_dir).count("report") == 2


def test_the_plan_and_how_each_run_ended_are_recorded_for_the_report(notebooks_dir, tmp_path, capsys):
    from storylib import reporting

    results_dir = tmp_path / "results"
    data_dir = results_dir / "synthetic-smoke"
    assert run(notebooks_dir, results_dir, "--only", "baseline", "vae", "--seeds", "2") == 1
    plan = reporting.read_plan(data_dir)
    assert plan["experiments"] == ["baseline", "vae"] and plan["seeds"] == [0, 1]
    assert plan["outcomes"]["vae/seed0"]["status"] == "failed"
    assert "ValueError: boom in vae" in plan["outcomes"]["vae/seed0"]["error"]
    unusable = reporting.unusable_runs(data_dir).set_index(["experiment", "seed"])
    assert unusable.loc[("vae", 0), "status"] == "failed"
    assert "cell 2: ValueError: boom in vae" in unusable.loc[("vae", 0), "why"]


def test_data_that_names_a_file_says_it_is_a_file_not_a_folder(tmp_path, capsys):
    readme = runner.NOTEBOOKS_DIR.parent / "README.md"
    assert runner.main(["--data", str(readme), "--results-dir", str(tmp_path / "results")]) == runner.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"--data {readme}: {readme} is a file, not a folder" in err
    assert "folder of parquet files" in err and "Nothing was run" in err
    assert not (tmp_path / "results").exists()
    parquet = tmp_path / "train-0.parquet"
    parquet.write_bytes(b"PAR1")
    with pytest.raises(runner.RunAllError, match=f"e.g. --data {tmp_path}"):
        runner.check_data_source(str(parquet))


def test_the_summary_lists_the_planned_runs_that_failed(notebooks_dir, tmp_path, capsys):
    results_dir = tmp_path / "results"
    assert run(notebooks_dir, results_dir, "--only", "baseline", "vae") == 1
    out = capsys.readouterr().out
    assert "Planned runs with no result (1 failed; plan: run_plan.json" in out
    assert "- vae/seed0: failed: cell 2: ValueError: boom in vae" in out
