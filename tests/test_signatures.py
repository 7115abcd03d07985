"""alyx.signatures: every accepted header form, and every way a signature must be refused."""
from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alyx.signatures import sign, sign_plain, verify

SECRET = "whsec_test"
BODY = b'{"event":"payment.succeeded","amount":42}'


def hexdigest(body: bytes, algo=hashlib.sha256, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, algo).hexdigest()


@pytest.mark.parametrize("header", [
    "sha256=" + hexdigest(BODY),
    "SHA256=" + hexdigest(BODY),
    hexdigest(BODY),
    hexdigest(BODY).upper(),
    base64.b64encode(hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()).decode(),
    " " + hexdigest(BODY) + " ",
])
def test_sha256_header_forms_verify(header: str) -> None:
    assert verify(BODY, header, SECRET).verified


def test_sha1() -> None:
    assert verify(BODY, "sha1=" + hexdigest(BODY, hashlib.sha1), SECRET, "hmac-sha1").verified
    assert verify(BODY, hexdigest(BODY, hashlib.sha1), SECRET, "hmac-sha1").verified
    # a sha256 signature (or label) does not pass as sha1
    result = verify(BODY, "sha256=" + hexdigest(BODY), SECRET, "hmac-sha1")
    assert not result.verified and "labelled" in result.error


@pytest.mark.parametrize("header, reason", [
    (None, "missing"),
    ("", "missing"),
    ("sha256=" + "0" * 64, "does not match"),
    ("sha256=nothex!", "does not match"),
    ("md5=" + hexdigest(BODY), "labelled"),
    ("sha256=" + hexdigest(BODY, secret="other"), "does not match"),
    ("sha256=" + hexdigest(BODY)[:-2], "does not match"),
])
def test_bad_signatures_are_refused(header, reason) -> None:
    result = verify(BODY, header, SECRET)
    assert not result.verified
    assert reason in result.error


def test_body_tampering_is_detected() -> None:
    header = sign_plain(BODY, SECRET)
    assert verify(BODY, header, SECRET).verified
    assert not verify(BODY + b" ", header, SECRET).verified
    assert not verify(BODY.replace(b"42", b"43"), header, SECRET).verified


def test_no_secret_configured_never_verifies() -> None:
    result = verify(BODY, "sha256=" + hexdigest(BODY, secret=""), "")
    assert not result.verified and "no secret" in result.error


def test_stripe_style_with_tolerance_window() -> None:
    now = 1_700_000_000
    header = sign(BODY, SECRET, timestamp=now)
    assert header.startswith(f"t={now},v1=")
    assert verify(BODY, header, SECRET, now=now).verified
    assert verify(BODY, header, SECRET, now=now + 299).verified
    replayed = verify(BODY, header, SECRET, now=now + 301)
    assert not replayed.verified and "tolerance" in replayed.error
    future = verify(BODY, header, SECRET, now=now - 301)
    assert not future.verified and "tolerance" in future.error
    assert verify(BODY, header, SECRET, now=now + 3000, tolerance_seconds=3600).verified


def test_stripe_style_timestamp_is_signed() -> None:
    now = 1_700_000_000
    signature = sign(BODY, SECRET, timestamp=now).split("v1=")[1]
    moved = f"t={now + 10},v1={signature}"  # an attacker refreshing the timestamp of a captured request
    result = verify(BODY, moved, SECRET, now=now + 10)
    assert not result.verified and "does not match" in result.error


def test_stripe_style_several_v1_and_unknown_schemes() -> None:
    now = 1_700_000_000
    good = sign(BODY, SECRET, timestamp=now).split("v1=")[1]
    header = f"t={now},v1={'0' * 64},v0=legacy,v1={good}"
    assert verify(BODY, header, SECRET, now=now).verified
    assert not verify(BODY, f"t={now},v0=x", SECRET, now=now).verified
    assert "not an integer" in verify(BODY, "t=abc,v1=00", SECRET, now=now).error


def test_unsupported_algorithm() -> None:
    assert not verify(BODY, hexdigest(BODY), SECRET, "hmac-md5").verified


@given(body=st.binary(max_size=512), secret=st.text(min_size=1, max_size=40))
def test_sign_then_verify_round_trips(body: bytes, secret: str) -> None:
    assert verify(body, sign_plain(body, secret), secret).verified
    assert verify(body, sign(body, secret, timestamp=1000), secret, now=1000).verified
    assert not verify(body + b"x", sign_plain(body, secret), secret).verified


@given(header=st.text(max_size=200))
def test_arbitrary_headers_never_raise(header: str) -> None:
    assert verify(BODY, header, SECRET).verified in (True, False)


def test_the_configured_scheme_is_the_only_one_accepted() -> None:
    now = 1_700_000_000
    stamped = sign(BODY, SECRET, timestamp=now)
    bare = stamped.split("v1=")[1]
    # a captured Stripe-style delivery replayed as body "T.body" with the bare signature
    forged_body = f"{now}.".encode() + BODY
    assert verify(forged_body, bare, SECRET).verified  # the permissive default takes any form...
    for forged in (bare, "sha256=" + bare, base64.b64encode(bytes.fromhex(bare)).decode()):
        refused = verify(forged_body, forged, SECRET, scheme="timestamped", now=now)
        assert not refused.verified and "t=" in refused.error  # ...a timestamped hook only its own
    assert verify(BODY, stamped, SECRET, scheme="timestamped", now=now).verified
    assert not verify(BODY, stamped, SECRET, scheme="prefixed", now=now).verified
    assert not verify(BODY, hexdigest(BODY), SECRET, scheme="prefixed").verified
    assert verify(BODY, "sha256=" + hexdigest(BODY), SECRET, scheme="prefixed").verified
    assert verify(BODY, hexdigest(BODY), SECRET, scheme="hex").verified
    assert not verify(BODY, "sha256=" + hexdigest(BODY), SECRET, scheme="hex").verified
    b64 = base64.b64encode(hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()).decode()
    assert verify(BODY, b64, SECRET, scheme="base64").verified
    assert not verify(BODY, hexdigest(BODY), SECRET, scheme="base64").verified


@pytest.mark.parametrize("stamp", ["9" * 400, "-5", "+1700000000", "1_700_000_000", " 17", "1e9", ""])
def test_odd_timestamps_are_refused_not_raised(stamp: str) -> None:
    result = verify(BODY, f"t={stamp},v1={'ab' * 32}", SECRET)  # the real clock: a float
    assert not result.verified and result.error


def test_a_timestamped_match_names_its_replay_key() -> None:
    now = 1_700_000_000
    result = verify(BODY, sign(BODY, SECRET, timestamp=now), SECRET, now=now, tolerance_seconds=300)
    assert result.verified and result.replay_key and result.replay_expires == now + 300
    other = verify(BODY, sign(BODY, SECRET, timestamp=now + 1), SECRET, now=now, tolerance_seconds=300)
    assert other.replay_key != result.replay_key
    assert verify(BODY, sign_plain(BODY, SECRET), SECRET).replay_key is None
