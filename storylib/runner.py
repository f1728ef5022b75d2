"""``python run_all.py``: run every notebook of the suite headlessly through papermill.

Order: ``01_data_exploration`` (it also builds the data cache the experiments share), then
every experiment × seed of ``02_experiment`` (``--jobs`` kernels at a time), then
``03_comparison_report``, converted to ``report.html``. Executed copies go under the results
folder ``<results-dir>/<data label>-<scale>``, never into ``notebooks/``, so runs of different
data or scale never mix and the jupytext pairs stay clean.

A finished run (``test_metrics.json`` with the config hash this call would produce) is reused
unless ``--force``, so an interrupted call continues where it stopped. The report is rebuilt
only when the digest of what it reads changed (``report_inputs.json``), and ``report.html`` is
built and announced only from a notebook 03 that finished in this call. ``run_plan.json``
records the plan and how each unfinished run ended, for the report. A failing notebook does
not stop the others; the failures are listed at the end (notebook, cell, error) and the exit
status is 1.

Faults: the data source and the results folder are checked before any kernel starts (exit 2
with one paragraph); each run folder is locked while a kernel works in it, so a second
``run_all.py`` on the same folder waits and then reuses the run; the shared files of the
results folder (floors, saved test windows) are validated and rebuilt before the report; the
first Ctrl-C stops starting notebooks, interrupts the running kernels and exits 130 with a
summary, a second Ctrl-C kills the kernels at once. SIGTERM (``kill``, a SLURM time limit) is
handled as Ctrl-C: the same summary, the same resume advice, the same exit status 130.

Working folders: every kernel is started with ``notebooks/`` as its own working folder
(:func:`kernel_resources`) and this process never changes its own, so kernels started side by
side cannot move each other and the relative ``results_dir`` they are given (relative, so that
executed notebooks name no folder of this machine) always resolves to the results folder.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from jupyter_client.manager import AsyncKernelManager

from storylib.config import SCALES, ConfigError, available_experiments
from storylib.io import LockWaitCancelled, atomic_write_text, exclusive, is_interactive
from storylib.results.contract import (
    EXECUTED_EXPLORATION,
    EXECUTED_REPORT,
    EXECUTED_RUN,
    FLOORS_FILE,
    REPORT_HTML,
    data_folder,
    run_folder,
)
from storylib.runs import checkpoint_problem, finished_hash

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
EXPLORATION_NOTEBOOK = "01_data_exploration.ipynb"
EXPERIMENT_NOTEBOOK = "02_experiment.ipynb"
REPORT_NOTEBOOK = "03_comparison_report.ipynb"

# (experiment, data, scale, seed) -> the config hash a run with these parameters will record
PlannedHash = Callable[[str, str, str, int], str]
# (experiment, data, scale, results_dir) -> notes on the shared files it checked or rebuilt
SharedFiles = Callable[[str, str, str, Path], list[str]]
EXIT_INTERRUPTED = 130          # 128 + SIGINT, as a shell reports a process ended by Ctrl-C
EXIT_USAGE = 2
LOCKS_FOLDER = ".locks"
REINTERRUPT_SECONDS = 3.0       # a SIGINT that reached a kernel between two cells is sent again


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


def resolve_scale(scale: str) -> str:
    """``auto`` → ``full`` where CUDA is available, else ``cpu``; others pass through."""
    if scale != "auto":
        return scale
    import torch

    return "full" if torch.cuda.is_available() else "cpu"


def default_jobs(cores: int | None = None) -> int:
    cores = cores or os.cpu_count() or 1
    return 2 if cores >= 2 else 1


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


# --------------------------------------------------------------------------- planning


def recorded_hash(run_dir: Path) -> str | None:
    """The config hash of the finished run in ``run_dir``, or None when it is unfinished (no
    ``test_metrics.json``, or one that is not a full record: :func:`storylib.runs.read_test_metrics`)
    or when its ``checkpoints/best.pt`` is not the file it was recorded with
    (:func:`storylib.runs.checkpoint_problem`): such a run is not reused, it trains again."""
    if checkpoint_problem(run_dir) is not None:
        return None
    return finished_hash(run_dir)


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


def exploration_reusable(output: Path, parameters: dict) -> bool:
    """An executed data exploration with the same parameters that raised nothing."""
    try:
        metadata = json.loads(output.read_text(encoding="utf-8"))["metadata"]["papermill"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return metadata.get("parameters") == parameters and not metadata.get("exception") and bool(metadata.get("end_time"))


# --------------------------------------------------------------------------- Ctrl-C


class RunInterrupted(Exception):
    """Raised in a kernel's client after the first Ctrl-C so that no further cell starts."""


