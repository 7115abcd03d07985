"""gunicorn's response with the status line, headers and a small body in one write, for a lone connection.

gunicorn 27 sends the head of every response with one ``sendall`` and each body chunk with another:
a JSON answer takes two system calls, two TCP segments and, for a client waiting on it, often two
wake-ups. ``OneWriteResponse`` joins the head to the first body chunk when the response has a
``Content-Length``, is not chunked, carries a body, that chunk is small, and the worker process is
handling this one connection only; everything else (streams, files, HEAD, 204/304, upgrades, and
any response while the worker holds other connections) is written by gunicorn's own ``write``.

Why only then: with several keep-alive connections on a worker, answered in one write, a client's
next request was often already there when its greenlet read again, so that greenlet served request
after request while the worker's other connections waited; under 8 clients GET p50 halved and
throughput rose ~15%, but p99 tripled, on Alyx and on bench/floor.py alike. Yielding to the hub after
every response restored p99 but tripled list p50 (docs/benchmarks.md, "Round 3"). A lone connection
(one sequential client per worker) has nobody to starve, and gets the shorter round trip.
``gunicorn.conf.py`` installs this (``install``) in the master, before the workers fork.
"""
from __future__ import annotations

from typing import Any

from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.workers import ggevent

JOINED_BODY_LIMIT = 64 * 1024  # larger bodies are sent as gunicorn sends them (no copy of a big buffer)
_open = [0]  # connections this worker process is handling now (GeventWorker.handle, counted by install)


class OneWriteResponse(wsgi.Response):  # type: ignore[misc]  # gunicorn ships no type hints
    """A gunicorn ``Response`` whose first small body chunk goes out in the same write as its head."""

    def write(self, arg: Any) -> None:
        """As gunicorn's ``write``; the head joins ``arg`` when it can (see the module docstring)."""
        sent: bool = getattr(self, "headers_sent")  # noqa: B009 - gunicorn's attribute, untyped there
        if (sent or _open[0] > 1 or self.chunked or self._omits_body or not isinstance(arg, bytes)
                or self.response_length is None or not 0 < len(arg) <= min(self.response_length, JOINED_BODY_LIMIT)):
            super().write(arg)
            return
        head = self.default_headers()
        head.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        util.write(self.sock, ("".join(head) + "\r\n").encode("latin-1") + arg)
        self.headers_sent = True
        self.sent += len(arg)


def open_connections() -> int:
    """How many connections this worker process is handling now (0 outside a gunicorn gevent worker)."""
    return _open[0]


def install() -> None:
    """Make gunicorn build every response as a ``OneWriteResponse`` (``wsgi.create`` looks the class up
    in its module) and count the gevent worker's open connections."""
    wsgi.Response = OneWriteResponse
    handle = ggevent.GeventWorker.handle
    if getattr(handle, "counts_connections", False):
        return

    def counted(worker: Any, listener: Any, client: Any, addr: Any) -> None:
        _open[0] += 1
        try:
            handle(worker, listener, client, addr)
        finally:
            _open[0] -= 1

    counted.counts_connections = True  # type: ignore[attr-defined]
    ggevent.GeventWorker.handle = counted
