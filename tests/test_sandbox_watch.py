"""alyx.sandbox.watch: real file changes under functions/ (watchdog) name the function that changed."""
from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alyx.sandbox.watch import FunctionWatcher


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    root = tmp_path / "functions"
    (root / "report").mkdir(parents=True)
    (root / "report" / "index.py").write_text("def handler(req, res):\n    return 1\n")
    (root / "hello.py").write_text("def handler(req, res):\n    return 1\n")
    return root


@pytest.fixture
def changes(functions: Path) -> Iterator[queue.Queue[str]]:
    seen: queue.Queue[str] = queue.Queue()
    watcher = FunctionWatcher(functions, seen.put)
    watcher.start()
    time.sleep(0.2)  # inotify watches are in place once the observer thread runs
    yield seen
    watcher.stop()


def names_within(seen: queue.Queue[str], timeout: float = 5.0, settle: float = 0.3) -> set[str]:
    """The names reported until `settle` seconds pass without a new one (at most `timeout`)."""
    names: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            names.add(seen.get(timeout=settle if names else max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            break
    return names


def test_an_edit_in_a_folder_function_names_the_folder(functions: Path, changes: queue.Queue[str]) -> None:
    (functions / "report" / "index.py").write_text("def handler(req, res):\n    return 2\n")
    assert names_within(changes) == {"report"}


def test_a_single_file_function_is_named_without_its_extension(functions: Path, changes: queue.Queue[str]) -> None:
    (functions / "hello.py").write_text("def handler(req, res):\n    return 2\n")
    assert names_within(changes) == {"hello"}


def test_new_nested_files_and_renames_are_changes_too(functions: Path, changes: queue.Queue[str]) -> None:
    (functions / "report" / "lib").mkdir()
    (functions / "report" / "lib" / "util.py").write_text("X = 1\n")
    assert names_within(changes) == {"report"}
    (functions / "hello.py").rename(functions / "greet.js")
    assert names_within(changes) == {"hello", "greet"}  # the old name goes, the new one comes


def test_reading_a_file_is_not_a_change(functions: Path, changes: queue.Queue[str]) -> None:
    (functions / "report" / "index.py").read_text()
    assert names_within(changes, timeout=0.5) == set()


def test_a_failing_callback_does_not_stop_the_watcher(functions: Path) -> None:
    seen: queue.Queue[str] = queue.Queue()

    def on_change(name: str) -> None:
        seen.put(name)
        raise RuntimeError("a broken edit")

    watcher = FunctionWatcher(functions, on_change)
    watcher.start()
    try:
        time.sleep(0.2)
        (functions / "hello.py").write_text("broken(\n")
        assert "hello" in names_within(seen)
        (functions / "report" / "index.py").write_text("fixed = 1\n")
        assert "report" in names_within(seen)
    finally:
        watcher.stop()
    assert not watcher.observer.is_alive()
