"""Webhook signatures: verify and produce HMAC signatures over a raw body — pure, no Flask, no app.

Accepted header forms (the common ones senders use):

- ``sha256=<hex>`` / ``sha1=<hex>`` (GitHub, many others), with the prefix matching the algorithm;
- bare ``<hex>`` or ``<base64>`` of the digest (Shopify sends base64);
- Stripe style ``t=<unix seconds>,v1=<hex>[,v1=<hex>...]``: the signed text is ``"<t>.<body>"``, and
  a timestamp outside the tolerance window is refused, so a captured request cannot be replayed later.

A ``scheme`` pins one form: ``timestamped`` (Stripe), ``prefixed`` (``sha256=<hex>``), ``hex`` or
``base64``; ``any`` (the default) takes every form above. Pin ``timestamped`` when the sender signs
that way: otherwise a captured delivery can be replayed as body ``"<t>.<body>"`` with the bare
signature. A timestamped match carries ``replay_key`` and ``replay_expires`` so that the caller can
refuse the same (t, signature) a second time inside the window.

Every comparison is constant time (``hmac.compare_digest``) against the digest computed here.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

ALGORITHMS = {"hmac-sha256": hashlib.sha256, "hmac-sha1": hashlib.sha1}
PREFIXES = {"hmac-sha256": "sha256=", "hmac-sha1": "sha1="}
DEFAULT_TOLERANCE_SECONDS = 300
SCHEMES = ("any", "timestamped", "prefixed", "hex", "base64")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")  # plain digits only: no sign, no "_", no 400-digit numbers
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True)
class Verification:
    """The outcome of checking one request: ``verified``, or why not (a short sentence)."""

    verified: bool
    error: str | None = None
    replay_key: str | None = None  # a timestamped match: "<t>:<signature hex>", seen once per window
    replay_expires: float | None = None  # unix seconds after which the timestamp is refused anyway


def _digest(algorithm: str, secret: str | bytes, message: bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, ALGORITHMS[algorithm]).digest()


def _decode(candidate: str) -> bytes | None:
    """A signature text as bytes: hex first (the common case), then standard or URL-safe base64."""
    text = candidate.strip()
    try:
        return bytes.fromhex(text)
    except ValueError:
        return _decode_base64(text)


def _parse_timestamped(value: str) -> tuple[str, list[str]] | None:
    """``t=1,v1=abc,v1=def`` → ("1", ["abc", "def"]); None when the value is not in that form."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    pairs = [p.split("=", 1) for p in parts]
    if not pairs or any(len(p) != 2 for p in pairs):
        return None
    timestamps = [v for k, v in pairs if k == "t"]
    signatures = [v for k, v in pairs if k == "v1"]
    if len(timestamps) != 1:
        return None
    return timestamps[0], signatures


def verify(body: bytes, header_value: str | None, secret: str | bytes | None, algorithm: str = "hmac-sha256",
           tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS, now: float | None = None,
           scheme: str = "any") -> Verification:
    """Check ``header_value`` as a signature of ``body`` with ``secret`` (see the module doc for forms)."""
    if algorithm not in ALGORITHMS:
        return Verification(False, f"unsupported algorithm {algorithm!r}")
    if scheme not in SCHEMES:
        return Verification(False, f"unsupported signature scheme {scheme!r}")
    if not secret:
        return Verification(False, "no secret is configured for this webhook")
    if header_value is None or not header_value.strip():
        return Verification(False, "the signature header is missing")
    value = header_value.strip()
    looks_stamped = value.startswith("t=") or ",v1=" in value
    stamped = _parse_timestamped(value) if looks_stamped and scheme in ("any", "timestamped") else None
    if scheme == "timestamped" and stamped is None:
        return Verification(False, "expected a t=<unix seconds>,v1=<signature> header (this webhook signs with a "
                                   "timestamp)")
    if stamped is not None:
        return _verify_timestamped(body, stamped, secret, algorithm, tolerance_seconds, now)
    prefix = PREFIXES[algorithm]
    if "=" in value.rstrip("="):  # base64 has '=' only as trailing padding: this one is labelled
        if scheme not in ("any", "prefixed"):
            return Verification(False, f"expected a bare {scheme} signature")
        label, _, value = value.partition("=")
        if f"{label.lower()}=" != prefix:
            return Verification(False, f"the signature is labelled {label!r}; expected {prefix[:-1]!r}")
    elif scheme == "prefixed":
        return Verification(False, f"expected a {prefix}<hex> signature")
    if scheme == "hex" and not _HEX.fullmatch(value):
        return Verification(False, "expected a hex signature")
    decoded = _decode_base64(value) if scheme == "base64" else _decode(value)
    if not _matches([decoded], _digest(algorithm, secret, body)):
        return Verification(False, "the signature does not match the body")
    return Verification(True)


def _verify_timestamped(body: bytes, stamped: tuple[str, list[str]], secret: str | bytes, algorithm: str,
                        tolerance_seconds: float, now: float | None) -> Verification:
    timestamp, candidates = stamped
    if not _UNIX_SECONDS.fullmatch(timestamp):
        return Verification(False, "the signature timestamp is not an integer of unix seconds")
    sent_at = int(timestamp)
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        return Verification(False, f"the signature timestamp is outside the {tolerance_seconds:g}s tolerance "
                                   "window (a replay, or a clock far off)")
    if not candidates:
        return Verification(False, "the signature header has a timestamp but no v1 signature")
    expected = _digest(algorithm, secret, timestamp.encode() + b"." + body)
    if not _matches([_decode(c) for c in candidates], expected):
        return Verification(False, "the signature does not match the body")
    return Verification(True, replay_key=f"{timestamp}:{expected.hex()}", replay_expires=sent_at + tolerance_seconds)


def _matches(decoded: list[bytes | None], expected: bytes) -> bool:
    matched = False
    for candidate in decoded:
        # No early exit on a match: the work done does not depend on which candidate matched.
        if candidate is not None and hmac.compare_digest(candidate, expected):
            matched = True
    return matched


def _decode_base64(candidate: str) -> bytes | None:
    text = candidate.strip()
    try:
        padded = text + "=" * (-len(text) % 4)
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None


def sign(body: bytes, secret: str | bytes, algorithm: str = "hmac-sha256", timestamp: int | None = None) -> str:
    """A Stripe-style header value ``t=<unix>,v1=<hex>`` for ``body`` (outgoing webhooks)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return f"t={stamp},v1={_digest(algorithm, secret, stamp.encode() + b'.' + body).hex()}"


def sign_plain(body: bytes, secret: str | bytes, algorithm: str = "hmac-sha256") -> str:
    """A ``sha256=<hex>`` header value for ``body`` (GitHub style)."""
    return PREFIXES[algorithm] + _digest(algorithm, secret, body).hex()
