"""alyx/gunicorn_response.py: a JSON answer's head and body leave in one write, exactly as gunicorn
would frame them in two; everything else is written as gunicorn writes it."""
from __future__ import annotations

from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi

from alyx import gunicorn_response
from alyx.gunicorn_response import OneWriteResponse


class FakeSocket:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


class FakeRequest:
    def __init__(self, method: str = "GET", version: tuple[int, int] = (1, 1)) -> None:
        self.method, self.version = method, version

    def should_close(self) -> bool:
        return False


def respond(cls: type[wsgi.Response], status: str, headers: list[tuple[str, str]], body: list[bytes],
            method: str = "GET") -> list[bytes]:
    sock = FakeSocket()
    resp = cls(FakeRequest(method), sock, Config())
    resp.start_response(status, headers)
    for chunk in body:
        resp.write(chunk)
    resp.close()
    return sock.writes


def without_date(data: bytes) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"Date: "))


def test_a_known_length_body_goes_out_with_its_head_in_one_write() -> None:
    headers = [("Content-Type", "application/json"), ("Content-Length", "11")]
    one = respond(OneWriteResponse, "200 OK", headers, [b'{"id":"ab"}'])
    two = respond(wsgi.Response, "200 OK", headers, [b'{"id":"ab"}'])
    assert len(one) == 1 and len(two) == 2
    assert without_date(one[0]) == without_date(b"".join(two))
    assert one[0].endswith(b'\r\n\r\n{"id":"ab"}') and b"Content-Length: 11\r\n" in one[0]


@pytest.mark.parametrize(("status", "headers", "body", "method", "joined"), [
    ("200 OK", [("Content-Type", "text/plain")], [b"ab", b"cd"], "GET", False),  # no length: chunked
    ("200 OK", [("Content-Length", "4")], [b"ab", b"cd"], "GET", True),  # the head joins the first chunk only
    ("200 OK", [("Content-Length", "4")], [b"abcd"], "HEAD", False),  # no body on the wire
    ("204 NO CONTENT", [("Content-Type", "text/html")], [b""], "DELETE", False),
    ("200 OK", [("Content-Length", "2")], [b"abcd"], "GET", False),  # more than the length: cut as gunicorn cuts
    ("200 OK", [("Content-Length", str(100_000))], [b"x" * 100_000], "GET", False),  # large: not copied
])
def test_other_responses_put_the_same_bytes_on_the_wire_as_gunicorn(
        status: str, headers: list[tuple[str, str]], body: list[bytes], method: str, joined: bool) -> None:
    ours = respond(OneWriteResponse, status, headers, body, method)
    theirs = respond(wsgi.Response, status, headers, body, method)
    assert without_date(b"".join(ours)) == without_date(b"".join(theirs))
    if joined:
        assert len(ours) == len(theirs) - 1 and ours[1:] == theirs[2:]
    else:
        assert [without_date(w) for w in ours] == [without_date(w) for w in theirs]


def test_while_the_worker_holds_other_connections_gunicorn_writes_as_it_does(monkeypatch: Any) -> None:
    headers = [("Content-Type", "application/json"), ("Content-Length", "2")]
    monkeypatch.setattr(gunicorn_response, "_open", [3])
    ours = respond(OneWriteResponse, "200 OK", headers, [b"ok"])
    theirs = respond(wsgi.Response, "200 OK", headers, [b"ok"])
    assert len(ours) == 2 and [without_date(w) for w in ours] == [without_date(w) for w in theirs]
    monkeypatch.setattr(gunicorn_response, "_open", [1])
    assert len(respond(OneWriteResponse, "200 OK", headers, [b"ok"])) == 1


def test_install_counts_the_gevent_workers_connections(monkeypatch: Any) -> None:
    from gunicorn.workers import ggevent

    seen: list[int] = []
    monkeypatch.setattr(ggevent.GeventWorker, "handle", lambda *args: seen.append(gunicorn_response.open_connections()))
    monkeypatch.setattr(wsgi, "Response", wsgi.Response)
    gunicorn_response.install()
    gunicorn_response.install()  # twice: still counted once
    assert wsgi.Response is OneWriteResponse
    before = gunicorn_response.open_connections()
    ggevent.GeventWorker.handle(object(), None, None, None)
    assert seen == [before + 1] and gunicorn_response.open_connections() == before
