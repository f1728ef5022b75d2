"""``python run_all.py``: the entry point of the suite (:mod:`storylib.suite`, which says what
a call does), with the names earlier code and the tests use, all defined in the suite's modules."""

from storylib.suite.cli import EXIT_INTERRUPTED, EXIT_USAGE, build_parser, default_jobs, main, parse_args
from storylib.suite.execute import (
    LOCKS_FOLDER,
    NotebookRun,
    ProgressReporter,
    RunAllError,
    RunOutcome,
    execute,
    execute_all,
    exploration_reusable,
    kernel_environment,
    kernel_resources,
    process_environment,
    recorded_hash,
    relativize_papermill_paths,
    settle_without_kernels,
)
from storylib.suite.finish import print_interrupted, print_summary
from storylib.suite.interrupt import Interruption, TrackedKernelManager, signal_name
from storylib.suite.plan import (
    EXPERIMENT_NOTEBOOK,
    EXPLORATION_NOTEBOOK,
    NOTEBOOKS_DIR,
    REPORT_NOTEBOOK,
    check_data_source,
    plan_experiment_runs,
    resolve_scale,
)

__all__ = [
    "EXIT_INTERRUPTED", "EXIT_USAGE", "EXPERIMENT_NOTEBOOK", "EXPLORATION_NOTEBOOK", "Interruption", "LOCKS_FOLDER",
    "NOTEBOOKS_DIR", "NotebookRun", "ProgressReporter", "REPORT_NOTEBOOK", "RunAllError", "RunOutcome",
    "TrackedKernelManager", "build_parser", "check_data_source", "default_jobs", "execute", "execute_all",
    "exploration_reusable", "kernel_environment", "kernel_resources", "main", "parse_args", "plan_experiment_runs",
    "print_interrupted", "print_summary", "process_environment", "recorded_hash", "relativize_papermill_paths",
    "resolve_scale",
    "settle_without_kernels", "signal_name",
]  # fmt: skip