class Interruption:
    """What the first and second Ctrl-C (or SIGTERM) do, shared by the main thread and the
    worker threads.

    Kernels run in their own session (jupyter_client starts them so), so a Ctrl-C in the
    terminal reaches this process only. The first one sets :attr:`stopping` (no notebook and
    no cell starts after it) and sends SIGINT to every live kernel's process group; the second
    one sends SIGKILL. Checkpoints and result files are written atomically, so either leaves
    nothing half-written and an interrupted run resumes on the next call. SIGTERM does the same
    as Ctrl-C (a SLURM time limit sends it, then SIGKILL after a grace period): without this
    the process died at once, with no summary and no resume advice.
    """

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.killing = False
        self.interrupted_at = 0.0
        self.cause = "Ctrl-C"          # what stopped the call, as the summary names it
        self._kernels: list[AsyncKernelManager] = []
        self._lock = threading.Lock()

    def register(self, kernel: AsyncKernelManager) -> None:
        with self._lock:
            self._kernels = [k for k in self._kernels if _kernel_process(k) is not None] + [kernel]
        if self.stopping.is_set():       # started while stopping: it gets no cell anyway
            self._signal(kernel, signal.SIGKILL if self.killing else signal.SIGINT)

    def live_kernels(self) -> list[AsyncKernelManager]:
        with self._lock:
            return [k for k in self._kernels if _kernel_process(k) is not None]

    @staticmethod
    def _signal(kernel: AsyncKernelManager, signum: int) -> None:
        process = _kernel_process(kernel)
        if process is None:
            return
        try:
            os.killpg(getattr(kernel.provisioner, "pgid", None) or process.pid, signum)
        except OSError:
            try:
                process.send_signal(signum)
            except OSError:
                pass

    def signal_all(self, signum: int) -> None:
        for kernel in self.live_kernels():
            self._signal(kernel, signum)

    def handle_sigint(self, signum: int | None = None, *_: Any) -> None:
        """The SIGINT and SIGTERM handler of the main thread while notebooks run (``signum``
        names the signal in the messages; None, as from a Ray task's cancel, is Ctrl-C)."""
        name = signal_name(signum)
        if not self.stopping.is_set():
            self.cause = name
            self.stopping.set()
            self.interrupted_at = time.monotonic()
            sys.stderr.write(f"\n{name}: starting no more notebooks and interrupting the running kernels "
                             "(their checkpoints are kept; Ctrl-C again kills them at once)\n")
            self.signal_all(signal.SIGINT)
        else:
            self.killing = True
            sys.stderr.write(f"\n{name} again: killing the running kernels\n")
            self.signal_all(signal.SIGKILL)
        sys.stderr.flush()

    def keep_interrupting(self) -> None:
        """Resend SIGINT now and then: one that reaches a kernel between two cells is ignored by it."""
        if self.stopping.is_set() and time.monotonic() - self.interrupted_at > REINTERRUPT_SECONDS:
            self.interrupted_at = time.monotonic()
            self.signal_all(signal.SIGKILL if self.killing else signal.SIGINT)

    def refuse_cell(self, **_: Any) -> None:
        """nbclient's ``on_cell_start`` hook: after Ctrl-C no cell starts."""
        if self.stopping.is_set():
            raise RunInterrupted("interrupted by Ctrl-C before this cell started")

    @contextmanager
    def installed(self) -> Iterator["Interruption"]:
        """Handle SIGINT and SIGTERM as above for the duration (only the main thread can install
        a handler)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.signal(signum, self.handle_sigint) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def signal_name(signum: int | None) -> str:
    """How the messages name a signal: "Ctrl-C" for SIGINT (and None), "SIGTERM" for SIGTERM."""
    return "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the notebooks (planning, the summary): handled as a Ctrl-C there."""


