"""What a call runs: every experiment × seed, each reused when its record has the planned
configuration hash; and the checks made before any kernel starts (data source, results folder)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

from storylib.colab import default_scale
from storylib.results.contract import EXECUTED_RUN, PLAN_FILE, run_folder
from storylib.runs import checkpoint_problem, finished_hash
from storylib.suite.execute import NotebookRun, RunAllError, RunOutcome

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
EXPLORATION_NOTEBOOK = "01_data_exploration.ipynb"
EXPERIMENT_NOTEBOOK = "02_experiment.ipynb"
REPORT_NOTEBOOK = "03_comparison_report.ipynb"

# (experiment, data, scale, seed) -> the config hash a run with these parameters will record
PlannedHash = Callable[[str, str, str, int], str]


def resolve_scale(scale: str) -> str:
    """``auto`` → :func:`storylib.colab.default_scale` (``full`` where CUDA is available, else
    ``cpu``); others pass through. Unlike the notebooks' rule (:func:`storylib.locations.resolve_scale`)
    ``STORYLIB_SCALE`` plays no part: run_all.py's scale is its ``--scale``."""
    return default_scale() if scale == "auto" else scale


def default_planned_hash(experiment: str, data: str, scale: str, seed: int) -> str:
    from storylib.experiment import planned_config_hash

    return planned_config_hash(experiment, data, scale, seed)


def plan_experiment_runs(experiments: Sequence[str], seeds: int, data: str, scale: str, results_dir: Path | str,
                         data_dir: Path, notebooks_dir: Path, force: bool, planned_hash: PlannedHash) -> list[NotebookRun]:
    """Every experiment × seed, seed-major (all experiments' seed 0 finish first).

    A run is reused when its record has the planned hash and its ``best.pt`` is the file the
    record names; a replaced ``best.pt`` is said on stderr (naming it) and the run trains again.
    """
    runs = []
    for seed in range(seeds):
        for experiment in experiments:
            run_dir = run_folder(data_dir, experiment, seed)
            planned = planned_hash(experiment, data, scale, seed)
            problem = None if force or finished_hash(run_dir) != planned else checkpoint_problem(run_dir)
            if problem:
                print(f"{experiment} seed{seed}: {problem}; not reused, it trains again", file=sys.stderr, flush=True)
            reused = not force and problem is None and finished_hash(run_dir) == planned
            runs.append(NotebookRun(
                label=f"{experiment} seed{seed}", notebook=notebooks_dir / EXPERIMENT_NOTEBOOK,
                output=run_dir / EXECUTED_RUN,
                parameters={"experiment": experiment, "data": data, "scale": scale, "seed": seed,
                            "results_dir": str(results_dir), "device": "auto"},
                reused=reused, planned_hash=planned))
    return runs


def check_data_source(given: str) -> str:
    """The concrete data source of ``--data`` (a folder made absolute: kernels run in
    notebooks/); :class:`RunAllError` with one paragraph when it cannot be used."""
    from storylib.data.sources import DataSourceError, hub_dataset_cached, hub_reachable, local_parquet_files, resolve_source

    try:
        path = Path(given).expanduser()
        if given not in ("auto", "storyreasoning", "synthetic") and path.is_file():
            folder = path.resolve().parent
            raise RunAllError(
                f"--data {given}: {path} is a file, not a folder. --data PATH takes a folder of parquet files in "
                "the StoryReasoning schema (data/train-*.parquet and data/test-*.parquet, or both in the folder "
                f"itself){f', e.g. --data {folder}' if path.suffix == '.parquet' else ''}; or use --data synthetic "
                "for the embedded stand-in. Nothing was run and nothing was written.")
        data = resolve_source(given)
        if data == "storyreasoning" and given != "auto" and not (hub_dataset_cached() or hub_reachable()):
            raise DataSourceError("it is not in the Hugging Face cache and huggingface.co cannot be reached")
        if data not in ("storyreasoning", "synthetic"):
            from storylib.data.prepare import check_local_columns

            local_parquet_files(data)
            check_local_columns(data)
            data = str(Path(data).expanduser().resolve())
    except DataSourceError as error:
        raise RunAllError(
            f"--data {given}: this data source cannot be used: {' '.join(str(error).split())}. "
            "Expected one of: auto (StoryReasoning when cached or reachable, else synthetic), storyreasoning "
            "(the Hugging Face data set daniel3303/StoryReasoning), synthetic (the embedded stand-in, no "
            "download), or a folder of parquet files in the StoryReasoning schema laid out as on the hub "
            "(data/train-*.parquet and data/test-*.parquet, or both in the folder itself). For a first run "
            "without the data set use --data synthetic. Nothing was run and nothing was written."
        ) from None
    return data


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write a probe file in it, or raise :class:`RunAllError` naming it."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
            pass
    except OSError as error:
        raise RunAllError(
            f"the results folder {folder} cannot be written ({error.strerror or error}); make it writable or "
            "choose another with --results-dir DIR. Nothing was run."
        ) from None


def record_plan(data_dir: Path, experiments: Sequence[str], seeds: int, outcomes: Sequence[RunOutcome]) -> None:
    """Write run_plan.json (:func:`storylib.reporting.write_plan`): what this call planned and
    how each experiment run that did not finish ended, so the report lists them with the reason."""
    from storylib.results.folder import write_plan

    ended = {}
    for outcome in outcomes:
        if outcome.run.planned_hash is None or outcome.status in ("ok", "reused"):
            continue
        folder = outcome.run.output.parent
        key = f"{folder.parent.name}/{folder.name}"
        if outcome.status == "failed":
            cell = f"cell {outcome.cell_index}" if outcome.cell_index is not None else "before any cell ran"
            ended[key] = {"status": "failed", "error": f"{cell}: {outcome.ename}: "
                                                       f"{' '.join(outcome.evalue.split())[:300]}"}
        else:
            ended[key] = {"status": outcome.status}
    try:
        write_plan(data_dir, experiments, range(seeds), ended)
    except OSError as error:             # the report then assumes the default plan
        print(f"{PLAN_FILE} cannot be written in {data_dir} ({error.strerror or error})", file=sys.stderr)
