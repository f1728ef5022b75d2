"""One notebook through papermill (:func:`execute`), and the local executor (:func:`execute_all`):
``--jobs`` kernels at a time in threads, each in its own working folder, each run under its
folder's lock, a failure returned as an outcome, never raised."""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from storylib.io import LockWaitCancelled, atomic_write_text, exclusive, is_interactive
from storylib.runs import checkpoint_problem, finished_hash
from storylib.suite.interrupt import Interruption

LOCKS_FOLDER = ".locks"


class RunAllError(Exception):
    """Bad input met before any kernel starts: printed as one paragraph, exit status 2."""


@dataclass
class NotebookRun:
    """One papermill execution: which notebook, where its executed copy goes, with what."""

    label: str                 # e.g. "02_experiment baseline seed0"
    notebook: Path
    output: Path
    parameters: dict
    reused: bool = False
    planned_hash: str | None = None   # experiment runs: reused when test_metrics.json records it

    @property
    def lock_path(self) -> Path:
        """One lock per run folder (``<data dir>/.locks/<experiment>-seed<k>.lock``), per notebook otherwise."""
        folder = self.output.parent
        if self.planned_hash is not None:
            return folder.parent.parent / LOCKS_FOLDER / f"{folder.parent.name}-{folder.name}.lock"
        return folder / LOCKS_FOLDER / f"{self.output.stem}.lock"


@dataclass
class RunOutcome:
    run: NotebookRun
    status: str                # "ok" | "reused" | "failed" | "interrupted" | "not started" | "lost" (its Ray worker died)
    seconds: float = 0.0
    cell_index: int | None = None
    cell_source: str = ""
    ename: str = ""
    evalue: str = ""

    def failure_line(self) -> str:
        if self.run.notebook.suffix != ".ipynb":         # a step of run_all.py itself
            return f"{self.run.label}: {self.ename}: {self.evalue}"
        if self.status == "lost":
            return (f"{self.run.notebook.name} [{self.run.label}] lost mid-run ({self.seconds:.0f} s after it was "
                    f"submitted): {self.ename}: {self.evalue}\n    executed copy (as far as it got): {self.run.output}")
        cell = f"cell {self.cell_index}" if self.cell_index is not None else "before any cell ran"
        source = self.cell_source.strip().splitlines()[0] if self.cell_source.strip() else ""
        where = f"{cell} (`{source}`)" if source else cell
        return f"{self.run.notebook.name} [{self.run.label}] {where}: {self.ename}: {self.evalue}\n    executed copy: {self.run.output}"


