"""One restoration at a time, a bounded number waiting, and a clear "busy" beyond that.

A restoration uses every core and, for a large x4 output, gigabytes of memory: two at once would only
make both slower and risk running out of memory. The worker is a single thread; a semaphore counts the
running job plus the waiting ones, and a request that finds no free slot is refused at once (HTTP 503)
rather than queued without bound.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bbcu.serve.limits import BusyError


class JobQueue:
    """A single worker thread with ``1 + queue`` slots: one running job and up to ``queue`` waiting."""

    def __init__(self, queue: int) -> None:
        self.capacity = queue + 1
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bbcu-serve-worker")
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._taken = 0
        self._count_lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs running or waiting now."""
        with self._count_lock:
            return self._taken

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``function(*args)`` on the worker once the jobs before it are done.

        Raises:
            BusyError: If every slot is taken.
        """
        if not self._slots.acquire(blocking=False):
            raise BusyError(
                f"the server is busy ({self.capacity} restorations running or waiting); try again soon"
            )
        with self._count_lock:
            self._taken += 1
        future = self._executor.submit(function, *args)
        future.add_done_callback(self._free_slot)
        return future

    def _free_slot(self, _: Future[Any]) -> None:
        with self._count_lock:
            self._taken -= 1
        self._slots.release()

    def close(self) -> None:
        """Drop the waiting jobs and let the running one finish in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)
