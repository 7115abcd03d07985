"""alyx/gunicorn_worker.py: the per-request work gunicorn repeats, done once, with gunicorn's own answers."""
from __future__ import annotations

import email.utils
import ipaddress

import pytest
from gunicorn.config import Config
from gunicorn.http import message

from alyx import gunicorn_worker


def test_the_date_header_is_gunicorns_text_made_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_800_000_000.25]
    monkeypatch.setattr(gunicorn_worker.time, "time", lambda: now[0])
    made: list[float] = []

    def formatted(timestamp: float) -> str:
        made.append(timestamp)
        return email.utils.formatdate(timestamp, localtime=False, usegmt=True)

    monkeypatch.setattr(gunicorn_worker, "_formatted", formatted)
    monkeypatch.setattr(gunicorn_worker, "_date", [-1, ""])
    first = gunicorn_worker.http_date()
    now[0] = 1_800_000_000.99
    assert gunicorn_worker.http_date() == first == "Fri, 15 Jan 2027 08:00:00 GMT"
    assert made == [1_800_000_000]
    now[0] = 1_800_000_001.0
    assert gunicorn_worker.http_date() == "Fri, 15 Jan 2027 08:00:01 GMT"
    assert gunicorn_worker.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"  # a given time: formatted as asked


@pytest.mark.parametrize(("peer", "allowed"), [
    ("127.0.0.1", ["127.0.0.1", "::1"]), ("10.0.0.7", ["127.0.0.1"]), ("10.0.0.7", ["10.0.0.0/8"]),
    ("::1", ["127.0.0.1", "::1"]), ("not-an-ip", ["127.0.0.1"]), ("192.0.2.1", ["*"]), ("fe80::1", ["10.0.0.0/8"]),
])
def test_the_trusted_proxy_check_answers_as_gunicorns(peer: str, allowed: list[str]) -> None:
    networks = [ipaddress.ip_network(a) for a in allowed if a != "*"]
    expected = gunicorn_worker._checked(peer, allowed, networks)  # gunicorn's own function
    assert gunicorn_worker._checked.__module__ == "gunicorn.http.message"
    for _ in range(2):  # computed, then remembered
        assert gunicorn_worker._ip_in_allow_list(peer, allowed, networks) is expected


def test_the_remembered_peers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gunicorn_worker, "_trusted", {})
    monkeypatch.setattr(gunicorn_worker, "MAX_PEERS", 10)
    networks = [ipaddress.ip_network("10.0.0.0/8")]
    for n in range(25):
        assert gunicorn_worker._ip_in_allow_list(f"10.0.0.{n}", ["10.0.0.0/8"], networks) is True
    assert len(gunicorn_worker._trusted) <= 10


def test_installed_in_gunicorns_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunicorn import util
    from gunicorn.http import wsgi

    monkeypatch.setattr(util, "http_date", util.http_date)
    monkeypatch.setattr(message, "_ip_in_allow_list", message._ip_in_allow_list)
    monkeypatch.setattr(wsgi, "WSGIErrorsWrapper", wsgi.WSGIErrorsWrapper)
    gunicorn_worker.install()
    assert util.http_date is gunicorn_worker.http_date
    assert message._ip_in_allow_list is gunicorn_worker._ip_in_allow_list
    assert wsgi.WSGIErrorsWrapper is gunicorn_worker.ErrorStream


def test_settled_settings_read_the_same_and_properties_still_compute() -> None:
    cfg = Config()
    cfg.set("keepalive", 75)
    cfg.set("limit_request_line", 8190)
    before = {name: getattr(cfg, name) for name in cfg.settings}
    gunicorn_worker.settle_settings(cfg)
    assert {name: getattr(cfg, name) for name in cfg.settings} == before
    assert cfg.__dict__["keepalive"] == 75 and "keepalive" in vars(cfg)
    assert "worker_class" not in vars(cfg) and not cfg.is_ssl  # properties of the class are left to it


def test_gunicorns_environ_gets_the_lazy_error_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunicorn.http import wsgi

    cfg = Config()
    cfg.set("workers", 2)
    before = wsgi.base_environ(cfg)
    monkeypatch.setattr(wsgi, "WSGIErrorsWrapper", wsgi.WSGIErrorsWrapper)
    gunicorn_worker.install()
    looked_up: list[object] = []
    original = gunicorn_worker._ErrorsWrapper.__init__
    monkeypatch.setattr(gunicorn_worker._ErrorsWrapper, "__init__",
                        lambda self, c: (looked_up.append(c), original(self, c))[1])
    after = wsgi.base_environ(cfg)
    assert {k: v for k, v in after.items() if k != "wsgi.errors"} == \
        {k: v for k, v in before.items() if k != "wsgi.errors"}
    assert isinstance(after["wsgi.errors"], gunicorn_worker.ErrorStream)
    assert isinstance(after["wsgi.errors"], gunicorn_worker._ErrorsWrapper)
    assert looked_up == []  # nothing is looked up per request


def test_the_error_stream_writes_where_gunicorns_writes_even_after_a_reopen() -> None:
    import io
    import logging

    cfg = Config()
    cfg.set("errorlog", "/tmp/not-stderr.log")
    logger = logging.getLogger("gunicorn.error")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        stream = gunicorn_worker.ErrorStream(cfg)
        stream.write("one\n")
        first = handler.stream
        handler.setStream(io.StringIO())  # as a log reopen after rotation replaces the stream
        stream.write("two\n")
        assert first.getvalue() == "one\n" and handler.stream.getvalue() == "two\n"
    finally:
        logger.removeHandler(handler)
