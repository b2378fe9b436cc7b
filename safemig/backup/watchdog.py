"""Bounded waiting: a stall watchdog, and daemon worker threads that a frozen server cannot pin.

A backup must never hang for good: while it runs, pg_dump holds a snapshot and an ACCESS
SHARE lock on every table, blocking production's DDL. :class:`Watchdog` notices when neither
the dump nor the upload made progress for ``backup.stall_timeout`` and stops pg_dump (its
locks go with its session); the waiting thread then raises.

:class:`DaemonPool` exists because ``concurrent.futures.ThreadPoolExecutor`` joins its threads
at interpreter exit: one stuck in a socket read from a frozen S3 would keep the process alive
for botocore's read timeout times its retries. Daemon threads are abandoned instead.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class Watchdog:
    """Calls ``on_stall`` once when :meth:`beat` was not called for ``timeout`` seconds."""

    def __init__(self, timeout: float, on_stall: Callable[[], None]) -> None:
        self.timeout = timeout
        self.tick = max(0.05, min(1.0, timeout / 4))
        self._on_stall = on_stall
        self._last = time.monotonic()
        self._stop = threading.Event()
        self.stalled = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def beat(self) -> None:
        """Progress was made (bytes from pg_dump, a part stored, bytes read back)."""
        self._last = time.monotonic()

    def _watch(self) -> None:
        previous = time.monotonic()
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            if now - previous > max(2 * self.tick, self.tick + 0.5):
                # This process itself was stopped (SIGSTOP, a debugger) or the machine slept:
                # the others were waiting for us, which is not their stall.
                self._last = now
            previous = now
            if now - self._last > self.timeout:
                self.stalled.set()
                self._on_stall()
                return

    def wait(self, future: Future[T], check: Callable[[], None]) -> T:
        """``future``'s result; ``check`` (which raises once stalled) runs while waiting."""
        while True:
            check()
            try:
                return future.result(timeout=self.tick)
            except TimeoutError:
                continue


class DaemonPool:
    """A minimal thread pool of daemon threads (see the module docstring for why)."""

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args = job
            del job  # the arguments (a part's bytes) must not outlive the call while we wait for the next
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                    future.set_exception(exc)
            del future, fn, args

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        """Let the threads end after their current job; never waits for them."""
        for _ in self._threads:
            self._jobs.put(None)


def run_bounded(fn: Callable[[], T], timeout: float) -> tuple[bool, T | None, BaseException | None]:
    """Run ``fn`` in a daemon thread for at most ``timeout`` s: (finished, result, exception)."""
    pool = DaemonPool(1, "bounded")
    future = pool.submit(fn)
    pool.shutdown()
    try:
        return True, future.result(timeout=timeout), None
    except TimeoutError:
        return False, None, None
    except BaseException as exc:  # noqa: BLE001 - returned to the caller
        return True, None, exc
