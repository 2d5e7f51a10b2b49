"""CSRF protection: a signed double-submit token.

A random value lives in an HttpOnly, SameSite=Lax cookie; forms carry HMAC(secret, value and the
login session's cookie) in a
hidden ``csrf_token`` field (htmx and scripts send it as the ``X-CSRF-Token`` header). A forged
request from another site can neither read the cookie nor compute the HMAC. Requests that
authenticate with a Bearer token carry no ambient credential and are exempt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request

from ketacare.errors import CsrfRejected

CSRF_COOKIE = "ketacare_csrf"
SESSION_COOKIE = "ketacare_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_cookie_value() -> str:
    return secrets.token_urlsafe(32)


def cookie_value(request: Request) -> str:
    """The cookie of this request, or the fresh one the middleware will set on the response."""
    value: str | None = getattr(request.state, "csrf_cookie", None)
    return value or request.cookies.get(CSRF_COOKIE, "")


def session_value(request: Request) -> str:
    """The login session's cookie of this request, or the one this response sets (log-in,
    two-factor completion); empty before log-in."""
    value: str | None = getattr(request.state, "session_token", None)
    return value if value is not None else request.cookies.get(SESSION_COOKIE, "")


def token_for(secret_key: str, value: str, session: str = "") -> str:
    """Bound to the login session too: a token seen in one session is useless in the next."""
    message = f"{value}\n{session}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def form_token(request: Request) -> str:
    return token_for(request.app.state.settings.secret_key, cookie_value(request), session_value(request))


async def check(request: Request) -> None:
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD, "")
            sent = value if isinstance(value, str) else ""
    session = request.cookies.get(SESSION_COOKIE, "")
    expected = token_for(request.app.state.settings.secret_key, cookie, session) if cookie else ""
    if not cookie or not sent or not hmac.compare_digest(sent, expected):
        raise CsrfRejected(
            "This form could not be accepted because its security token was missing or did "
            "not match, so nothing was changed. Go back, reload the page, and submit it again."
        )