def _raise_terminated(*_: Any) -> None:
    raise Terminated()


def install_sigterm_as_interrupt() -> Any:
    """Make SIGTERM raise :class:`Terminated` (a KeyboardInterrupt) in the main thread, as SIGINT
    does; returns the previous handler (None off the main thread, where nothing is installed).

    Also called after Ray connects: ``ray.init`` installs a SIGTERM handler that exits with
    status 15 (and the driver then aborted with status 134 and Ray's stack lines)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _kernel_process(kernel: AsyncKernelManager) -> Any:
    provisioner = getattr(kernel, "provisioner", None)
    process = getattr(provisioner, "process", None)
    return process if process is not None and process.poll() is None else None


# The Interruption of the current main() call (kernel managers are created by nbclient, so
# they find it here); main() installs a fresh one per call.
_ACTIVE = Interruption()


class TrackedKernelManager(AsyncKernelManager):
    """nbclient's kernel manager, registered with the current :class:`Interruption` once its process runs."""

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        _ACTIVE.register(self)


# --------------------------------------------------------------------------- execution


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

    interruption = interruption or _ACTIVE
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
                                       kernel_manager_class=TrackedKernelManager,
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
    interruption = interruption or _ACTIVE
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


def write_html_report(notebook: Path, html_path: Path) -> Path:
    """Convert an executed notebook to a standalone HTML page (atomically), titled by the data
    and scale of its folder (:func:`storylib.reporting.report_html`); a :class:`RunAllError`
    naming the file when the notebook is empty or damaged or the page cannot be written."""
    from storylib.reporting import report_html

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


def record_plan(data_dir: Path, experiments: Sequence[str], seeds: int, outcomes: Sequence[RunOutcome]) -> None:
    """Write run_plan.json (:func:`storylib.reporting.write_plan`): what this call planned and
    how each experiment run that did not finish ended, so the report lists them with the reason."""
    from storylib.reporting import write_plan

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
        print(f"run_plan.json cannot be written in {data_dir} ({error.strerror or error})", file=sys.stderr)


def report_digest(data_dir: Path, report: NotebookRun) -> str | None:
    """The digest of the report's inputs (:func:`storylib.reporting.report_inputs_digest`);
    None, and the report is built, when a file cannot be read."""
    from storylib.reporting import report_inputs_digest

    try:
        return report_inputs_digest(data_dir, report.notebook, report.parameters)
    except Exception as error:  # noqa: BLE001 - a digest that cannot be made only costs a rebuild
        print(f"the report's inputs cannot be hashed ({type(error).__name__}: {error}); rebuilding it", file=sys.stderr)
        return None


def report_current(data_dir: Path, digest: str) -> bool:
    from storylib.reporting import report_is_current

    return report_is_current(data_dir, digest)


def build_report_html(outcome: RunOutcome, html_path: Path, digest: str | None,
                      step_failures: list[RunOutcome]) -> str:
    """Convert the comparison notebook to report.html only when notebook 03 finished in this
    call (never a previous call's notebook after a failure), record the inputs' digest, and
    return the line that announces it (or says why there is no new report)."""
    from storylib.reporting import REPORT_INPUTS_FILE, record_report_inputs

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


# --------------------------------------------------------------------------- checks before any kernel


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


# --------------------------------------------------------------------------- main


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
    from storylib.ray_executor import RayExecutor, import_ray

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
    global _ACTIVE

    exploration_parameters = {"data": data, "scale": scale, "results_dir": kernel_results_dir(results_dir, notebooks_dir)}
    exploration = NotebookRun("01_data_exploration", notebooks_dir / EXPLORATION_NOTEBOOK,
                              data_dir / EXECUTED_EXPLORATION, exploration_parameters)
    exploration.reused = not args.force and exploration_reusable(exploration.output, exploration_parameters)
    report = NotebookRun("03_comparison_report", notebooks_dir / REPORT_NOTEBOOK,
                         data_dir / EXECUTED_REPORT, {**exploration_parameters, "update_reference": True})
    reporter = ProgressReporter(2 + len(experiment_runs))
    started = time.perf_counter()
    interruption = _ACTIVE = Interruption()
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
