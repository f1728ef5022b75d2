"""``run_all.py --executor ray``: every experiment × seed run is one Ray task.

A task executes ``02_experiment`` with papermill through :func:`storylib.suite.execute.execute`, the
same function the local executor calls, so a task takes the run folder's lock, waits for
another process holding it, reports a failing cell the same way and never raises. Planning
(reuse by configuration hash), notebook 01 before the tasks, the shared-files check and
notebook 03 after them, the summary and the failure list stay on the driver, in
:mod:`storylib.suite`; this module only connects to Ray, submits the runs that are not reused
and collects their outcomes.

Files: the results folder, the data cache (``STORYLIB_CACHE``), the notebooks and this source
tree must be on a filesystem every node sees at the same path (the usual case on clusters). A
task on a node that does not see them fails at once with a line saying so.

Ctrl-C on the driver cancels the outstanding tasks (``ray.cancel``): queued ones never start,
running ones get a KeyboardInterrupt, which the task turns into the local executor's first
Ctrl-C (no further cell starts, the kernel is interrupted, its checkpoints are kept); a second
Ctrl-C cancels again, which kills the kernels. Results and checkpoints are written atomically
and a run counts as finished only by its ``test_metrics.json``, so an interrupted run is never
trusted by a later call: it resumes. SIGTERM on the driver is handled as Ctrl-C (see
:mod:`storylib.suite`).

A task whose worker or node dies under it (killed, out of memory, the node lost) is reported as
lost mid-run, after how long, and resumable from its last checkpoint on the next call
(:data:`LOST_TASK_ERRORS`); so is a task whose worker got SIGTERM (it interrupts its kernel as
Ctrl-C does). While the call is stopping (Ctrl-C, SIGTERM on the driver) both are interrupted.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import storylib
from storylib.suite.execute import (
    NotebookRun,
    ProgressReporter,
    RunAllError,
    RunOutcome,
    execute,
    kernel_environment,
    process_environment,
    settle_without_kernels,
)
from storylib.suite.interrupt import Interruption

INSTALL_HINT = 'pip install -e ".[cluster]"'
POLL_SECONDS = 0.25
# Ray's errors for a task whose worker process or node died while it ran (killed, out of memory,
# the node lost): the run was lost mid-run and resumes, it did not fail.
LOST_TASK_ERRORS = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError",
                    "OutOfMemoryError")
# Driver variables a task needs to see the same data, cache and code (kernel_environment then
# drops the ones the kernels must not get, as for the local executor).
FORWARDED_PREFIXES = ("STORYLIB_", "HF_", "TRANSFORMERS_")


def _one_line(error: BaseException, limit: int = 300) -> str:
    return " ".join(str(error).split())[:limit]


def import_ray() -> Any:
    """The ``ray`` module, or :class:`RunAllError` with one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RunAllError(f"--executor ray needs Ray, which is not installed here; install it with {INSTALL_HINT} "
                          "(or pip install \"ray[default]>=2.9\"). Nothing was run.") from None
    return ray


def storylib_root() -> Path:
    """The folder that holds this ``storylib`` package (what a task's PYTHONPATH starts with)."""
    return Path(storylib.__file__).resolve().parent.parent


