"""Account flows: email verification, password reset and email change by single-use, short-lived,
hashed tokens sent as mail through a real SMTP server on loopback (aiosmtpd), SQLite and PostgreSQL."""
from __future__ import annotations

import email
import queue
import re
import time
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port
from tests.helpers import assert_error

PASSWORD = "correct horse battery"
SCHEMA = """
collections:
  - name: users
    auth: true
  - name: posts
    fields:
      - {name: title, type: string}
    rules: {list: "true", create: "auth != null && auth.verified == true"}
"""


class Inbox:
    """aiosmtpd handler: every delivered message, parsed, in a queue."""

    def __init__(self) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.put(message)
        return "250 OK"

    def next(self, timeout: float = 10) -> Message:
        return self.messages.get(timeout=timeout)

    def none_within(self, seconds: float) -> bool:
        try:
            self.messages.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def app(make_app, smtp):
    _, port = smtp
    config = (f"mail:\n  from: Alyx <noreply@example.com>\n  smtp:\n    host: 127.0.0.1\n    port: {port}\n"
              "    tls: none\n")
    return make_app(SCHEMA, config)


def token_in(message: Message) -> str:
    body = message.get_payload(decode=True).decode()
    found = re.search(r"token=([A-Za-z0-9_-]{20,})", body)
    assert found, body
    return found.group(1)


def register(c, email_address: str = "ann@example.com") -> dict[str, Any]:
    resp = c.post("/api/auth/register", json={"email": email_address, "password": PASSWORD})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_verification_is_mailed_single_use_and_rules_can_require_it(app, smtp) -> None:
    inbox, _ = smtp
    c = app.test_client()
    ann = register(c)
    assert_error(c.post("/api/collections/posts", json={"title": "x"}, headers=bearer(ann)), 403)
    assert c.post("/api/auth/request-verification", json={"email": "ANN@example.com"}).status_code == 204
    message = inbox.next()
    assert message["X-Envelope-To"] == "ann@example.com" and "noreply@example.com" in message["From"]
    assert message["Subject"]
    token = token_in(message)
    with app.extensions["alyx"].db.connection():  # only a hash is stored
        stored = [row.token_hash for row in app.extensions["alyx"].system.account_token.select()]
    assert stored and token not in stored
    assert c.post("/api/auth/confirm-verification", json={"token": token}).status_code == 204
    assert c.get("/api/auth/me", headers=bearer(ann)).get_json()["verified"] is True
    assert c.post("/api/collections/posts", json={"title": "x"}, headers=bearer(ann)).status_code == 201
    assert_error(c.post("/api/auth/confirm-verification", json={"token": token}), 400, "invalid_token")
    assert_error(c.post("/api/auth/confirm-verification", json={"token": "made-up-token-of-some-length"}), 400,
                 "invalid_token")
    assert_error(c.post("/api/auth/confirm-verification", json={}), 422)


def test_answers_never_reveal_whether_an_address_exists(app, smtp) -> None:
    inbox, _ = smtp
    c = app.test_client()
    register(c)
    known = c.post("/api/auth/request-password-reset", json={"email": "ann@example.com"})
    unknown = c.post("/api/auth/request-password-reset", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 204 and known.data == unknown.data == b""
    unknown = c.post("/api/auth/request-verification", json={"email": "nobody@example.com"})
    assert unknown.status_code == 204
    assert inbox.next()["X-Envelope-To"] == "ann@example.com"
    assert inbox.none_within(1.0)  # nothing goes to an address that has no account
    assert_error(c.post("/api/auth/request-password-reset", json={"email": 3}), 422)


def test_a_password_reset_sets_the_password_and_revokes_every_session(app, smtp) -> None:
    inbox, _ = smtp
    c = app.test_client()
    ann = register(c)
    assert c.post("/api/auth/request-password-reset", json={"email": "ann@example.com"}).status_code == 204
    token = token_in(inbox.next())
    assert_error(c.post("/api/auth/confirm-password-reset", json={"token": token, "password": "short"}), 422)
    done = c.post("/api/auth/confirm-password-reset", json={"token": token, "password": "a new password 1"})
    assert done.status_code == 204
    assert_error(c.get("/api/auth/me", headers=bearer(ann)), 401, "session_revoked")
    assert_error(c.post("/api/auth/refresh", json={"refresh_token": ann["refresh_token"]}), 401)
    assert_error(c.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD}), 401)
    assert c.post("/api/auth/login", json={"email": "ann@example.com",
                                           "password": "a new password 1"}).status_code == 200
    assert_error(c.post("/api/auth/confirm-password-reset", json={"token": token, "password": "another one 22"}),
                 400, "invalid_token")


