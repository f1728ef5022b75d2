"""``python run_all.py``'s command line: parse, check, plan, execute, finish (see
:mod:`storylib.suite`); exit status 0, 1 (a notebook failed), 2 (bad input, nothing run) or
130 (Ctrl-C or SIGTERM)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from storylib.config import SCALES, ConfigError, available_experiments
from storylib.results.contract import EXECUTED_EXPLORATION, EXECUTED_REPORT, REPORT_HTML, data_folder
from storylib.suite.execute import (
    NotebookRun,
    ProgressReporter,
    RunAllError,
    RunOutcome,
    execute_all,
    exploration_reusable,
    kernel_environment,
    process_environment,
)
from storylib.suite.finish import (
    SharedFiles,
    build_report_html,
    default_shared_files,
    print_interrupted,
    print_summary,
    report_current,
    report_digest,
    run_shared_files,
)
from storylib.suite.interrupt import Interruption, Terminated, install_sigterm_as_interrupt
from storylib.suite.plan import (
    EXPLORATION_NOTEBOOK,
    NOTEBOOKS_DIR,
    REPORT_NOTEBOOK,
    PlannedHash,
    check_data_source,
    check_writable,
    default_planned_hash,
    plan_experiment_runs,
    record_plan,
    resolve_scale,
)

EXIT_INTERRUPTED = 130          # 128 + SIGINT, as a shell reports a process ended by Ctrl-C
EXIT_USAGE = 2


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
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: kernels on this machine (default); ray: every experiment x seed run is a Ray "
                             "task (notebooks 01 and 03 run here); needs pip install -e \".[cluster]\"")
    parser.add_argument("--ray-address", default=None, metavar="ADDRESS",
                        help="with --executor ray: the cluster to use (default: $RAY_ADDRESS when set, else a local "
                             "cluster with --jobs x --ray-cpus-per-task CPUs, default every core)")
    parser.add_argument("--ray-cpus-per-task", type=int, default=1, metavar="N",
                        help="with --executor ray: CPUs (and torch threads) per run; a run also asks for one GPU "
                             "where the cluster has GPUs (default: 1)")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep checkpoints/last.pt of finished runs too (default: a finished run keeps "
                             "checkpoints/best.pt only, the weights its test metrics come from)")
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
    if args.ray_cpus_per_task < 1:
        parser.error("--ray-cpus-per-task must be at least 1")
    if args.executor != "ray" and (args.ray_address or args.ray_cpus_per_task != 1):
        parser.error("--ray-address and --ray-cpus-per-task need --executor ray")
    return args


def default_jobs(cores: int | None = None) -> int:
    cores = cores or os.cpu_count() or 1
    return 2 if cores >= 2 else 1


def main(argv: Sequence[str] | None = None, *, notebooks_dir: Path | str | None = None,
         planned_hash: PlannedHash | None = None, shared_files: SharedFiles | None = None) -> int:
    """Parse ``argv`` and run the suite; returns the exit status (0 all ran, 1 a notebook failed,
    2 bad input found before any kernel started, 130 interrupted by Ctrl-C).

    ``notebooks_dir``, ``planned_hash`` and ``shared_files`` exist for tests (throwaway
    notebooks, a fake hash, a stand-in for the shared-files check). SIGTERM is handled as
    Ctrl-C throughout (exit status 130 too).
    """
    previous = install_sigterm_as_interrupt()
    try:
        return _main(argv, notebooks_dir, planned_hash, shared_files)
    except KeyboardInterrupt as interrupt:   # Ctrl-C or SIGTERM outside the notebooks (planning, summary)
        cause = "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
        print(f"\nInterrupted by {cause}; run the same command again to continue (finished runs are reused).",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None, notebooks_dir: Path | str | None, planned_hash: PlannedHash | None,
          shared_files: SharedFiles | None) -> int:
    known = available_experiments()
    args = parse_args(argv, known)
    from storylib.data.sources import source_label

    # absolute: kernels start there and are given the results folder relative to it
    notebooks_dir = Path(notebooks_dir).resolve() if notebooks_dir is not None else NOTEBOOKS_DIR
    experiments = [name for name in known if name in args.only] if args.only else list(known)
    jobs = args.jobs or default_jobs()
    try:
        data = check_data_source(args.data)
        scale = resolve_scale(args.scale)
        results_dir = Path(args.results_dir).expanduser().resolve()
        data_dir = data_folder(results_dir, source_label(data), scale)
        print(f"data: {data}   scale: {scale}   results: {data_dir}", flush=True)
        workers = f"{jobs} job(s)" if args.executor == "local" else "as Ray tasks"
        print(f"experiments: {', '.join(experiments)} x {args.seeds} seed(s), {workers}", flush=True)
        if os.environ.get("STORYLIB_SCALE"):
            print(f"note: STORYLIB_SCALE={os.environ['STORYLIB_SCALE']} is ignored by run_all.py (scale {scale} is used)")
        try:
            experiment_runs = plan_experiment_runs(experiments, args.seeds, data, scale,
                                                   kernel_results_dir(results_dir, notebooks_dir), data_dir,
                                                   notebooks_dir, args.force, planned_hash or default_planned_hash)
        except ConfigError as error:
            raise RunAllError(f"{' '.join(str(error).split())}. Fix the file and rerun. Nothing was run.") from None
        check_writable(data_dir)
        executor = connect_executor(args, any(not run.reused for run in experiment_runs))
    except RunAllError as error:
        print(f"run_all.py: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _run_notebooks(args, notebooks_dir, experiments, jobs, data, scale, results_dir, data_dir,
                              experiment_runs, executor, shared_files)
    finally:
        if executor is not None:
            executor.close()


def kernel_results_dir(results_dir: Path, notebooks_dir: Path) -> str:
    """The results folder as the notebooks are given it: relative to their working folder, so
    that no executed notebook or report shows this machine's paths."""
    return os.path.relpath(results_dir, notebooks_dir)


