"""alyx/background.py: the loop helper survives failures, backs off, wakes and stops."""
from __future__ import annotations

import threading
import time

import pytest

from alyx.background import Loop, spawn


def wait_until(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_loop_survives_a_failing_step_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []

    def step() -> float:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise RuntimeError("boom")
        return 60.0

    loop = Loop("test-loop", step, backoff=0.05, max_backoff=1.0)
    loop.start()
    wait_until(lambda: len(calls) >= 3)
    loop.stop()
    assert calls[1] - calls[0] >= 0.04  # the first retry waits the back-off
    assert calls[2] - calls[1] >= 0.09  # doubled: 0.05 then 0.1
    assert "test-loop: step failed" in caplog.text


def test_wake_cuts_the_wait_short_and_stop_ends_the_loop() -> None:
    calls: list[int] = []
    loop = Loop("test-wake", lambda: calls.append(1) or 60.0)
    loop.start()
    loop.start()  # a second start does nothing
    wait_until(lambda: len(calls) == 1)
    loop.wake()
    wait_until(lambda: len(calls) == 2)
    loop.stop()
    assert not loop.running
    time.sleep(0.05)
    assert len(calls) == 2


def test_spawn_runs_once_and_logs_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    done = threading.Event()
    spawn(done.set, name="test-task").join(1)
    assert done.is_set()

    def fail() -> None:
        raise ValueError("nope")

    spawn(fail, name="test-failing-task").join(1)
    assert "test-failing-task failed" in caplog.text
