"""One restoration at a time, a bounded number waiting, and a clear "busy" beyond that.

A restoration uses every core and, for a large x4 output, gigabytes of memory: two at once would only
make both slower and risk running out of memory. The worker is a single thread; a semaphore counts the
running job plus the waiting ones, and a request that finds no free slot is refused at once (HTTP 503)
rather than queued without bound.

A request takes its slot *before* its upload is read and keeps it until its job ends, so the uploads
held in memory at any moment are bounded by the slots (``1 + queue``), however many clients send at once:
a request that finds the queue full is refused from its headers alone, its body never read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
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
        """Slots taken now: jobs running or waiting, and requests still sending their upload."""
        with self._count_lock:
            return self._taken

    def reserve(self) -> Slot:
        """Take a slot, to be used by ``Slot.submit`` or given back when the ``with`` block ends.

        Raises:
            BusyError: If every slot is taken.
        """
        if not self._slots.acquire(blocking=False):
            raise BusyError(
                f"the server is busy ({self.capacity} restorations running or waiting); try again soon"
            )
        with self._count_lock:
            self._taken += 1
        return Slot(self)

    def _release(self) -> None:
        with self._count_lock:
            self._taken -= 1
        self._slots.release()

    def close(self) -> None:
        """Drop the waiting jobs and let the running one finish in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class Slot:
    """A place in a ``JobQueue``, held from before the upload is read until its job is done.

    Used as a context manager: leaving the block without ``submit`` (the upload was refused, the client
    went away) gives the slot back; after ``submit`` the job's end does.
    """

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._submitted = False

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``function(*args)`` on the worker once the jobs before it are done."""
        future = self._queue._executor.submit(function, *args)
        self._submitted = True
        future.add_done_callback(lambda _: self._queue._release())
        return future

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if not self._submitted:
            self._queue._release()
