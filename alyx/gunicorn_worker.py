"""Four per-request costs of a gunicorn 27 worker that do not depend on the request, paid once instead.

A GET by id cost a gevent worker about 18 µs in these (docs/benchmarks.md, round 6), more than all
of Alyx's own work on a read outside SQLite:

- **Settings.** gunicorn reads about 22 settings per request through ``Config.__getattr__`` (a
  Python call and a dict lookup each, ~0.6 µs). A forked worker's settings never change (a reload
  forks new workers from the reloaded master), so ``settle_settings`` copies their values onto the
  worker's config as plain attributes; the properties of the class (``worker_class``, ``is_ssl``,
  ...) keep being computed as before.
- **The Date header.** ``util.http_date()`` formats the time with ``email.utils`` for every
  response (~2.8 µs); the header has a resolution of one second, so ``http_date`` keeps the text of
  the current second.
- **The trusted-proxy check.** Every request asks whether its peer is in ``forwarded_allow_ips``,
  parsing the address with ``ipaddress`` (~2.4 µs); ``_ip_in_allow_list`` keeps the answer per peer
  address and allow list (at most ``MAX_PEERS``, then forgotten: a flood of addresses costs a
  recomputation, never memory).

- **The error stream.** Every request's environ gets a new ``wsgi.errors`` object, whose
  constructor asks ``logging`` for gunicorn's error logger (a module lock) and collects its
  handlers' streams (~2% of a worker's time on sequential creates, docs/benchmarks.md round 8).
  ``ErrorStream`` looks the streams up when something is written instead, which is rare: the same
  destinations, and a log file reopened after rotation is still found.

``install`` (in the master, from gunicorn.conf.py) puts the last three in place; ``settle_settings``
runs in each worker after it has loaded the app (``post_worker_init``).
"""
from __future__ import annotations

import time
from typing import Any

from gunicorn import util
from gunicorn.http import message, wsgi

MAX_PEERS = 4096
_formatted = util.http_date
_checked = message._ip_in_allow_list
_ErrorsWrapper: Any = wsgi.WSGIErrorsWrapper  # gunicorn's own, which ErrorStream replaces
_date: list[Any] = [-1, ""]  # (second, its Date header text)
_trusted: dict[tuple[str, tuple[str, ...]], bool] = {}


def http_date(timestamp: float | None = None) -> str:
    """gunicorn's ``util.http_date``: the Date text of now is made once per second."""
    if timestamp is not None:
        given: str = _formatted(timestamp)
        return given
    second = int(time.time())
    if second != _date[0]:
        _date[1] = _formatted(second)
        _date[0] = second
    text: str = _date[1]
    return text


def _ip_in_allow_list(ip_str: str, allow_list: Any, networks: Any) -> bool:
    """gunicorn's check of a peer against an allow list (``networks`` is computed from it), remembered."""
    key = (ip_str, tuple(allow_list))
    found = _trusted.get(key)
    if found is None:
        if len(_trusted) >= MAX_PEERS:
            _trusted.clear()
        found = _trusted[key] = bool(_checked(ip_str, allow_list, networks))
    return found


class ErrorStream(_ErrorsWrapper):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's ``wsgi.errors``, with the error log's streams found when written to, not per request."""

    def __init__(self, cfg: Any) -> None:  # RawIOBase has no __init__ to call, as in gunicorn's
        self.cfg = cfg

    @property
    def streams(self) -> list[Any]:  # read by gunicorn's write()
        found: list[Any] = _ErrorsWrapper(self.cfg).streams
        return found


def install() -> None:
    """Put the once-a-second Date header, the remembered proxy check and the lazy error stream in
    gunicorn's modules."""
    util.http_date = http_date
    message._ip_in_allow_list = _ip_in_allow_list
    wsgi.WSGIErrorsWrapper = ErrorStream  # what gunicorn's base_environ makes for every request


def settle_settings(cfg: Any) -> None:
    """A worker's settings as plain attributes of its config (see the module docstring)."""
    computed = {name for name in dir(type(cfg)) if isinstance(getattr(type(cfg), name, None), property)}
    for name, setting in cfg.settings.items():
        if name not in computed:
            cfg.__dict__[name] = setting.get()
