"""Outgoing mail: the project's templates (or the defaults) rendered and sent through SMTP.

Settings are `mail.from` and `mail.smtp.*` (alyx/config.py). Templates are plain text files in
`<project>/templates/mail/<name>.txt`: a first line `Subject: ...`, a blank line, then the body,
with `$name` placeholders (string.Template: nothing but the given values can be reached).
Without `mail.smtp.host` nothing is sent: development logs the message (links included, so a
developer can click them), production logs that a message was dropped.
"""
from __future__ import annotations

import logging
import smtplib
import ssl
import string
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from alyx.background import spawn
from alyx.config import Config

log = logging.getLogger("alyx.mail")

TEMPLATE_DIR = Path("templates") / "mail"
DEFAULT_TEMPLATES = {
    "verification": "Subject: Confirm your email address\n\n"
                    "Hello,\n\nconfirm that $email is your address by opening this link within $minutes "
                    "minutes:\n\n    $link\n\nIf you did not sign up, ignore this message.\n",
    "password_reset": "Subject: Reset your password\n\n"
                      "Hello,\n\nsomeone asked to reset the password of $email. To choose a new one, open this "
                      "link within $minutes minutes:\n\n    $link\n\nIf it was not you, ignore this message: "
                      "your password stays as it is.\n",
    "email_change": "Subject: Confirm your new email address\n\n"
                    "Hello,\n\nconfirm that your account's address should become $email by opening this link "
                    "within $minutes minutes:\n\n    $link\n\nIf you did not ask for this, ignore this "
                    "message.\n",
}


@dataclass(frozen=True)
class Mail:
    """One rendered message."""

    to: str
    subject: str
    body: str


class Mailer:
    """Renders templates and sends them in the background (a slow server never delays an answer,
    and answers take the same time whether a message was sent or not)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def render(self, template: str, to: str, values: dict[str, str]) -> Mail:
        """The project's `templates/mail/<template>.txt`, or the default, with ``values`` filled in."""
        path = self.config.project_dir / TEMPLATE_DIR / f"{template}.txt"
        text = path.read_text(encoding="utf-8") if path.is_file() else DEFAULT_TEMPLATES[template]
        filled = string.Template(text).safe_substitute(values)
        head, _, body = filled.partition("\n\n")
        subject = head[len("Subject:"):].strip() if head.lower().startswith("subject:") else template
        return Mail(to, subject.replace("\r", " ").replace("\n", " "), body)

    def send_later(self, mail: Mail) -> None:
        spawn(self.send, mail, name="mail")

    def send(self, mail: Mail) -> None:
        """Deliver one message now (SMTP with STARTTLS, implicit TLS or none, per mail.smtp.tls)."""
        config = self.config
        if not config.mail_smtp_host:
            if config.server_environment == "development":
                log.warning("mail: no mail.smtp.host; not sent to %s: %s\n%s", mail.to, mail.subject, mail.body)
            else:
                log.warning("mail: no mail.smtp.host is configured; a message to %s was not sent", mail.to)
            return
        message = EmailMessage()
        message["From"] = config.mail_from or f"alyx@{config.mail_smtp_host}"
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Message-ID"] = make_msgid()
        message.set_content(mail.body)
        timeout = max(1, config.mail_smtp_timeout_seconds)
        smtp_class = smtplib.SMTP_SSL if config.mail_smtp_tls == "ssl" else smtplib.SMTP
        with smtp_class(config.mail_smtp_host, config.mail_smtp_port, timeout=timeout) as smtp:
            smtp.ehlo_or_helo_if_needed()
            if config.mail_smtp_tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError(
                        f"{config.mail_smtp_host} offers no STARTTLS; set mail.smtp.tls: none to send in clear text")
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if config.mail_smtp_username:
                smtp.login(config.mail_smtp_username, config.mail_smtp_password or "")
            smtp.send_message(message)
