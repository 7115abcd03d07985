"""Access checks for routes, written once as decorators: signed in, or an admin."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import g

from alyx.auth import unauthorized
from alyx.errors import AlyxError
from alyx.rules import Principal

View = TypeVar("View", bound=Callable[..., Any])

SIGN_IN_FIRST = "Sign in first: send Authorization: Bearer <access token>."


def signed_in_principal() -> Principal:
    """The caller of a ``@signed_in_required`` view (401 if there is none)."""
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise unauthorized(SIGN_IN_FIRST)
    return principal


def signed_in_required(view: View) -> View:
    """Only signed-in callers reach ``view``; others get 401."""

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        signed_in_principal()
        return view(*args, **kwargs)

    return cast(View, checked)


def admin_required(what: str, *, unless: Callable[[], bool] | None = None) -> Callable[[View], View]:
    """Only admins reach the view (401 when anonymous, 403 for other users); ``what`` names the
    resource in the error message. ``unless`` lets a request through without the check."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if unless is None or not unless():
                principal: Principal | None = g.get("principal")
                if principal is None:
                    raise AlyxError("unauthorized", f"{what} is for admins: sign in.", 401)
                if not principal.is_admin:
                    raise AlyxError("forbidden", f"{what} is for admins only.", 403)
            return view(*args, **kwargs)

        return cast(View, checked)

    return decorate
