"""The one error type of Alyx: services raise it, one handler turns it into JSON."""
from __future__ import annotations

from typing import Any


class AlyxError(Exception):
    """An error a client (or an operator) can act on, with its HTTP status and details."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        """The DESIGN.md error body: {"error": {"code", "message", "details"}}."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def bad_request(message: str, details: dict[str, Any] | None = None) -> AlyxError:
    return AlyxError("bad_request", message, 400, details)


def not_found(message: str) -> AlyxError:
    return AlyxError("not_found", message, 404)


def validation_failed(details: dict[str, Any], message: str = "The record is not valid.") -> AlyxError:
    return AlyxError("validation_failed", message, 422, details)


class ConfigError(Exception):
    """A configuration or schema problem that stops start-up with one clear message."""
