"""Ctrl-C and SIGTERM while notebooks run: one :class:`Interruption` per call, passed to the
executors, and the kernel manager class that registers every kernel it starts with it."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from jupyter_client.manager import AsyncKernelManager

REINTERRUPT_SECONDS = 3.0       # a SIGINT that reached a kernel between two cells is sent again


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
        # papermill's kernel_manager_class: every kernel it starts registers here
        self.kernel_manager_class = type("TrackedKernelManager", (TrackedKernelManager,), {"interruption": self})

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


class TrackedKernelManager(AsyncKernelManager):
    """nbclient's kernel manager, registered with its :class:`Interruption` once its process runs.

    nbclient builds the manager from a class, so each Interruption hands out a subclass bound to
    itself (:attr:`Interruption.kernel_manager_class`) rather than a module-wide current one."""

    interruption: "Interruption | None" = None

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        if self.interruption is not None:
            self.interruption.register(self)
