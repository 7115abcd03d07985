"""Background work, written once: a loop that survives its failures, fire-and-forget tasks, and work
run off the event loop (``run_blocking``).

A ``threading.Thread(daemon=True)`` is a greenlet under gunicorn's gevent worker and a real thread
under ``flask run`` (STACK.md), so one helper serves both. Start loops per worker, after fork.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("alyx")
T = TypeVar("T")

_blocking_pool: Any = None
_blocking_pool_pid = 0


def threading_is_greenlets() -> bool:
    """True in a gevent-patched process (a gunicorn worker): every "thread" is a greenlet of one OS thread."""
    from gevent import monkey

    return bool(monkey.is_module_patched("threading"))


def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run work that holds the OS thread (an argon2 hash, an fsync) in a gevent threadpool when the
    process is monkey-patched; ``fn`` must release the GIL for that to help (C code that does).

    Under gunicorn's gevent worker a 100 ms argon2 hash would otherwise stall every greenlet; under
    `flask run` (real threads, no patching) the work runs in the calling thread. The pool has one
    thread per core: more concurrent hashes only add memory (tens of MiB each) and contention.
    """
    if not threading_is_greenlets():
        return fn(*args)
    global _blocking_pool, _blocking_pool_pid
    if _blocking_pool is None or _blocking_pool_pid != os.getpid():  # one pool per worker, made after the fork
        from gevent.threadpool import ThreadPool

        _blocking_pool, _blocking_pool_pid = ThreadPool(os.cpu_count() or 2), os.getpid()
    result: T = _blocking_pool.apply(fn, args)
    return result


def spawn(target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
    """Run ``target(*args)`` once in the background; an exception is logged, never lost."""

    def run() -> None:
        try:
            target(*args)
        except Exception:  # noqa: BLE001 - a background task has nobody to raise to
            log.exception("%s failed", name)

    thread = threading.Thread(target=run, daemon=True, name=name)
    thread.start()
    return thread


class Loop:
    """Calls ``step`` until stopped; ``step`` returns how many seconds to wait before the next call.

    A wake-up (``wake()``) cuts the wait short; a wake-up during a step makes the next one run at
    once. A step that raises is logged and retried after a back-off that doubles up to
    ``max_backoff`` and resets after a step that succeeds.
    """

    def __init__(self, name: str, step: Callable[[], float], *, backoff: float = 0.5,
                 max_backoff: float = 30.0) -> None:
        self.name = name
        self._step = step
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._wakeup = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopped

    def start(self) -> None:
        """Start the loop (once; later calls do nothing)."""
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)
                self._thread.start()

    def wake(self) -> None:
        # Every commit wakes the realtime tailer: an Event already set (the loop not yet woken, or
        # not running at all) is left as it is, which costs a read instead of a lock and a notify.
        # The loop clears it before each step, so a step still follows every wake-up.
        if not self._wakeup.is_set():
            self._wakeup.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to end and wait (up to ``timeout``) for the step in progress to finish."""
        self._stopped = True
        self._wakeup.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)

    def _run(self) -> None:
        delay = self._backoff
        while not self._stopped:
            self._wakeup.clear()
            try:
                wait = self._step()
                delay = self._backoff
            except Exception:  # noqa: BLE001 - the loop must survive a failing database or function
                if self._stopped:
                    return
                log.exception("%s: step failed; retrying in %.1f s", self.name, delay)
                wait, delay = delay, min(delay * 2, self._max_backoff)
            if wait > 0 and not self._stopped:
                self._wakeup.wait(wait)
