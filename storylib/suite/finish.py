"""After the runs: the results folder's shared files, the report (rebuilt only when what it reads
changed), the summary, and what to say after an interruption."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from storylib.io import atomic_write_text
from storylib.results.contract import FLOORS_FILE, REPORT_HTML, REPORT_INPUTS_FILE
from storylib.suite.execute import NotebookRun, RunAllError, RunOutcome

# (experiment, data, scale, results_dir) -> notes on the shared files it checked or rebuilt
SharedFiles = Callable[[str, str, str, Path], list[str]]


def default_shared_files(experiment: str, data: str, scale: str, results_dir: Path) -> list[str]:
    from storylib.experiment import refresh_shared_files

    return refresh_shared_files(experiment, data, scale, results_dir)


def run_shared_files(shared_files: SharedFiles, experiment: str, data: str, scale: str, results_dir: Path,
                     data_dir: Path) -> RunOutcome | None:
    """Check (and rebuild) the folder's shared files (under their lock, taken by
    :func:`storylib.experiment.ensure_shared_files`); a failed outcome, or None."""
    step = NotebookRun("shared files (floors, saved test windows)", Path("run_all.py"), data_dir / FLOORS_FILE, {})
    started = time.perf_counter()
    try:
        for note in shared_files(experiment, data, scale, results_dir):
            print(note, flush=True)
    except Exception as error:  # noqa: BLE001 - reported with the failures, the summary still prints
        return RunOutcome(step, "failed", time.perf_counter() - started, None, "", type(error).__name__,
                          " ".join(str(error).split()))
    return None


def report_digest(data_dir: Path, report: NotebookRun) -> str | None:
    """The digest of the report's inputs (:func:`storylib.reporting.report_inputs_digest`);
    None, and the report is built, when a file cannot be read."""
    from storylib.report.files import report_inputs_digest

    try:
        return report_inputs_digest(data_dir, report.notebook, report.parameters)
    except Exception as error:  # noqa: BLE001 - a digest that cannot be made only costs a rebuild
        print(f"the report's inputs cannot be hashed ({type(error).__name__}: {error}); rebuilding it", file=sys.stderr)
        return None


def report_current(data_dir: Path, digest: str) -> bool:
    from storylib.report.files import report_is_current

    return report_is_current(data_dir, digest)


def build_report_html(outcome: RunOutcome, html_path: Path, digest: str | None,
                      step_failures: list[RunOutcome]) -> str:
    """Convert the comparison notebook to report.html only when notebook 03 finished in this
    call (never a previous call's notebook after a failure), record the inputs' digest, and
    return the line that announces it (or says why there is no new report)."""
    from storylib.report.files import record_report_inputs

    data_dir = html_path.parent
    if outcome.status == "reused":
        return (f"report: {html_path} (unchanged: nothing it reads changed since it was built; "
                f"{REPORT_INPUTS_FILE} holds the digest of its inputs)")
    if outcome.status != "ok":
        (data_dir / REPORT_INPUTS_FILE).unlink(missing_ok=True)    # the next call rebuilds it
        older = " (the report.html there is from an earlier call)" if html_path.is_file() else ""
        return f"report.html not built: notebook 03 did not finish in this call{older}; see the failures below"
    try:
        write_html_report(outcome.run.output, html_path)
    except RunAllError as error:
        step_failures.append(RunOutcome(NotebookRun(REPORT_HTML, Path("run_all.py"), html_path, {}), "failed",
                                        ename="RunAllError", evalue=str(error)))
        (data_dir / REPORT_INPUTS_FILE).unlink(missing_ok=True)
        return "report.html not built; see the failures below"
    if digest is not None:
        try:
            record_report_inputs(data_dir, digest)
        except OSError as error:
            print(f"{REPORT_INPUTS_FILE} cannot be written ({error.strerror or error}); the next call rebuilds the "
                  "report", file=sys.stderr)
    return f"report: {html_path}"


def write_html_report(notebook: Path, html_path: Path) -> Path:
    """Convert an executed notebook to a standalone HTML page (atomically), titled by the data
    and scale of its folder (:func:`storylib.reporting.report_html`); a :class:`RunAllError`
    naming the file when the notebook is empty or damaged or the page cannot be written."""
    from storylib.report.files import report_html

    try:
        if notebook.stat().st_size == 0:
            raise ValueError("the file is empty")
        return atomic_write_text(html_path, report_html(notebook, html_path.parent))
    except OSError as error:
        raise RunAllError(f"{html_path} cannot be written ({error.strerror or error}); free disk space or "
                          "make the folder writable, then rerun (finished runs are reused)") from None
    except Exception as error:  # noqa: BLE001 - nbformat raises many kinds for a damaged notebook
        raise RunAllError(f"{notebook} cannot be converted to {html_path.name} ({type(error).__name__}: "
                          f"{' '.join(str(error).split())[:200]}); it is empty or damaged (a full disk?): free "
                          "disk space and rerun (finished runs are reused)") from None


def print_summary(data_dir: Path) -> None:
    """The metrics table of the folder's current runs, then the runs the report could not use
    (stale, failed, interrupted, missing: as the report lists them); one line instead of a
    traceback when a file of the folder cannot be read."""
    from storylib import reporting

    try:
        runs = reporting.collect_runs(data_dir)
        if runs.empty:
            print(reporting.no_runs_message(data_dir))
        else:
            import pandas as pd

            table = reporting.summary_table(runs, reporting.load_floors(data_dir))
            columns = ["n_seeds", "image_mae", "image_ssim", "text_perplexity", "chrf", "rouge_l", "prediction_spread"]
            with pd.option_context("display.width", 200, "display.max_columns", 20):
                print(table[columns].to_string())
        unusable = reporting.unusable_runs_text(data_dir)      # stale, failed, interrupted, missing
        if unusable:
            print("\n" + unusable)
    except Exception as error:  # noqa: BLE001 - the summary must not hide what ran
        print(f"\nthe metrics summary of {data_dir} cannot be printed ({type(error).__name__}: "
              f"{' '.join(str(error).split())[:300]})", file=sys.stderr)


def print_interrupted(outcomes: Sequence[RunOutcome], started: float, cause: str = "Ctrl-C") -> None:
    """After Ctrl-C (or SIGTERM, ``cause``): which runs finished, which were interrupted (they
    resume) and which never started."""
    groups = {
        "finished": [o for o in outcomes if o.status in ("ok", "reused")],
        "interrupted (resumes from its last checkpoint on the next call)": [o for o in outcomes if o.status == "interrupted"],
        "lost mid-run, its Ray worker died (resumes from its last checkpoint on the next call)":
            [o for o in outcomes if o.status == "lost"],
        "failed": [o for o in outcomes if o.status == "failed"],
        "not started": [o for o in outcomes if o.status == "not started"],
    }
    print(f"\nInterrupted by {cause} after {time.perf_counter() - started:.0f} s.", file=sys.stderr)
    for title, members in groups.items():
        if members:
            print(f"{title} ({len(members)}): {', '.join(o.run.label for o in members)}", file=sys.stderr)
    print("Run the same command again to continue: finished runs are reused.", file=sys.stderr)
