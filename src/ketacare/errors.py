"""Specific exception types; ``web.problems`` maps each to a page or an RFC 9457 problem."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session


@dataclass
class PendingAudit:
    """An audit entry to write even though the request's own transaction is rolled back."""

    action: str
    resource_type: str
    resource_id: str | None = None
    patient_id: int | None = None
    outcome: str = "denied"
    detail: str = ""


@dataclass
class KetaCareError(Exception):
    """``audit`` entries and ``after_rollback`` steps are written once the request's own
    transaction has rolled back, in a transaction of their own (a denied access is still
    recorded; an idle session is still closed)."""

    detail: str = ""
    audit: list[PendingAudit] = field(default_factory=list)
    after_rollback: list[Callable[[Session], None]] = field(default_factory=list)
    # Commit what the request wrote before the error instead of rolling it back: for refusals
    # that must be remembered (a witness's wrong password counts towards that person's limit).
    # Only for errors raised before any change the refusal must undo.
    keep_writes: bool = False

    status_code = 400
    title = "Bad request"
    slug = "bad-request"

    def __str__(self) -> str:
        return self.detail or self.title

    def extra(self) -> dict[str, Any]:
        return {}


class NotAuthenticated(KetaCareError):
    status_code = 401
    title = "Please log in"
    slug = "not-authenticated"


class SessionExpired(NotAuthenticated):
    title = "Your session has ended"
    slug = "session-expired"


class ReauthenticationRequired(KetaCareError):
    status_code = 401
    title = "Confirm your password to continue"
    slug = "reauthentication-required"


class Forbidden(KetaCareError):
    status_code = 403
    title = "Not allowed"
    slug = "forbidden"


class CsrfRejected(Forbidden):
    title = "The form had expired or did not come from KetaCare"
    slug = "csrf-rejected"


class NotFound(KetaCareError):
    status_code = 404
    title = "Not found"
    slug = "not-found"


class Conflict(KetaCareError):
    status_code = 409
    title = "Conflict"
    slug = "conflict"


@dataclass
class Throttled(KetaCareError):
    """429; ``retry_after_seconds`` becomes the Retry-After header when known."""

    retry_after_seconds: int | None = None

    status_code = 429
    title = "Too many attempts"
    slug = "throttled"


class DatabaseUnavailable(KetaCareError):
    status_code = 503
    title = "The database is unavailable"
    slug = "database-unavailable"


@dataclass
class InvalidInput(KetaCareError):
    """422: the input is wrong; ``errors`` maps a field name to a message shown next to it."""

    errors: dict[str, str] = field(default_factory=dict)

    status_code = 422
    title = "Some of what was entered needs correcting"
    slug = "invalid-input"

    def extra(self) -> dict[str, Any]:
        return {"errors": [{"field": k, "message": v} for k, v in self.errors.items()]}