def forwarded_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The variables every task gets: the driver's storylib / Hugging Face settings, and a
    PYTHONPATH that starts with this source tree, so tasks import the driver's storylib."""
    base = dict(os.environ if base is None else base)
    env = {name: value for name, value in base.items() if name.startswith(FORWARDED_PREFIXES)}
    paths = [str(storylib_root())] + [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


# --------------------------------------------------------------------------- the task (runs on a worker)


def missing_shared_paths(run: NotebookRun, cwd: Path) -> list[Path]:
    """The driver's folders a task needs that this node does not see (empty on a shared filesystem)."""
    data_dir = run.output.parent.parent.parent          # <results>/<data>-<scale>, created by the driver
    return [path for path in (data_dir, cwd, run.notebook) if not path.exists()]


def run_task(run: NotebookRun, cwd: Path, cores: int, keep_checkpoints: bool) -> RunOutcome:
    """Execute one run on this worker as the local executor would, with ``cores`` torch threads.

    :func:`storylib.suite.execute.execute` runs in a thread; the task's main thread waits in short
    steps, so the KeyboardInterrupt that ``ray.cancel`` raises in it is handled at once: the
    first is the local executor's first Ctrl-C (:meth:`Interruption.handle_sigint`: no cell
    starts, the kernel gets SIGINT), the second kills the kernel. SIGTERM to the worker (a SLURM
    time limit signals every process of the job) does the same for the duration of the task:
    Ray's own handler would exit the worker and leave the kernel running its cell unattended.
    """
    missing = missing_shared_paths(run, cwd)
    if missing:
        node = os.uname().nodename
        return RunOutcome(run, "failed", ename="SharedFilesystemError", evalue=(
            f"node {node} does not see {', '.join(map(str, missing))}; the Ray executor needs the results folder, the "
            "data cache and the source tree on a filesystem every node sees at the same path (see README, "
            "'Run on a Ray cluster')"))
    interruption = Interruption()      # its kernel manager registers the kernel there, for cancel
    env = kernel_environment(1, cores=max(1, cores), keep_checkpoints=keep_checkpoints)
    in_main_thread = threading.current_thread() is threading.main_thread()
    # ray.cancel interrupts the task with SIGINT; a worker whose cluster was started from a shell
    # that ignores SIGINT (a background job, `nohup … &`) inherits SIG_IGN and would never see it,
    # so the task gets Python's own handler, which raises KeyboardInterrupt.
    handlers = {signal.SIGTERM: interruption.handle_sigint, signal.SIGINT: signal.default_int_handler}
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()} if in_main_thread else {}
    try:
        with process_environment(env), ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(execute_with_sigint, run, cwd, interruption)
            while True:
                try:                                    # ray.cancel's KeyboardInterrupt may land anywhere here
                    try:
                        return future.result(timeout=POLL_SECONDS)
                    except FutureTimeout:
                        interruption.keep_interrupting()
                except KeyboardInterrupt:               # ray.cancel
                    interruption.handle_sigint()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def execute_with_sigint(run: NotebookRun, cwd: Path, interruption: Interruption) -> RunOutcome:
    """:func:`storylib.suite.execute.execute` from a thread that does not block SIGINT.

    Ray workers block SIGINT, and a process inherits the signal mask of the thread that starts
    it: a kernel started from such a thread never sees the SIGINT that interrupts a cell.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    return execute(run, cwd, interruption)


def where_storylib_is() -> tuple[str, str]:
    """(node name, file of the storylib package) as a worker sees them."""
    return os.uname().nodename, storylib.__file__


# --------------------------------------------------------------------------- the driver


@dataclass
class RayExecutor:
    """A connection to a Ray cluster that runs experiment runs as tasks."""

    ray: Any
    cpus_per_task: int = 1
    keep_checkpoints: bool = False
    started_here: bool = False            # this call connected (so it disconnects at the end)
    gpus: float = 0.0
    connect_seconds: float = 0.0
    task_environment: dict[str, str] = field(default_factory=dict)
    _remote: Any = None

    @classmethod
    def connect(cls, address: str | None = None, *, local_cpus: int | None = None, cpus_per_task: int = 1,
                keep_checkpoints: bool = False) -> "RayExecutor":
        """Connect to the cluster at ``address`` (default: ``RAY_ADDRESS``), else start a local one
        with ``local_cpus`` CPUs (default: every core); reuse a connection this process already has.

        :class:`RunAllError` (one line) when Ray is missing or the cluster cannot be reached.
        """
        ray = import_ray()
        started = time.perf_counter()
        address = address or os.environ.get("RAY_ADDRESS") or None
        started_here = not ray.is_initialized()
        if started_here:
            try:
                if address:
                    ray.init(address=address, log_to_driver=True)
                else:
                    ray.init(num_cpus=local_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=True)
            except Exception as error:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise RunAllError(f"cannot connect to {where} ({type(error).__name__}: {_one_line(error)}); check "
                                  "--ray-address / RAY_ADDRESS and that `ray status` works there. Nothing was run.") from None
        resources = ray.cluster_resources()
        executor = cls(ray, cpus_per_task=cpus_per_task, keep_checkpoints=keep_checkpoints, started_here=started_here,
                       gpus=float(resources.get("GPU", 0.0)), task_environment=forwarded_environment())
        try:
            executor._check_a_node_fits()
            runtime_env = {"env_vars": executor.task_environment}
            options: dict[str, Any] = {"num_cpus": cpus_per_task, "max_retries": 0, "runtime_env": runtime_env}
            if executor.gpus:
                options["num_gpus"] = 1
            executor._remote = ray.remote(run_task).options(**options)
            try:
                probe = ray.remote(where_storylib_is).options(num_cpus=0, runtime_env=runtime_env)
                node, location = ray.get(probe.remote())
            except ray.exceptions.RayError as error:
                raise RunAllError(
                    f"a Ray task cannot import storylib ({type(error).__name__}: {_one_line(error)}); "
                    f"put this checkout ({storylib_root()}) and its environment on a filesystem every node sees, or "
                    "install storylib on every node. Nothing was run.") from None
        except BaseException:
            executor.close()
            raise
        executor.connect_seconds = time.perf_counter() - started
        per_task = f"1 GPU + {cpus_per_task} CPU(s)" if executor.gpus else f"{cpus_per_task} CPU(s)"
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        print(f"ray: {resources.get('CPU', 0):g} CPUs, {executor.gpus:g} GPUs on {nodes} node(s); {per_task} per "
              f"run; tasks import storylib from {Path(location).parent} ({node}); ready in "
              f"{executor.connect_seconds:.1f} s", flush=True)
        if Path(location).resolve() != Path(storylib.__file__).resolve():
            print(f"note: this driver imports storylib from {Path(storylib.__file__).parent}, the tasks from "
                  f"{Path(location).parent}: runs use the tasks' code", file=sys.stderr, flush=True)
        return executor

    def _check_a_node_fits(self) -> None:
        """:class:`RunAllError` when no node has the CPUs (and GPU) one run asks for: Ray would
        keep such a task pending for ever."""
        wanted = {"CPU": float(self.cpus_per_task), **({"GPU": 1.0} if self.gpus else {})}
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        if not any(all(node.get(name, 0.0) >= amount for name, amount in wanted.items()) for node in nodes):
            largest = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
            gpu = " and 1 GPU" if self.gpus else ""
            raise RunAllError(f"no node of the Ray cluster has the {self.cpus_per_task} CPU(s){gpu} one run asks for "
                              f"(the largest has {largest:g} CPUs); lower --ray-cpus-per-task. Nothing was run.")

    def execute_all(self, runs: Sequence[NotebookRun], cwd: Path, reporter: ProgressReporter,
                    interruption: Interruption) -> list[RunOutcome]:
        """Run ``runs`` as Ray tasks (reused ones are not submitted); outcomes in the order of ``runs``."""
        ray = self.ray
        outcomes, pending = settle_without_kernels(runs, reporter, interruption)
        refs = {self._remote.remote(runs[p], cwd, self.cpus_per_task, self.keep_checkpoints): p for p in pending}
        submitted = time.perf_counter()
        cancels = 0                      # Ctrl-C presses forwarded to the tasks (cancel again = kill kernels)
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1, timeout=POLL_SECONDS)
            presses = interruption.stopping.is_set() + interruption.killing
            if presses > cancels:
                for ref in waiting:
                    ray.cancel(ref)
                cancels = presses
            for ref in done:
                outcomes[refs[ref]] = self._outcome(ref, runs[refs[ref]], time.perf_counter() - submitted,
                                                    interruption.stopping.is_set())
                reporter.finished(outcomes[refs[ref]])
        return [outcomes[p] for p in range(len(runs))]

    def _outcome(self, ref: Any, run: NotebookRun, seconds: float = 0.0, stopping: bool = False) -> RunOutcome:
        """A task's :class:`RunOutcome`; a cancelled, lost or unsent task as one too.

        ``seconds``: since the task was submitted (its outcome carries no time of its own when it
        is lost); ``stopping``: the call is being interrupted, so a lost task is "interrupted".
        """
        exceptions = self.ray.exceptions
        try:
            outcome = self.ray.get(ref)
            if outcome.status == "interrupted" and not stopping:    # its worker was stopped, not this call
                return RunOutcome(run, "lost", outcome.seconds, ename="SIGTERM", evalue=(
                    "the Ray worker running it was stopped (SIGTERM) and interrupted it; it resumes from its last "
                    "checkpoint on the next call"))
            return outcome
        except exceptions.TaskCancelledError:
            return RunOutcome(run, "not started")
        except exceptions.RayError as error:
            cause = getattr(error, "cause", None) or error
            lost = tuple(getattr(exceptions, name) for name in LOST_TASK_ERRORS if hasattr(exceptions, name))
            if isinstance(error, lost):            # its worker or node died under it
                status = "interrupted" if stopping else "lost"
                return RunOutcome(run, status, seconds, ename=type(error).__name__, evalue=(
                    f"the Ray worker running it died ({_one_line(error, 300)}); it resumes from its last "
                    "checkpoint on the next call"))
            return RunOutcome(run, "failed", ename=type(cause).__name__,   # e.g. the task could not be sent
                              evalue=f"{_one_line(cause, 500)} (the Ray task did not return)")

    def close(self) -> None:
        """Disconnect when this executor connected (a local cluster it started stops); once."""
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()
        self.started_here = False
