"""File helpers under faults: result files get the umask's mode (issue 9), a failed write leaves
no temporary file, stale temporaries are removed, and a held lock makes the second caller wait
and say so (issue 12, items 7 and 8)."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from storylib import io


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_atomic_writes_get_the_mode_of_a_new_file_not_0600(tmp_path, umask_027):
    assert io.current_umask() == 0o027
    for path in (io.atomic_write_text(tmp_path / "a.txt", "x"), io.atomic_write_json(tmp_path / "b.json", {"k": 1}),
                 io.atomic_save_npz(tmp_path / "c.npz", a=__import__("numpy").zeros(2))):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    plain = tmp_path / "plain.txt"
    plain.write_text("x")                                    # what an ordinary write gives
    assert stat.S_IMODE(plain.stat().st_mode) == stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full_disk(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        io.atomic_write_text(tmp_path / "result.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "split").mkdir()
    leftover = tmp_path / "split" / ".frames.npy.0123abcd.tmp"
    leftover.write_bytes(b"half")
    kept = [tmp_path / "split" / "frames.npy", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for path in kept:
        path.write_bytes(b"keep")
    assert io.remove_temporary_files(tmp_path) == [leftover]
    assert not leftover.exists() and all(path.exists() for path in kept)


def test_a_held_lock_makes_the_second_caller_wait_and_say_so(tmp_path, capsys):
    lock = tmp_path / ".locks" / "run.lock"
    order, entered = [], threading.Event()

    def first():
        with io.exclusive(lock, "unused") as waited:
            assert not waited
            entered.set()
            time.sleep(0.5)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    entered.wait(10)
    with io.exclusive(lock, "another process is running it; waiting", poll_seconds=0.05) as waited:
        order.append("second in")
    thread.join()
    assert waited and order == ["first done", "second in"]
    assert "another process is running it; waiting" in capsys.readouterr().err


def test_waiting_for_a_lock_can_be_cancelled(tmp_path):
    lock = tmp_path / "x.lock"
    with io.exclusive(lock, "held"):
        holder_done = threading.Event()
        outcome = []

        def second():
            try:
                with io.exclusive(lock, "waiting", should_stop=holder_done.is_set, poll_seconds=0.05):
                    outcome.append("entered")
            except io.LockWaitCancelled:
                outcome.append("cancelled")

        thread = threading.Thread(target=second)
        thread.start()
        holder_done.set()
        thread.join(30)
    assert outcome == ["cancelled"]
