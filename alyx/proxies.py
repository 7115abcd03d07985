"""Trusted reverse proxies: the client address and scheme from X-Forwarded-* only when a proxy we trust sent them.

A WSGI middleware (applied in alyx/app.py when `server.trusted_proxies` is set). A request whose
peer (REMOTE_ADDR) is a trusted proxy gets REMOTE_ADDR from X-Forwarded-For, read right to left and
skipping trusted hops, so the first untrusted address is the client and whatever a client wrote
further left is ignored; and wsgi.url_scheme from X-Forwarded-Proto. From any other peer the
headers are left alone and change nothing: a client cannot spoof its address. The original peer is
kept in environ["alyx.proxy_peer"].
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def parse_networks(spec: str) -> list[Network]:
    """"127.0.0.1, 10.0.0.0/8, ::1" → networks; raises ValueError naming a bad entry."""
    networks: list[Network] = []
    for part in (p.strip() for p in spec.replace(" ", ",").split(",")):
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"not an IP address or network: {part!r}") from None
    return networks


class TrustedProxies:
    """Wraps a WSGI app; see the module docstring."""

    def __init__(self, app: WSGIApp, networks: list[Network]) -> None:
        self.app = app
        self.networks = networks

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        peer = environ.get("REMOTE_ADDR", "")
        if peer and self.trusted(peer):
            environ["alyx.proxy_peer"] = peer
            hops = [h.strip() for h in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
            client = peer
            while hops:
                client = hops.pop()
                if not self.trusted(client):
                    break
            environ["REMOTE_ADDR"] = client
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
        return self.app(environ, start_response)
