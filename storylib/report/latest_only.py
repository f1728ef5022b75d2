"""Render jobs of an interactive view, of which only the latest request's result is applied."""

from __future__ import annotations

import threading
from typing import Callable


class LatestOnly:
    """Runs render jobs so that only the latest request's result is applied.

    :meth:`request` numbers each request and hands ``job(number)`` to ``submit`` (a worker
    thread in a kernel, a direct call otherwise); a job calls :meth:`is_current` before it
    applies its result and drops it when a later request came in meanwhile. The numbering is
    the whole "last change wins" logic, so tests drive it with a ``submit`` that runs jobs
    in any order.
    """

    def __init__(self, submit: Callable[[Callable[[], None]], object]):
        self._submit = submit
        self._lock = threading.Lock()
        self._latest = 0

    def request(self, job: Callable[[int], None]) -> int:
        with self._lock:
            self._latest += 1
            number = self._latest
        self._submit(lambda: job(number))
        return number

    def is_current(self, number: int) -> bool:
        with self._lock:
            return number == self._latest
