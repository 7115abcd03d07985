"""Watches functions/ (watchdog 6, see STACK.md) and reports which functions changed.

Calls already see edits (the registry re-checks files on every call); the watcher makes the
switch happen before the next call: old sandboxes stop, min_warm ones for the new version start.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("alyx.sandbox")


class FunctionWatcher:
    """Calls `on_change(name)` for each function whose files change under `functions_dir`."""

    def __init__(self, functions_dir: Path, on_change: Callable[[str], None]) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        root = Path(functions_dir).resolve()

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                for raw in (event.src_path, getattr(event, "dest_path", "")):
                    if not raw:
                        continue
                    path = Path(raw if isinstance(raw, str) else raw.decode())
                    try:
                        first = path.resolve().relative_to(root).parts[0]
                    except (ValueError, IndexError):
                        continue
                    name = first.split(".", 1)[0]  # function names hold no dots: hello.py → hello
                    try:
                        on_change(name)
                    except Exception:  # noqa: BLE001 - a bad edit is reported by the next call
                        log.debug("refresh of function %s failed", name, exc_info=True)

        self.observer = Observer()
        self.observer.schedule(Handler(), str(root), recursive=True)
        self.observer.daemon = True

    def start(self) -> None:
        self.observer.start()

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