def kernel_environment(jobs: int, base: dict[str, str] | None = None, cores: int | None = None,
                       keep_checkpoints: bool = False) -> dict[str, str]:
    """The environment every notebook kernel starts with.

    Progress bars off (tqdm floods papermill's output), cores/jobs threads per kernel, no
    ``STORYLIB_SCALE`` (the scale is a parameter) and no ``MPLBACKEND`` (ipykernel then uses
    the inline backend, so figures land in the executed notebooks and report.html);
    ``STORYLIB_KEEP_CHECKPOINTS=1`` with ``--keep-checkpoints``.
    """
    env = dict(os.environ if base is None else base)
    threads = str(max(1, (cores or os.cpu_count() or 1) // max(1, jobs)))
    env.update({"STORYLIB_NO_PROGRESS": "1", "STORYLIB_THREADS": threads, "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    for name in ("STORYLIB_SCALE", "STORYLIB_RESULTS_DIR", "MPLBACKEND", "STORYLIB_KEEP_CHECKPOINTS"):
        env.pop(name, None)
    if keep_checkpoints:
        env["STORYLIB_KEEP_CHECKPOINTS"] = "1"
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


def recorded_hash(run_dir: Path) -> str | None:
    """The config hash of the finished run in ``run_dir``, or None when it is unfinished (no
    ``test_metrics.json``, or one that is not a full record: :func:`storylib.runs.read_test_metrics`)
    or when its ``checkpoints/best.pt`` is not the file it was recorded with
    (:func:`storylib.runs.checkpoint_problem`): such a run is not reused, it trains again."""
    if checkpoint_problem(run_dir) is not None:
        return None
    return finished_hash(run_dir)


def exploration_reusable(output: Path, parameters: dict) -> bool:
    """An executed data exploration with the same parameters that raised nothing."""
    try:
        metadata = json.loads(output.read_text(encoding="utf-8"))["metadata"]["papermill"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return metadata.get("parameters") == parameters and not metadata.get("exception") and bool(metadata.get("end_time"))


def finished_meanwhile(run: NotebookRun) -> bool:
    """After waiting for another process's lock: did it leave a finished run with our parameters?"""
    if run.planned_hash is not None:
        return recorded_hash(run.output.parent) == run.planned_hash
    return exploration_reusable(run.output, run.parameters)


def execute(run: NotebookRun, cwd: Path, interruption: Interruption | None = None) -> RunOutcome:
    """Execute one notebook with papermill; a failure is returned, never raised.

    Holds the run's lock (:attr:`NotebookRun.lock_path`) while it runs: when another process
    holds it, says so, waits, and reuses the run if the other process finished it.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    interruption = interruption or Interruption()
    if run.reused:
        return RunOutcome(run, "reused")
    if interruption.stopping.is_set():
        return RunOutcome(run, "not started")
    start = time.perf_counter()
    try:
        message = f"{run.label}: another process is running it (lock {run.lock_path}); waiting for it to finish"
        with exclusive(run.lock_path, message, should_stop=interruption.stopping.is_set) as waited:
            if waited and finished_meanwhile(run):
                print(f"{run.label}: finished by the other process; reusing it", file=sys.stderr, flush=True)
                return RunOutcome(run, "reused")
            if interruption.stopping.is_set():
                return RunOutcome(run, "not started")
            run.output.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            # The kernel's own log (an unencrypted-TCP warning at every start, a KeyboardInterrupt
            # line at shutdown) is noise on this terminal; errors in cells reach the executed copy.
            papermill.execute_notebook(str(run.notebook), str(run.output), parameters=run.parameters,
                                       kernel_name="python3", cwd=None, progress_bar=False, log_output=False,
                                       extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                                       kernel_manager_class=interruption.kernel_manager_class,
                                       on_cell_start=interruption.refuse_cell,
                                       resources=kernel_resources(cwd))
            relativize_papermill_paths(run.output)
    except LockWaitCancelled:
        return RunOutcome(run, "not started")
    except PapermillExecutionError as error:
        status = "interrupted" if interruption.stopping.is_set() else "failed"
        return RunOutcome(run, status, time.perf_counter() - start, error.cell_index, error.source or "",
                          error.ename, error.evalue)
    except Exception as error:  # noqa: BLE001 - a dead kernel or unreadable notebook is one failed run
        status = "interrupted" if interruption.stopping.is_set() else "failed"
        return RunOutcome(run, status, time.perf_counter() - start, None, "", type(error).__name__, str(error))
    return RunOutcome(run, "ok", time.perf_counter() - start)


def kernel_resources(cwd: Path | str) -> dict:
    """nbclient's ``resources`` that start a kernel in ``cwd`` (absolute), whatever the working
    folder of this process is.

    Why not papermill's ``cwd=``: it is a process-wide ``os.chdir`` around the whole execution
    (``papermill.utils.chdir``), and papermill's local file handler changes the folder again
    around every save of the executed copy (``LocalHandler.read`` / ``write``). With several
    executions in threads one thread's restore moves the others: a kernel then started in the
    folder ``run_all.py`` was called from, and the relative ``results_dir`` it is given resolved
    outside the results folder (issue 17). nbclient passes ``resources["metadata"]["path"]`` to
    the kernel manager as the kernel process's own ``cwd``; the process never changes folder.
    """
    return {"metadata": {"path": os.path.abspath(cwd)}}


def relativize_papermill_paths(executed: Path) -> None:
    """Papermill records the absolute input and output paths in the executed copy; keep only
    the names (``notebooks/<template>``, the copy's own file name), so a committed notebook
    never names a folder of the machine that ran it."""
    import nbformat

    notebook = nbformat.read(str(executed), as_version=4)
    recorded = notebook.metadata.get("papermill", {})
    for key, relative in (("input_path", f"notebooks/{Path(recorded.get('input_path', '')).name}"),
                          ("output_path", Path(recorded.get("output_path", "")).name)):
        if key in recorded:
            recorded[key] = relative
    atomic_write_text(executed, nbformat.writes(notebook))


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
        status = "lost mid-run" if outcome.status == "lost" else outcome.status
        line = f"[{self.done:>{len(str(self.total))}}/{self.total}] {outcome.run.label}: {status}"
        if outcome.status != "reused":
            line += f" ({outcome.seconds:.1f} s)"
        if outcome.status in ("failed", "lost"):
            line += f": {outcome.ename}: {outcome.evalue.splitlines()[0] if outcome.evalue else ''}"
        if self.bar is not None:
            self.bar.set_postfix_str(f"{outcome.run.label} {status}")
            self.bar.update(1)
            if outcome.status in ("failed", "lost"):
                self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def settle_without_kernels(runs: Sequence[NotebookRun], reporter: ProgressReporter,
                           interruption: Interruption) -> tuple[dict[int, RunOutcome], list[int]]:
    """What every executor does first: the outcomes of the runs that need no kernel, by position
    (reused ones, reported; "not started" after Ctrl-C), and the positions of those to execute."""
    outcomes: dict[int, RunOutcome] = {}
    pending = []
    for position, run in enumerate(runs):
        if run.reused:
            outcomes[position] = RunOutcome(run, "reused")
            reporter.finished(outcomes[position])
        elif interruption.stopping.is_set():
            outcomes[position] = RunOutcome(run, "not started")
        else:
            pending.append(position)
    return outcomes, pending


def execute_all(runs: Sequence[NotebookRun], jobs: int, cwd: Path, reporter: ProgressReporter,
                interruption: Interruption | None = None) -> list[RunOutcome]:
    """Run ``runs`` with ``jobs`` kernels at a time; outcomes in the order of ``runs``.

    The main thread waits in short steps, so Ctrl-C is handled at once (:class:`Interruption`);
    after it, queued runs are cancelled and come back as "not started".
    """
    interruption = interruption or Interruption()
    outcomes, pending = settle_without_kernels(runs, reporter, interruption)
    if pending:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(pending)))) as pool:
            futures: dict[Future, int] = {pool.submit(execute, runs[p], cwd, interruption): p for p in pending}
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, timeout=0.25, return_when=FIRST_COMPLETED)
                if interruption.stopping.is_set():
                    for future in list(waiting):
                        if future.cancel():
                            waiting.discard(future)
                            outcomes[futures[future]] = RunOutcome(runs[futures[future]], "not started")
                    interruption.keep_interrupting()
                for future in done:
                    outcomes[futures[future]] = future.result()
                    reporter.finished(outcomes[futures[future]])
    return [outcomes[p] for p in range(len(runs))]
