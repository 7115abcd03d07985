"""Captures a sandbox's stdout/stderr and hands each invocation the lines written while it ran.

Runtimes write an end mark (``\\x1eALYX-END <invocation id>\\x1e``) on both streams after a
handler returns, so the output of a call is complete before its log is taken. Chunks from pipes
or Docker log frames do not align with lines; they are buffered and split here.
"""
from __future__ import annotations

import threading
from collections import deque

END_PREFIX = b"\x1eALYX-END "
END_SUFFIX = b"\x1e"
DEFAULT_CAP = 64 * 1024


class CappedBuffer:
    """Bytes up to a cap; what is dropped is counted and shown as a truncation marker."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[bytes] = []
        self.size = 0
        self.dropped = 0

    def append(self, data: bytes) -> None:
        room = self.cap - self.size
        if room > 0:
            self.parts.append(data[:room])
            self.size += min(room, len(data))
        self.dropped += max(0, len(data) - max(room, 0))

    def text(self) -> str:
        out = b"".join(self.parts).decode("utf-8", "replace")
        if self.dropped:
            out += f"\n[... {self.dropped} more bytes truncated]"
        return out


class StreamCapture:
    """One output stream of one sandbox: feed it raw chunks, take per-invocation text out."""

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self._partial = b""
        self._sinks: dict[str, CappedBuffer] = {}
        self._ended: dict[str, threading.Event] = {}
        self._closed = False
        self.tail: deque[bytes] = deque(maxlen=40)
        # Go prints its fatal error first, then every goroutine's stack: keep that line past the tail.
        self.fatal = b""

    def begin(self, invocation_id: str) -> None:
        with self._lock:
            self._sinks[invocation_id] = CappedBuffer(self.cap)
            self._ended[invocation_id] = threading.Event()
            if self._closed:
                self._ended[invocation_id].set()

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            data = self._partial + chunk
            lines = data.split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                self._line(line + b"\n")
            # An end mark never ends without a newline, but user text without one may precede it.
            if len(self._partial) > self.cap:
                self._deliver(self._partial)
                self._partial = b""

    def _line(self, line: bytes) -> None:
        at = line.find(END_PREFIX)
        if at >= 0 and line.rstrip(b"\n").endswith(END_SUFFIX):
            if at:
                self._deliver(line[:at])
            invocation = line[at + len(END_PREFIX):].rstrip(b"\n")[:-len(END_SUFFIX)].decode("utf-8", "replace")
            event = self._ended.get(invocation)
            if event is not None:
                event.set()
            return
        self._deliver(line)

    def _deliver(self, data: bytes) -> None:
        self.tail.append(data)
        if data.startswith(b"fatal error: "):
            self.fatal = data[:500]
        for sink in self._sinks.values():
            sink.append(data)

    def close(self) -> None:
        """The stream ended (the sandbox is gone): release everyone waiting for an end mark."""
        with self._lock:
            if self._partial:
                self._deliver(self._partial)
                self._partial = b""
            self._closed = True
            for event in self._ended.values():
                event.set()

    def finish(self, invocation_id: str, wait: float) -> str:
        """The text written during an invocation, waiting up to `wait` seconds for its end mark."""
        event = self._ended.get(invocation_id)
        if event is not None and wait > 0:
            event.wait(wait)
        with self._lock:
            if event is None or not event.is_set():
                # No end mark (timeout, crash): include the unterminated last line too.
                if self._partial:
                    self._deliver(self._partial)
                    self._partial = b""
            self._ended.pop(invocation_id, None)
            sink = self._sinks.pop(invocation_id, None)
        return sink.text() if sink else ""

    def tail_text(self) -> str:
        """The last lines written (after a Go fatal error's own line when its stack dump pushed it out)."""
        with self._lock:
            fatal = self.fatal if self.fatal and self.fatal not in self.tail else b""
            return (fatal + b"".join(self.tail)).decode("utf-8", "replace")
