"""Request-scoped dependencies: the unit of work, the acting principal, and permission checks.

Every route declares what it needs with ``require(Permission.X)``, ``public()`` or
``mfa_stage()``; the route-walking test reads the marker these attach.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.models import LoginSession, User
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.config import Settings
from ketacare.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    KetaCareError,
    NotAuthenticated,
    PendingAudit,
    ReauthenticationRequired,
)
from ketacare.web import csrf, forwarded

SESSION_COOKIE = csrf.SESSION_COOKIE
BACKGROUND_HEADER = "x-ketacare-background"
PERMISSION_MARKER = "__ketacare_permission__"


class MfaPending(NotAuthenticated):
    title = "Two-factor authentication needed"
    slug = "mfa-pending"


def client_addr(request: Request) -> str:
    """The client's address; ``X-Forwarded-For`` counts only from a trusted proxy."""
    settings: Settings = request.app.state.settings
    return forwarded.client_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        settings.trusted_proxy_networks,
    )


def is_background(request: Request) -> bool:
    """A request the page makes by itself (the live board's poll), not a person's action: it
    is answered but does not count as activity for the idle timeout."""
    return request.headers.get(BACKGROUND_HEADER) == "poll"


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent.

    On an error the transaction rolls back; audit entries the error carries (a denied
    access, a throttled login) are then written in a transaction of their own.
    """
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    db = factory()
    try:
        yield db
        db.commit()
    except KetaCareError as exc:
        if exc.keep_writes:
            db.commit()
        else:
            db.rollback()
        if exc.audit or exc.after_rollback:
            _write_pending(db, request, exc)
        raise
    except DataError as exc:
        # A value the database cannot hold (too long for its column, a NUL character): the
        # request's fault, so a 422 and nothing written, never a 500.
        db.rollback()
        raise InvalidInput(
            "A value was too long or held a character that cannot be stored; nothing was saved."
        ) from exc
    except IntegrityError as exc:
        # A unique, foreign-key or check constraint refused the change (two requests at once, a
        # row that went away, a value a rule of the table forbids): a 409 and nothing written.
        db.rollback()
        raise Conflict(
            "The change conflicts with what is already stored (or was changed at the same moment); "
            "nothing was saved. Reload and try again."
        ) from exc
    except (OperationalError, PoolTimeout) as exc:
        db.rollback()
        raise DatabaseUnavailable(
            "The database is busy or unavailable, so nothing was saved. Try again in a moment."
        ) from exc
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()


def _write_pending(db: Session, request: Request, exc: KetaCareError) -> None:
    actor: Principal | None = getattr(request.state, "principal", None)
    try:
        for step in exc.after_rollback:
            step(db)
        for item in exc.audit:
            audit.record(
                db,
                actor,
                item.action,
                item.resource_type,
                resource_id=item.resource_id,
                patient_id=item.patient_id,
                outcome=item.outcome,
                detail=item.detail,
                client_addr=client_addr(request),
            )
        db.commit()
    except SQLAlchemyError:
        db.rollback()


DbSession = Annotated[Session, Depends(get_db, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _mark(dependency: Callable[..., Any], marker: str) -> Callable[..., Any]:
    setattr(dependency, PERMISSION_MARKER, marker)
    return dependency


def _authenticate(request: Request, db: Session, settings: Settings) -> Principal:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        principal = auth.resolve_api_token(db, header[7:].strip(), client_addr(request))
        request.state.principal = principal
        return principal
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NotAuthenticated("Please log in.")
    active = auth.resolve_session(db, settings, token, touch=not is_background(request))
    principal = auth.principal_for(active.user, active.login_session, client_addr(request))
    request.state.principal = principal
    request.state.login_session = active.login_session
    request.state.user = active.user
    if active.login_session.mfa_pending:
        raise MfaPending("Finish two-factor authentication first.")
    return principal


def require(permission: Permission, *, sensitive: bool = False) -> Any:
    """Dependency: the principal, who must hold ``permission``.

    ``sensitive`` actions also need a password confirmed in the last few minutes (sudo mode);
    they are never open to API tokens.
    """

    def dependency(
        request: Request,
        db: DbSession,
        settings: SettingsDep,
        _csrf: Annotated[None, Depends(csrf.check)],
    ) -> Principal:
        principal = _authenticate(request, db, settings)
        if permission not in auth.permissions_of(principal):
            raise Forbidden(
                "Your role does not allow this.",
                audit=[
                    PendingAudit(
                        "access.denied", "route", request.url.path, detail=f"needs {permission.value}"
                    )
                ],
            )
        if sensitive:
            login_session: LoginSession | None = getattr(request.state, "login_session", None)
            if login_session is None:
                raise Forbidden("This action needs a person, not an API token.")
            if not auth.recently_authenticated(settings, login_session):
                raise ReauthenticationRequired("Confirm your password to continue.")
        return principal

    return Depends(_mark(dependency, permission.value + (" (sensitive)" if sensitive else "")))


def public() -> Any:
    """Dependency for routes anyone may call (forms among them still need the CSRF token)."""

    async def dependency(request: Request) -> None:
        await csrf.check(request)

    return Depends(_mark(dependency, "public"))


def mfa_stage() -> Any:
    """Dependency for the two-factor pages: a password-checked session whose MFA is pending."""

    def dependency(
        request: Request,
        db: DbSession,
        settings: SettingsDep,
        _csrf: Annotated[None, Depends(csrf.check)],
    ) -> tuple[LoginSession, User]:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise NotAuthenticated("Please log in.")
        active = auth.resolve_session(db, settings, token)
        return active.login_session, active.user

    return Depends(_mark(dependency, "mfa-stage"))


def optional_principal(request: Request) -> Principal | None:
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


# Database ids are 32-bit integers on PostgreSQL; anything else is refused as input (422)
# before it reaches a query.
RowId = Annotated[int, Path(ge=1, le=2_147_483_647)]
