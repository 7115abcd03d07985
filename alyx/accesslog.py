"""Request logs without secrets: token query parameters redacted (werkzeug's dev-server log, and the
function gunicorn's access logger in gunicorn.conf.py applies to every line)."""
from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
# A query parameter whose name ends in "token" (token, access_token, refresh_token, any case), after
# ? or & (or at the start of a bare query string); its value runs to the next &, #, space or quote.
TOKEN_PARAMETER = re.compile(r"(?i)(^|[?&])([^&=#\s?]*token)=[^&#\s\"']*")


def redact_query(text: str) -> str:
    """``text`` (a URL, request line or query string) with the values of token parameters replaced."""
    if "token" not in text.lower():
        return text
    return TOKEN_PARAMETER.sub(lambda m: f"{m.group(1)}{m.group(2)}={REDACTED}", text)


class RedactTokens(logging.Filter):
    """A filter that rewrites each record's message with its token parameters redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_query(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_werkzeug_log() -> None:
    """Install the filter on werkzeug's request logger (the dev server; `alyx dev`, `flask run`), once."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())