def connect_executor(args: argparse.Namespace, needed: bool) -> Any:
    """The Ray executor for ``--executor ray`` (None for ``local``, or when every run is reused
    and no task would be submitted); :class:`RunAllError` when Ray is missing or unreachable."""
    if args.executor != "ray":
        return None
    from storylib.suite.ray_executor import RayExecutor, import_ray

    import_ray()                         # missing Ray is said even when nothing would be submitted
    if not needed:
        print("ray: every run is reused; no task to submit, Ray not started", flush=True)
        return None
    local_cpus = args.jobs * args.ray_cpus_per_task if args.jobs else None
    executor = RayExecutor.connect(args.ray_address, local_cpus=local_cpus, cpus_per_task=args.ray_cpus_per_task,
                                   keep_checkpoints=args.keep_checkpoints)
    install_sigterm_as_interrupt()           # ray.init replaced it with one that exits at once
    return executor


def _run_notebooks(args: argparse.Namespace, notebooks_dir: Path, experiments: list[str], jobs: int, data: str,
                   scale: str, results_dir: Path, data_dir: Path, experiment_runs: list[NotebookRun], executor: Any,
                   shared_files: SharedFiles | None) -> int:
    exploration_parameters = {"data": data, "scale": scale, "results_dir": kernel_results_dir(results_dir, notebooks_dir)}
    exploration = NotebookRun("01_data_exploration", notebooks_dir / EXPLORATION_NOTEBOOK,
                              data_dir / EXECUTED_EXPLORATION, exploration_parameters)
    exploration.reused = not args.force and exploration_reusable(exploration.output, exploration_parameters)
    report = NotebookRun("03_comparison_report", notebooks_dir / REPORT_NOTEBOOK,
                         data_dir / EXECUTED_REPORT, {**exploration_parameters, "update_reference": True})
    reporter = ProgressReporter(2 + len(experiment_runs))
    started = time.perf_counter()
    interruption = Interruption()
    step_failures: list[RunOutcome] = []
    with process_environment(kernel_environment(jobs, keep_checkpoints=args.keep_checkpoints)), interruption.installed():
        outcomes = execute_all([exploration], 1, notebooks_dir, reporter, interruption)
        if executor is not None:            # --executor ray
            outcomes += executor.execute_all(experiment_runs, notebooks_dir, reporter, interruption)
            executor.close()                # its CPUs are free for the report
        else:
            outcomes += execute_all(experiment_runs, jobs, notebooks_dir, reporter, interruption)
        record_plan(data_dir, experiments, args.seeds, outcomes)
        digest = None
        if not interruption.stopping.is_set():
            failed = run_shared_files(shared_files or default_shared_files, experiments[0], data, scale,
                                      results_dir, data_dir)
            step_failures += [failed] if failed else []
            digest = report_digest(data_dir, report)
            report.reused = not args.force and not failed and digest is not None and report_current(data_dir, digest)
        outcomes += execute_all([report], 1, notebooks_dir, reporter, interruption)
    reporter.close()
    if interruption.stopping.is_set():
        print_interrupted(outcomes, started, interruption.cause)
        return EXIT_INTERRUPTED

    html_path = data_dir / REPORT_HTML
    html_note = build_report_html(outcomes[-1], html_path, digest, step_failures)
    reused = sum(outcome.status == "reused" for outcome in outcomes)
    failures = [outcome for outcome in outcomes if outcome.status in ("failed", "lost")] + step_failures
    notebook_failures = len(failures) - len(step_failures)
    print(f"\n{len(outcomes)} notebooks in {time.perf_counter() - started:.0f} s: "
          f"{len(outcomes) - reused - notebook_failures} ran, {reused} reused, {notebook_failures} failed")
    print_summary(data_dir)
    print(f"\n{html_note}")
    if failures:
        print(f"\n{len(failures)} step(s) failed:", file=sys.stderr)
        for outcome in failures:
            print("  " + outcome.failure_line(), file=sys.stderr)
        return 1
    return 0
