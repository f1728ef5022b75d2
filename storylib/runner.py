"""``python run_all.py``: run every notebook of the suite headlessly through papermill.

Order: ``01_data_exploration`` (it also builds the data cache the experiments share), then
every experiment × seed of ``02_experiment`` (``--jobs`` kernels at a time), then
``03_comparison_report``, converted to ``report.html``. Executed copies go under the results
folder ``<results-dir>/<data label>-<scale>``, never into ``notebooks/``, so runs of different
data or scale never mix and the jupytext pairs stay clean.

A finished run (``test_metrics.json`` with the config hash this call would produce) is reused
unless ``--force``, so an interrupted call continues where it stopped. A failing notebook does
not stop the others; the failures are listed at the end (notebook, cell, error) and the exit
status is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from storylib.config import SCALES, available_experiments
from storylib.io import atomic_write_text, is_interactive

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
EXPLORATION_NOTEBOOK = "01_data_exploration.ipynb"
EXPERIMENT_NOTEBOOK = "02_experiment.ipynb"
REPORT_NOTEBOOK = "03_comparison_report.ipynb"

# (experiment, data, scale, seed) -> the config hash a run with these parameters will record
PlannedHash = Callable[[str, str, str, int], str]


@dataclass
class NotebookRun:
    """One papermill execution: which notebook, where its executed copy goes, with what."""

    label: str                 # e.g. "02_experiment baseline seed0"
    notebook: Path
    output: Path
    parameters: dict
    reused: bool = False


@dataclass
class RunOutcome:
    run: NotebookRun
    status: str                # "ok" | "reused" | "failed"
    seconds: float = 0.0
    cell_index: int | None = None
    cell_source: str = ""
    ename: str = ""
    evalue: str = ""

    def failure_line(self) -> str:
        cell = f"cell {self.cell_index}" if self.cell_index is not None else "before any cell ran"
        source = self.cell_source.strip().splitlines()[0] if self.cell_source.strip() else ""
        where = f"{cell} (`{source}`)" if source else cell
        return f"{self.run.notebook.name} [{self.run.label}] {where}: {self.ename}: {self.evalue}\n    executed copy: {self.run.output}"


# --------------------------------------------------------------------------- arguments


def build_parser(known_experiments: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_all.py",
        description=(
            "Run the storylib notebook suite through papermill: data exploration, every "
            "experiment x seed, and the comparison report (report.html). Results go to "
            "<results-dir>/<data>-<scale>/. The notebook kernels get the scale as a parameter: "
            "STORYLIB_SCALE in your environment is ignored (unset for them)."
        ),
    )
    parser.add_argument("--data", default="auto",
                        help="auto (StoryReasoning when cached or reachable, else synthetic), "
                             "storyreasoning, synthetic, or a folder of parquet files (default: auto)")
    parser.add_argument("--scale", default="auto", choices=("auto", *SCALES),
                        help="auto = full with a CUDA GPU, else cpu (default: auto)")
    parser.add_argument("--only", nargs="+", metavar="EXP", default=None,
                        help=f"experiments to run (default: all): {', '.join(known_experiments)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per experiment (default: 3)")
    parser.add_argument("--results-dir", default="results", help="results root (default: results)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="notebook kernels at a time (default: 2 on machines with 2 or more cores); "
                             "each kernel gets cores/jobs torch threads")
    parser.add_argument("--force", action="store_true", help="rerun finished runs instead of reusing them")
    return parser


def parse_args(argv: Sequence[str] | None, known_experiments: Sequence[str]) -> argparse.Namespace:
    parser = build_parser(known_experiments)
    args = parser.parse_args(argv)
    if args.only:
        unknown = [name for name in args.only if name not in known_experiments]
        if unknown:
            parser.error(f"unknown experiment(s) {', '.join(unknown)}; known experiments: {', '.join(known_experiments)}")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def resolve_scale(scale: str) -> str:
    """``auto`` → ``full`` where CUDA is available, else ``cpu``; others pass through."""
    if scale != "auto":
        return scale
    import torch

    return "full" if torch.cuda.is_available() else "cpu"


def default_jobs(cores: int | None = None) -> int:
    cores = cores or os.cpu_count() or 1
    return 2 if cores >= 2 else 1


def kernel_environment(jobs: int, base: dict[str, str] | None = None, cores: int | None = None) -> dict[str, str]:
    """The environment every notebook kernel starts with.

    Progress bars off (tqdm floods papermill's output), cores/jobs threads per kernel, no
    ``STORYLIB_SCALE`` (the scale is a parameter) and no ``MPLBACKEND`` (ipykernel then uses
    the inline backend, so figures land in the executed notebooks and report.html).
    """
    env = dict(os.environ if base is None else base)
    threads = str(max(1, (cores or os.cpu_count() or 1) // max(1, jobs)))
    env.update({"STORYLIB_NO_PROGRESS": "1", "STORYLIB_THREADS": threads, "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    for name in ("STORYLIB_SCALE", "STORYLIB_RESULTS_DIR", "MPLBACKEND"):
        env.pop(name, None)
    return env


@contextmanager
def process_environment(env: dict[str, str]) -> Iterator[None]:
    """Kernels inherit this process's environment at start, so set it for the duration."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --------------------------------------------------------------------------- planning


def recorded_hash(run_dir: Path) -> str | None:
    """The config hash in ``run_dir/test_metrics.json``, or None when the run is unfinished."""
    path = run_dir / "test_metrics.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("config_hash")
    except (OSError, ValueError):
        return None


def default_planned_hash(experiment: str, data: str, scale: str, seed: int) -> str:
    from storylib.experiment import planned_config_hash

    return planned_config_hash(experiment, data, scale, seed)


def plan_experiment_runs(experiments: Sequence[str], seeds: int, data: str, scale: str, results_dir: Path | str,
                         data_dir: Path, notebooks_dir: Path, force: bool, planned_hash: PlannedHash) -> list[NotebookRun]:
    """Every experiment × seed, seed-major (all experiments' seed 0 finish first)."""
    runs = []
    for seed in range(seeds):
        for experiment in experiments:
            run_dir = data_dir / experiment / f"seed{seed}"
            reused = not force and recorded_hash(run_dir) == planned_hash(experiment, data, scale, seed)
            runs.append(NotebookRun(
                label=f"{experiment} seed{seed}", notebook=notebooks_dir / EXPERIMENT_NOTEBOOK,
                output=run_dir / "experiment.ipynb",
                parameters={"experiment": experiment, "data": data, "scale": scale, "seed": seed,
                            "results_dir": str(results_dir), "device": "auto"},
                reused=reused))
    return runs


def exploration_reusable(output: Path, parameters: dict) -> bool:
    """An executed data exploration with the same parameters that raised nothing."""
    try:
        metadata = json.loads(output.read_text(encoding="utf-8"))["metadata"]["papermill"]
    except (OSError, ValueError, KeyError):
        return False
    return metadata.get("parameters") == parameters and not metadata.get("exception") and bool(metadata.get("end_time"))


# --------------------------------------------------------------------------- execution


def execute(run: NotebookRun, cwd: Path) -> RunOutcome:
    """Execute one notebook with papermill; a failure is returned, never raised."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    if run.reused:
        return RunOutcome(run, "reused")
    run.output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        # The kernel's own log (an unencrypted-TCP warning at every start, a KeyboardInterrupt
        # line at shutdown) is noise on this terminal; errors in cells reach the executed copy.
        papermill.execute_notebook(str(run.notebook), str(run.output), parameters=run.parameters,
                                   kernel_name="python3", cwd=str(cwd), progress_bar=False, log_output=False,
                                   extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    except PapermillExecutionError as error:
        return RunOutcome(run, "failed", time.perf_counter() - start, error.cell_index, error.source or "",
                          error.ename, error.evalue)
    except Exception as error:  # noqa: BLE001 - a dead kernel or unreadable notebook is one failed run
        return RunOutcome(run, "failed", time.perf_counter() - start, None, "", type(error).__name__, str(error))
    return RunOutcome(run, "ok", time.perf_counter() - start)


class ProgressReporter:
    """One tqdm bar over the runs when interactive, one plain line per finished run otherwise."""

    def __init__(self, total: int, interactive: bool | None = None):
        self.total, self.done = total, 0
        self.bar = None
        if is_interactive() if interactive is None else interactive:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="notebooks", unit="run")

    def finished(self, outcome: RunOutcome) -> None:
        self.done += 1
        line = f"[{self.done:>{len(str(self.total))}}/{self.total}] {outcome.run.label}: {outcome.status}"
        if outcome.status != "reused":
            line += f" ({outcome.seconds:.1f} s)"
        if outcome.status == "failed":
            line += f": {outcome.ename}: {outcome.evalue.splitlines()[0] if outcome.evalue else ''}"
        if self.bar is not None:
            self.bar.set_postfix_str(f"{outcome.run.label} {outcome.status}")
            self.bar.update(1)
            if outcome.status == "failed":
                self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def execute_all(runs: Sequence[NotebookRun], jobs: int, cwd: Path, reporter: ProgressReporter) -> list[RunOutcome]:
    """Run ``runs`` with ``jobs`` kernels at a time; outcomes in the order of ``runs``."""
    outcomes: dict[int, RunOutcome] = {}
    pending = []
    for position, run in enumerate(runs):
        if run.reused:
            outcomes[position] = RunOutcome(run, "reused")
            reporter.finished(outcomes[position])
        else:
            pending.append(position)
    if pending:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(pending)))) as pool:
            futures = {pool.submit(execute, runs[p], cwd): p for p in pending}
            for future in as_completed(futures):
                outcomes[futures[future]] = future.result()
                reporter.finished(outcomes[futures[future]])
    return [outcomes[p] for p in range(len(runs))]


def write_html_report(notebook: Path, html_path: Path) -> Path:
    """Convert an executed notebook to a standalone HTML page (atomically), titled by the data
    and scale of its folder (:func:`storylib.reporting.report_html`)."""
    from storylib.reporting import report_html

    return atomic_write_text(html_path, report_html(notebook, html_path.parent))


def print_summary(data_dir: Path) -> None:
    from storylib import reporting

    runs = reporting.collect_runs(data_dir)
    if runs.empty:
        print(reporting.no_runs_message(data_dir))
        return
    import pandas as pd

    table = reporting.summary_table(runs, reporting.load_floors(data_dir))
    columns = ["n_seeds", "image_mae", "image_ssim", "text_perplexity", "chrf", "rouge_l", "prediction_spread"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[columns].to_string())


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None, *, notebooks_dir: Path | str | None = None,
         planned_hash: PlannedHash | None = None) -> int:
    """Parse ``argv`` and run the suite; returns the exit status (0 all ran, 1 a notebook failed).

    ``notebooks_dir`` and ``planned_hash`` exist for tests (throwaway notebooks, a fake hash).
    """
    known = available_experiments()
    args = parse_args(argv, known)
    from storylib.data.sources import resolve_source, source_label

    data = resolve_source(args.data)
    if data not in ("storyreasoning", "synthetic"):
        data = str(Path(data).expanduser().resolve())     # kernels run in notebooks/
    scale = resolve_scale(args.scale)
    results_dir = Path(args.results_dir).expanduser().resolve()
    data_dir = results_dir / f"{source_label(data)}-{scale}"
    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else NOTEBOOKS_DIR
    experiments = [name for name in known if name in args.only] if args.only else list(known)
    jobs = args.jobs or default_jobs()
    print(f"data: {data}   scale: {scale}   results: {data_dir}", flush=True)
    print(f"experiments: {', '.join(experiments)} x {args.seeds} seed(s), {jobs} job(s)", flush=True)
    if os.environ.get("STORYLIB_SCALE"):
        print(f"note: STORYLIB_SCALE={os.environ['STORYLIB_SCALE']} is ignored by run_all.py (scale {scale} is used)")

    # relative to the kernels' working folder, so no executed notebook or report shows this machine's paths
    kernel_results_dir = os.path.relpath(results_dir, notebooks_dir)
    exploration_parameters = {"data": data, "scale": scale, "results_dir": kernel_results_dir}
    exploration = NotebookRun("01_data_exploration", notebooks_dir / EXPLORATION_NOTEBOOK,
                              data_dir / "data_exploration.ipynb", exploration_parameters)
    exploration.reused = not args.force and exploration_reusable(exploration.output, exploration_parameters)
    experiment_runs = plan_experiment_runs(experiments, args.seeds, data, scale, kernel_results_dir, data_dir, notebooks_dir,
                                           args.force, planned_hash or default_planned_hash)
    report = NotebookRun("03_comparison_report", notebooks_dir / REPORT_NOTEBOOK,
                         data_dir / "comparison_report.ipynb", dict(exploration_parameters))
    reporter = ProgressReporter(2 + len(experiment_runs))
    started = time.perf_counter()
    with process_environment(kernel_environment(jobs)):
        outcomes = execute_all([exploration], 1, notebooks_dir, reporter)
        outcomes += execute_all(experiment_runs, jobs, notebooks_dir, reporter)
        outcomes += execute_all([report], 1, notebooks_dir, reporter)
    reporter.close()

    html_path = data_dir / "report.html"
    if report.output.is_file():
        write_html_report(report.output, html_path)
    reused = sum(outcome.status == "reused" for outcome in outcomes)
    failures = [outcome for outcome in outcomes if outcome.status == "failed"]
    print(f"\n{len(outcomes)} notebooks in {time.perf_counter() - started:.0f} s: "
          f"{len(outcomes) - reused - len(failures)} ran, {reused} reused, {len(failures)} failed")
    print_summary(data_dir)
    if html_path.is_file():
        print(f"\nreport: {html_path}")
    if failures:
        print(f"\n{len(failures)} notebook(s) failed:", file=sys.stderr)
        for outcome in failures:
            print("  " + outcome.failure_line(), file=sys.stderr)
        return 1
    return 0
