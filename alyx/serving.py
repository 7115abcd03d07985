"""gunicorn tuning for Alyx's workers, installed from gunicorn.conf.py (``post_fork``).

gunicorn's HTTP/1 response sends the status line and headers with one ``sendall`` and the body
with another. The listening socket has TCP_NODELAY, so every JSON response leaves as two
segments: two syscalls and two wake-ups of the client. Under py-spy, the header ``sendall`` of
a GET by id was a third of a worker's time. For a response whose length is known (every JSON
response here), ``CoalescingResponse`` sends headers and body in one ``sendall``. Chunked,
bodiless (HEAD, 1xx, 204, 304) and streamed responses keep gunicorn's own path.
"""
from __future__ import annotations

from gunicorn import util
from gunicorn.http import wsgi


class CoalescingResponse(wsgi.Response):
    """A gunicorn Response that puts the headers in front of the first body bytes."""

    def write(self, arg: bytes) -> None:
        if (self.headers_sent or self.chunked or self._omits_body or not isinstance(arg, bytes) or not arg
                or self.response_length is None):
            super().write(arg)
            return
        body = arg[:max(self.response_length - self.sent, 0)]
        tosend = self.default_headers()
        tosend.extend(f"{k}: {v}\r\n" for k, v in self.headers)
        head = util.to_bytestring("".join(tosend) + "\r\n", "latin-1")
        self.headers_sent = True
        self.sent += len(body)
        util.write(self.sock, head + body)


def coalesce_response_writes() -> None:
    """Make gunicorn build HTTP/1 responses as CoalescingResponse (``wsgi.create`` looks it up per request)."""
    wsgi.Response = CoalescingResponse
