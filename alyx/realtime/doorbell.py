"""The doorbell: wakes the tailers of the other workers on this host at once after a commit.

Each worker with a tailer binds a Unix datagram socket in a directory named after the database;
a writer sends one byte to every socket there after its commit. Best effort: a missed ring costs
one poll interval, never a change.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import socket
import tempfile
import time
import zlib
from collections.abc import Callable

from alyx.background import Loop

RETRY_SECONDS = 0.5  # after a failed receive
PEERS_TTL_SECONDS = 1.0  # how long the list of the other workers' sockets is trusted


class Doorbell:
    """Rings the other workers of this host (`ring`) and hears their rings (`listen`)."""

    def __init__(self, database_display: str) -> None:
        self.dir = os.path.join(tempfile.gettempdir(), "alyx-rt-" + format(zlib.crc32(database_display.encode()),
                                                                           "08x"))
        self.path: str | None = None
        self.sock: socket.socket | None = None
        self.loop: Loop | None = None
        self._peers: list[str] = []
        self._peers_at = 0.0
        self._sender: socket.socket | None = None

    def listen(self, on_ring: Callable[[], None]) -> None:
        """Bind this process's socket and call `on_ring` for every ring (in a background loop)."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(self.dir, f"{os.getpid()}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.path)
        self.sock = sock
        atexit.register(self._forget, self.path)

        def hear() -> float:
            try:
                sock.recv(64)
            except OSError:
                return RETRY_SECONDS
            on_ring()
            return 0.0

        self.loop = Loop("alyx-realtime-doorbell", hear)
        self.loop.start()

    @staticmethod
    def _forget(path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))  # only when no other worker is bound there

    def ring(self) -> None:
        now = time.monotonic()
        if now - self._peers_at > PEERS_TTL_SECONDS:
            try:
                self._peers = [os.path.join(self.dir, n) for n in os.listdir(self.dir) if n.endswith(".sock")]
            except FileNotFoundError:
                self._peers = []
            self._peers_at = now
        if not self._peers:
            return
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        for peer in self._peers:
            if peer == self.path:
                continue
            try:
                self._sender.sendto(b"!", peer)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(peer)  # a worker that is gone
                self._peers_at = 0.0
            except OSError:
                pass  # its queue is full: it is awake anyway
