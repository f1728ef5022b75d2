"""Small file helpers shared by every stage: atomic writes, checked reads and progress bars.

Every artefact is written to a temporary file in the same folder and renamed into place, so
an interrupted run never leaves a half-written file that a later run would trust.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np
import yaml

T = TypeVar("T")
TEMPORARY_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process's umask (read from /proc where it exists: ``os.umask`` can only be read by setting it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the umask (``mkstemp`` gives 0o600)."""
    return 0o666 & ~current_umask()


def remove_temporary_files(folder: Path | str) -> list[Path]:
    """Delete the hidden ``.<name>.*.tmp`` files an atomic write left under ``folder`` (a crash
    between creating and renaming one). Call it only while no other process writes there
    (under the folder's lock); returns what was removed."""
    removed = []
    for candidate in Path(folder).rglob(f".*{TEMPORARY_SUFFIX}"):
        if candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def atomic_write_bytes(path: Path | str, payload: bytes) -> Path:
    """Write ``payload`` to a temporary file beside ``path``, fsync, rename into place.

    The file gets the mode of any new file (umask applied), not mkstemp's 0600, so results are
    readable by whoever may read the folder. A failed write leaves no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        os.fchmod(handle, new_file_mode())
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, payload: Any) -> Path:
    """:func:`atomic_write_text` of ``payload`` as indented JSON with sorted keys."""
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npz(path: Path | str, **arrays: np.ndarray) -> Path:
    """Compressed ``.npz`` written atomically; read it back with ``np.load(path)`` (no pickle)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


class UnreadableJSON(ValueError):
    """A file that should hold a JSON object does not; the message says what is wrong with it."""


def read_json_object(path: Path | str) -> dict:
    """The JSON object ``path`` holds. ``FileNotFoundError`` passes through (a missing file is
    often expected); anything else wrong raises :class:`UnreadableJSON`, and the caller names
    the file and what to do about it."""
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise UnreadableJSON(f"not valid JSON ({error})") from None
    if not isinstance(loaded, dict):
        raise UnreadableJSON(f"holds a JSON {type(loaded).__name__}, not an object")
    return loaded


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {line}; first given on line {seen[key]}); "
                    "keep one of them", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def is_interactive() -> bool:
    """True in a terminal or a live notebook front end; False under papermill, CI or a pipe.

    tqdm under papermill floods the executed notebook, so long loops print plain lines there.
    """
    if os.environ.get("CI") or os.environ.get("PAPERMILL_EXECUTION") or os.environ.get("STORYLIB_NO_PROGRESS"):
        return False
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell":
            return bool(os.environ.get("JPY_PARENT_PID") or os.environ.get("COLAB_RELEASE_TAG"))
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        pass
    return sys.stderr.isatty()


def kernel_shell() -> Any:
    """The IPython shell of a notebook kernel, or None (terminal, script)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return None
    shell = get_ipython()
    return shell if shell is not None and hasattr(shell, "kernel") else None


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", enabled: bool | None = None) -> Iterator[T]:
    """tqdm in a terminal; in a notebook kernel one line of text updated in place (a display
    with an id, never a widget, so a saved or converted notebook keeps the final line); a bare
    iterator when not interactive."""
    if enabled is None:
        enabled = is_interactive()
    if not enabled:
        yield from iterable
        return
    from tqdm import tqdm

    if kernel_shell() is None:
        yield from tqdm(iterable, total=total, desc=desc, leave=False)
        return
    from IPython.display import display

    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    handle = display({"text/plain": desc}, raw=True, display_id=True)
    started = shown_at = time.monotonic()
    count = 0
    for count, item in enumerate(iterable, start=1):
        yield item
        if time.monotonic() - shown_at >= 0.5 and count != total:
            shown_at = time.monotonic()
            handle.update({"text/plain": tqdm.format_meter(count, total, shown_at - started, prefix=desc)}, raw=True)
    handle.update({"text/plain": tqdm.format_meter(count, total, time.monotonic() - started, prefix=desc)}, raw=True)


class LockWaitCancelled(Exception):
    """Waiting for a lock was given up (``should_stop`` said so, e.g. after Ctrl-C)."""


@contextmanager
def exclusive(lock_path: Path | str, waiting_message: str, should_stop: Callable[[], bool] | None = None,
              poll_seconds: float = 0.5) -> Iterator[bool]:
    """Hold the file lock ``lock_path`` (``filelock``) for the ``with`` body.

    When another process (or thread) holds it, prints ``waiting_message`` on stderr once and
    waits; ``should_stop`` is asked every ``poll_seconds`` and ends the wait with
    :class:`LockWaitCancelled`. Yields True when it had to wait: whatever the other holder was
    doing may now be done, so the caller checks again before doing the work itself.
    """
    from filelock import FileLock, Timeout

    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), thread_local=False)
    waited = False
    try:
        lock.acquire(timeout=0)
    except Timeout:
        waited = True
        print(waiting_message, file=sys.stderr, flush=True)
        while True:
            if should_stop is not None and should_stop():
                raise LockWaitCancelled(f"gave up waiting for {lock_path}") from None
            try:
                lock.acquire(timeout=poll_seconds)
                break
            except Timeout:
                continue
    try:
        yield waited
    finally:
        lock.release()