def test_a_newer_request_replaces_the_older_token_and_tokens_expire(make_app, smtp) -> None:
    inbox, port = smtp
    config = f"mail:\n  from: noreply@example.com\n  smtp:\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n"
    app = make_app(SCHEMA, config, env={"ALYX_AUTH_PASSWORD_RESET_TTL": "1", "ALYX_MAIL_COOLDOWN_SECONDS": "0"})
    c = app.test_client()
    register(c)
    c.post("/api/auth/request-password-reset", json={"email": "ann@example.com"})
    first = token_in(inbox.next())
    c.post("/api/auth/request-password-reset", json={"email": "ann@example.com"})
    second = token_in(inbox.next())
    assert_error(c.post("/api/auth/confirm-password-reset", json={"token": first, "password": "a new password 1"}),
                 400, "invalid_token")
    time.sleep(1.2)
    assert_error(c.post("/api/auth/confirm-password-reset", json={"token": second, "password": "a new password 1"}),
                 400, "invalid_token")


def test_email_change_is_confirmed_from_the_new_address(app, smtp) -> None:
    inbox, _ = smtp
    c = app.test_client()
    ann = register(c)
    register(c, "bob@example.com")
    assert_error(c.post("/api/auth/request-email-change", json={"new_email": "x@example.com"}), 401)
    taken = c.post("/api/auth/request-email-change", json={"new_email": "BOB@example.com"}, headers=bearer(ann))
    assert taken.status_code == 204  # the same answer: whether bob has an account is not revealed
    assert inbox.none_within(1.0)
    moved = c.post("/api/auth/request-email-change", json={"new_email": "Ann.New@Example.com"}, headers=bearer(ann))
    assert moved.status_code == 204
    message = inbox.next()
    assert message["X-Envelope-To"] == "ann.new@example.com"
    token = token_in(message)
    assert c.post("/api/auth/confirm-email-change", json={"token": token}).status_code == 204
    login = c.post("/api/auth/login", json={"email": "ann.new@example.com", "password": PASSWORD})
    assert login.status_code == 200 and login.get_json()["user"]["verified"] is True
    assert_error(c.get("/api/auth/me", headers=bearer(ann)), 401, "session_revoked")
    assert_error(c.post("/api/auth/confirm-email-change", json={"token": token}), 400, "invalid_token")


def test_project_templates_replace_the_defaults(make_app, smtp, tmp_path) -> None:
    inbox, port = smtp
    config = f"mail:\n  from: noreply@example.com\n  smtp:\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n"
    template = "Subject: Reset for $email\n\nHello! Open https://app.example/reset?token=$token within $minutes min.\n"
    folder = tmp_path / "project" / "templates" / "mail"
    folder.mkdir(parents=True)
    (folder / "password_reset.txt").write_text(template)
    app = make_app(SCHEMA, config)
    c = app.test_client()
    register(c)
    c.post("/api/auth/request-password-reset", json={"email": "ann@example.com"})
    message = inbox.next()
    assert message["Subject"] == "Reset for ann@example.com"
    body = message.get_payload(decode=True).decode()
    assert body.startswith("Hello! Open https://app.example/reset?token=") and "within 30 min" in body
