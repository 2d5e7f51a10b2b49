"""Authentication and account use-cases. Each runs inside the caller's transaction and audits itself."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pyotp
from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ketacare.audit import service as audit
from ketacare.auth import throttle
from ketacare.auth.models import ApiToken, Clinic, LoginAttempt, LoginSession, User
from ketacare.auth.passwords import hash_password, needs_rehash, password_problem, verify_password
from ketacare.auth.permissions import (
    FHIR_RESOURCE_TYPES,
    MFA_REQUIRED_ROLES,
    ROLE_PERMISSIONS,
    TOKEN_SCOPES,
    Permission,
    fhir_type_scope,
    token_scope_names,
)
from ketacare.auth.principal import Principal
from ketacare.auth.roles import PrescriberKind, Role
from ketacare.config import Settings
from ketacare.db import lock_keys, utcnow
from ketacare.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PendingAudit,
    SessionExpired,
    Throttled,
)

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,79}$")
TOTP_ISSUER = "KetaCare"
_DUMMY_HASH = hash_password("a password nobody has, to keep timing even")


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- login -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    user: User
    session_token: str
    mfa_pending: bool


def attempt_limits(settings: Settings | None = None) -> throttle.Limits:
    """The password-attempt limits of ``settings`` (their defaults when None)."""

    def value(name: str) -> int:
        found = getattr(settings, name) if settings is not None else Settings.model_fields[name].default
        return int(found)

    return throttle.Limits(
        free_failures=value("login_max_failures_per_user"),
        first_delay_seconds=value("login_first_delay_seconds"),
        max_delay_seconds=value("login_max_delay_seconds"),
        max_consecutive_failures=value("login_max_consecutive_failures"),
        address_failures=value("login_max_failures_per_address"),
        window=dt.timedelta(minutes=value("login_throttle_window_minutes")),
        known_address_days=value("login_known_address_days"),
    )


def _attempt_keys(username: str, client_addr: str) -> tuple[str, str]:
    return f"password-attempts:user:{username}", f"password-attempts:addr:{client_addr}"


def _history(
    db: Session, limits: throttle.Limits, username: str, client_addr: str, now: dt.datetime
) -> throttle.History:
    last_success = db.execute(
        select(func.max(LoginAttempt.attempted_at)).where(
            LoginAttempt.username == username, LoginAttempt.succeeded.is_(True)
        )
    ).scalar_one()
    known = limits.known_address_days > 0 and (
        db.execute(
            select(LoginAttempt.id)
            .where(
                LoginAttempt.username == username,
                LoginAttempt.client_addr == client_addr,
                LoginAttempt.succeeded.is_(True),
                LoginAttempt.attempted_at >= now - dt.timedelta(days=limits.known_address_days),
            )
            .limit(1)
        ).first()
        is not None
    )
    failures = select(func.count(), func.max(LoginAttempt.attempted_at)).where(
        LoginAttempt.username == username, LoginAttempt.succeeded.is_(False)
    )
    if last_success is not None:
        failures = failures.where(LoginAttempt.attempted_at > last_success)
    if known:
        failures = failures.where(LoginAttempt.client_addr == client_addr)
    consecutive, last_failure = db.execute(failures).one()
    by_address = db.execute(
        select(func.count())
        .select_from(LoginAttempt)
        .where(
            LoginAttempt.client_addr == client_addr,
            LoginAttempt.succeeded.is_(False),
            LoginAttempt.attempted_at >= now - limits.window,
        )
    ).scalar_one()
    return throttle.History(int(consecutive), last_failure, known, int(by_address))


def _refusal(
    db: Session, limits: throttle.Limits, username: str, client_addr: str
) -> throttle.Refusal | None:
    now = utcnow()
    return throttle.refusal(_history(db, limits, username, client_addr, now), limits, now)


def _throttled(found: throttle.Refusal, username: str) -> Throttled:
    return Throttled(
        throttle.message(found),
        audit=[PendingAudit("auth.login", "user", outcome="throttled", detail=username)],
        retry_after_seconds=found.retry_after_seconds,
    )


def check_throttle(db: Session, settings: Settings, username: str, client_addr: str) -> None:
    """Lock the account's and the address's attempt counters until the transaction ends (so
    parallel attempts are counted one after the other), then refuse when a limit is reached.
    The caller records the attempt in the same transaction."""
    lock_keys(db, *_attempt_keys(username, client_addr))
    if found := _refusal(db, attempt_limits(settings), username, client_addr):
        raise _throttled(found, username)


PASSWORD_SET_MARK = "(password set)"  # noqa: S105 (not a password) the client_addr of the success a new password records


def record_attempt(db: Session, username: str, client_addr: str, succeeded: bool) -> None:
    db.add(
        LoginAttempt(username=username, client_addr=client_addr, succeeded=succeeded, attempted_at=utcnow())
    )
    db.flush()


@dataclass(frozen=True)
class PasswordCheck:
    ok: bool
    refused: str | None = None  # why the password was not checked at all (a limit)


def check_passwords(
    db: Session, limits: throttle.Limits, people: list[tuple[User, str]], client_addr: str
) -> list[PasswordCheck]:
    """Passwords typed on someone else's session (a witness confirming a waste): each counts
    towards its owner's limits exactly like a log-in. All the counters are locked at once,
    so two such checks never wait on each other in opposite orders."""
    keys = [key for user, _ in people for key in _attempt_keys(user.username, client_addr)]
    lock_keys(db, *keys)
    results: list[PasswordCheck] = []
    for user, password in people:
        if found := _refusal(db, limits, user.username, client_addr):
            results.append(PasswordCheck(False, throttle.message(found)))
            continue
        ok = verify_password(user.password_hash, password)
        record_attempt(db, user.username, client_addr, ok)
        results.append(PasswordCheck(ok))
    return results


def login(
    db: Session, settings: Settings, username: str, password: str, client_addr: str
) -> LoginResult | None:
    """Check the password; on success open a login session (pending MFA where the role needs it).

    A failure returns None rather than raising, so that the failed attempt and its audit entry
    commit with the request (they feed the throttle).
    """
    username = username.strip().lower()
    check_throttle(db, settings, username, client_addr)
    user = db.execute(select(User).where(User.username == username)).scalar_one_or_none()
    valid = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not valid or not user.is_active:
        record_attempt(db, username, client_addr, False)
        audit.record(
            db,
            None,
            "auth.login",
            "user",
            resource_id=user.id if user else None,
            outcome="failure",
            detail="inactive account" if user and valid else "wrong username or password",
            client_addr=client_addr,
            username=username,
            clinic_id=user.clinic_id if user else None,
        )
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    record_attempt(db, username, client_addr, True)
    mfa_pending = user.role_enum in MFA_REQUIRED_ROLES or user.totp_enrolled
    token = secrets.token_urlsafe(32)
    login_session = LoginSession(
        token_sha256=sha256_hex(token),
        user_id=user.id,
        mfa_pending=mfa_pending,
        client_addr=client_addr,
    )
    db.add(login_session)
    if not mfa_pending:
        user.last_login_at = utcnow()
    db.flush()
    audit.record(
        db,
        None,
        "auth.login",
        "user",
        resource_id=user.id,
        outcome="mfa_pending" if mfa_pending else "success",
        client_addr=client_addr,
        username=user.username,
        clinic_id=user.clinic_id,
    )
    return LoginResult(user, token, mfa_pending)


@dataclass(frozen=True)
class ActiveSession:
    login_session: LoginSession
    user: User


def resolve_session(db: Session, settings: Settings, token: str, *, touch: bool = True) -> ActiveSession:
    """The live session behind a cookie token; ends it if idle too long. Touches last_seen_at
    unless ``touch`` is False (a page's own background poll is not a person's activity)."""
    login_session = db.execute(
        select(LoginSession).where(LoginSession.token_sha256 == sha256_hex(token))
    ).scalar_one_or_none()
    if login_session is None:
        raise NotAuthenticated("Please log in.")
    if login_session.ended_at is not None:
        if login_session.end_reason == "idle":
            raise SessionExpired(
                f"You were logged out after {settings.idle_timeout_minutes} minutes without activity."
            )
        raise NotAuthenticated("Please log in.")
    user = db.get(User, login_session.user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated("This account is not active.")
    now = utcnow()
    if now - login_session.last_seen_at > dt.timedelta(minutes=settings.idle_timeout_minutes):
        session_id = login_session.id

        def close(db: Session) -> None:
            expired = db.get(LoginSession, session_id)
            if expired is not None and expired.ended_at is None:
                end_session(db, expired, "idle")

        raise SessionExpired(
            f"You were logged out after {settings.idle_timeout_minutes} minutes without activity.",
            audit=[
                PendingAudit(
                    "auth.idle_logout",
                    "login_session",
                    str(login_session.id),
                    outcome="success",
                    detail=user.username,
                )
            ],
            after_rollback=[close],
        )
    # Touching the row at most every 30 seconds is enough to track idleness and keeps reads cheap.
    if touch and now - login_session.last_seen_at > dt.timedelta(seconds=30):
        login_session.last_seen_at = now
    return ActiveSession(login_session, user)


def rotate_session_token(login_session: LoginSession) -> str:
    """A new cookie token for the session (when two-factor completes): a token observed before
    the account was fully authenticated is worthless after."""
    token = secrets.token_urlsafe(32)
    login_session.token_sha256 = sha256_hex(token)
    return token


def principal_for(user: User, active: LoginSession | None, client_addr: str | None) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.username,
        role=user.role_enum,
        clinic_id=user.clinic_id,
        client_addr=client_addr,
        patient_id=user.patient_id,
        login_session_id=active.id if active else None,
    )


def logout(db: Session, token: str, client_addr: str) -> None:
    login_session = db.execute(
        select(LoginSession).where(LoginSession.token_sha256 == sha256_hex(token))
    ).scalar_one_or_none()
    if login_session is None or login_session.ended_at is not None:
        return
    login_session.ended_at = utcnow()
    login_session.end_reason = "logout"
    user = db.get(User, login_session.user_id)
    audit.record(
        db,
        None,
        "auth.logout",
        "login_session",
        resource_id=login_session.id,
        client_addr=client_addr,
        username=user.username if user else None,
        clinic_id=user.clinic_id if user else None,
    )


def end_session(db: Session, login_session: LoginSession, reason: str) -> None:
    login_session.ended_at = utcnow()
    login_session.end_reason = reason


def reauthenticate(
    db: Session,
    settings: Settings,
    actor: Principal,
    login_session: LoginSession,
    password: str,
    totp_code: str | None,
) -> bool:
    """True when the password (and code) match; a failure is recorded and committed, not raised."""
    user = db.get(User, actor.user_id)
    if user is None:
        raise NotAuthenticated("Please log in.")
    check_throttle(db, settings, user.username, actor.client_addr or "")
    ok = verify_password(user.password_hash, password)
    if ok and user.totp_enrolled:
        ok = use_totp_code(db, user, totp_code or "")
    if not ok:
        record_attempt(db, user.username, actor.client_addr or "", False)
        audit.record(db, actor, "auth.reauthenticate", "user", resource_id=user.id, outcome="failure")
        return False
    login_session.reauthenticated_at = utcnow()
    audit.record(db, actor, "auth.reauthenticate", "user", resource_id=user.id)
    return True


def recently_authenticated(settings: Settings, login_session: LoginSession) -> bool:
    window = dt.timedelta(minutes=settings.reauth_window_minutes)
    return utcnow() - login_session.reauthenticated_at <= window


# --- two-factor (TOTP) -------------------------------------------------------------------


def use_totp_code(db: Session, user: User, code: str) -> bool:
    """A code from the current step or one either side (clock drift), each step usable once
    (RFC 6238 section 5.2): the step is claimed with a conditional UPDATE, so of two requests
    sending the same code at the same moment exactly one succeeds."""
    if not user.totp_secret:
        return False
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return False
    totp = pyotp.TOTP(user.totp_secret)
    now_step = int(time.time()) // totp.interval
    for step in (now_step - 1, now_step, now_step + 1):
        if hmac.compare_digest(totp.at(step * totp.interval), code):
            claimed: CursorResult[Any] = db.execute(  # type: ignore[assignment]
                update(User)
                .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
                .values(totp_last_step=step)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:
                return False
            set_committed_value(user, "totp_last_step", step)
            return True
    return False


def start_enrolment(user: User) -> str:
    """A fresh secret for a user who has not finished enrolment; returns the otpauth URI."""
    if user.totp_enrolled:
        raise Conflict("Two-factor authentication is already set up for this account.")
    if not user.totp_secret:
        user.totp_secret = pyotp.random_base32()
    return pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.username, issuer_name=TOTP_ISSUER)


def complete_mfa(
    db: Session,
    settings: Settings,
    login_session: LoginSession,
    user: User,
    code: str,
    *,
    enrolling: bool,
) -> bool:
    """True when the code matches; failures count towards the log-in throttle."""
    check_throttle(db, settings, user.username, login_session.client_addr or "")
    if not use_totp_code(db, user, code):
        audit.record(
            db,
            None,
            "auth.mfa",
            "user",
            resource_id=user.id,
            outcome="failure",
            client_addr=login_session.client_addr,
            username=user.username,
            clinic_id=user.clinic_id,
        )
        record_attempt(db, user.username, login_session.client_addr or "", False)
        return False
    if enrolling:
        user.totp_enrolled = True
    login_session.mfa_pending = False
    login_session.reauthenticated_at = utcnow()
    user.last_login_at = utcnow()
    audit.record(
        db,
        None,
        "auth.mfa_enrolled" if enrolling else "auth.mfa",
        "user",
        resource_id=user.id,
        client_addr=login_session.client_addr,
        username=user.username,
        clinic_id=user.clinic_id,
    )
    return True


# --- users -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewUser:
    username: str
    full_name: str
    role: Role
    password: str
    email: str | None = None
    prescriber_kind: PrescriberKind | None = None
    patient_id: int | None = None


def validate_new_user(data: NewUser) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not USERNAME_PATTERN.match(data.username):
        errors["username"] = "3 to 80 characters: lower-case letters, digits, dot, dash or underscore."
    if not data.full_name.strip():
        errors["full_name"] = "Enter the person's full name."
    if problem := password_problem(data.password, [data.username, data.full_name, data.email]):
        errors["password"] = problem
    if data.role == Role.prescriber and data.prescriber_kind is None:
        errors["prescriber_kind"] = "Say whether the prescriber is a physician or a nurse practitioner."
    if data.role != Role.prescriber and data.prescriber_kind is not None:
        errors["prescriber_kind"] = "Only prescribers have a prescriber kind."
    if data.role == Role.patient and data.patient_id is None:
        errors["patient_id"] = "A patient account must be linked to a patient record."
    return errors


def create_user(db: Session, actor: Principal | None, clinic_id: int, data: NewUser) -> User:
    if errors := validate_new_user(data):
        raise InvalidInput(errors=errors)
    if db.execute(select(User.id).where(User.username == data.username)).first():
        raise InvalidInput(errors={"username": "That username is taken."})
    if (
        data.patient_id is not None
        and db.execute(select(User.id).where(User.patient_id == data.patient_id)).first()
    ):
        raise InvalidInput(errors={"patient_id": "This patient already has an account."})
    user = User(
        clinic_id=clinic_id,
        username=data.username,
        full_name=data.full_name.strip(),
        email=data.email or None,
        role=data.role.value,
        prescriber_kind=data.prescriber_kind.value if data.prescriber_kind else None,
        patient_id=data.patient_id,
        password_hash=hash_password(data.password),
    )
    db.add(user)
    try:
        db.flush()
    except IntegrityError as exc:
        raise Conflict("That username or patient link is already in use.") from exc
    audit.record(
        db,
        actor,
        "user.create",
        "user",
        resource_id=user.id,
        patient_id=data.patient_id,
        detail=f"{user.username} as {data.role.value}",
        clinic_id=clinic_id,
    )
    return user


def staff_user(db: Session, actor: Principal, user_id: int) -> User:
    user = db.get(User, user_id)
    if user is None or user.clinic_id != actor.clinic_id:
        raise NotFound("No such user in your clinic.")
    return user


def set_role(
    db: Session,
    actor: Principal | None,
    user: User,
    role: Role,
    prescriber_kind: PrescriberKind | None = None,
) -> None:
    if actor is not None and actor.user_id == user.id:
        raise Forbidden("You cannot change your own role; ask another clinic admin.")
    if role == Role.prescriber and prescriber_kind is None:
        raise InvalidInput(errors={"prescriber_kind": "Say whether physician or nurse practitioner."})
    if role == Role.patient and user.patient_id is None:
        raise InvalidInput(errors={"role": "Only accounts linked to a patient record can be patients."})
    old = user.role
    user.role = role.value
    user.prescriber_kind = prescriber_kind.value if role == Role.prescriber and prescriber_kind else None
    if role in MFA_REQUIRED_ROLES and not user.totp_enrolled:
        # The next request of any open session must pass enrolment first.
        for login_session in _open_sessions(db, user.id):
            login_session.mfa_pending = True
    audit.record(
        db,
        actor,
        "user.set_role",
        "user",
        resource_id=user.id,
        detail=f"{user.username}: {old} -> {role.value}",
        clinic_id=user.clinic_id,
    )


def set_active(db: Session, actor: Principal, user: User, active: bool) -> None:
    if actor.user_id == user.id:
        raise Forbidden("You cannot deactivate your own account.")
    user.is_active = active
    if not active:
        for login_session in _open_sessions(db, user.id):
            end_session(db, login_session, "deactivated")
    audit.record(
        db,
        actor,
        "user.activate" if active else "user.deactivate",
        "user",
        resource_id=user.id,
        detail=user.username,
    )


def set_password(db: Session, actor: Principal | None, user: User, password: str) -> None:
    if problem := password_problem(password, [user.username, user.full_name, user.email]):
        raise InvalidInput(errors={"password": problem})
    user.password_hash = hash_password(password)
    # A new password ends the run of failures of the old one (the attempt limits restart).
    record_attempt(db, user.username, PASSWORD_SET_MARK, True)
    for login_session in _open_sessions(db, user.id):
        if actor is None or login_session.id != actor.login_session_id:
            end_session(db, login_session, "password_changed")
    audit.record(
        db,
        actor,
        "user.set_password",
        "user",
        resource_id=user.id,
        detail=user.username,
        clinic_id=user.clinic_id,
    )


def change_own_password(db: Session, actor: Principal, current_password: str, new_password: str) -> None:
    user = db.get(User, actor.user_id)
    if user is None or not verify_password(user.password_hash, current_password):
        raise InvalidInput(errors={"current_password": "That is not your current password."})
    set_password(db, actor, user, new_password)


def reset_mfa(db: Session, actor: Principal | None, user: User) -> None:
    user.totp_secret = None
    user.totp_enrolled = False
    for login_session in _open_sessions(db, user.id):
        end_session(db, login_session, "mfa_reset")
    audit.record(
        db,
        actor,
        "user.reset_mfa",
        "user",
        resource_id=user.id,
        detail=user.username,
        clinic_id=user.clinic_id,
    )


def _open_sessions(db: Session, user_id: int) -> list[LoginSession]:
    query = select(LoginSession).where(LoginSession.user_id == user_id, LoginSession.ended_at.is_(None))
    return list(db.execute(query).scalars())


def list_staff(db: Session, actor: Principal) -> list[User]:
    query = select(User).where(User.clinic_id == actor.clinic_id).order_by(User.role, User.username)
    users = list(db.execute(query).scalars())
    audit.record(db, actor, "user.list", "user", detail=f"{len(users)} accounts")
    return users


def user_by_username(db: Session, username: str) -> User:
    user = db.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    return user


def create_clinic(
    db: Session, actor: Principal | None, name: str, slug: str, record_prefix: str, time_zone: str
) -> Clinic:
    if db.execute(select(Clinic.id).where(Clinic.slug == slug)).first():
        raise InvalidInput(errors={"slug": f"A clinic with slug {slug!r} exists."})
    found = Clinic(
        name=name, slug=slug, record_prefix=record_prefix.upper(), time_zone=time_zone, next_record_number=1
    )
    db.add(found)
    db.flush()
    audit.record(
        db,
        actor,
        "clinic.create",
        "clinic",
        resource_id=found.id,
        clinic_id=found.id,
        username=None if actor else "cli",
        detail=name,
    )
    return found


def allocate_record_number(db: Session, clinic_id: int) -> str:
    """The clinic's next record number; the UPDATE locks the clinic row, so two never collide."""
    db.execute(
        update(Clinic).where(Clinic.id == clinic_id).values(next_record_number=Clinic.next_record_number + 1)
    )
    found = db.execute(
        select(Clinic).where(Clinic.id == clinic_id).execution_options(populate_existing=True)
    ).scalar_one()
    return f"{found.record_prefix}-{found.next_record_number - 1:06d}"


def clinic_by_slug(db: Session, slug: str) -> Clinic:
    found = db.execute(select(Clinic).where(Clinic.slug == slug)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No clinic with slug {slug!r} (see `ketacare clinic create`).")
    return found


def clinic_count(db: Session) -> int:
    return int(db.execute(select(func.count()).select_from(Clinic)).scalar_one())


def clinic(db: Session, clinic_id: int) -> Clinic:
    found = db.get(Clinic, clinic_id)
    if found is None:
        raise NotFound("No such clinic.")
    return found


def clinic_ids(db: Session) -> list[int]:
    return list(db.execute(select(Clinic.id).order_by(Clinic.id)).scalars())


def permissions_of(principal: Principal) -> frozenset[Permission]:
    if principal.role is None:
        held = {Permission(s) for s in principal.scopes if s in TOKEN_SCOPES}
        if any(s.startswith("system/") and s.endswith(".read") for s in principal.scopes):
            held.add(Permission.fhir_read)  # narrowed to its types by fhir_types_readable
        return frozenset(held)
    return ROLE_PERMISSIONS[principal.role]


def fhir_types_readable(principal: Principal) -> frozenset[str] | None:
    """The FHIR resource types this principal may read; ``None``: every type.

    People read every type their role reaches; a token with ``system/*.read`` reads every
    type, one with only ``system/Observation.read`` (say) reads Observations alone.
    """
    if principal.role is not None or Permission.fhir_read.value in principal.scopes:
        return None
    return frozenset(t for t in FHIR_RESOURCE_TYPES if fhir_type_scope(t) in principal.scopes)


# --- API tokens --------------------------------------------------------------------------


def create_api_token(db: Session, actor: Principal, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
    """Returns the token row and the secret, which is shown once and never stored."""
    errors: dict[str, str] = {}
    if not name.strip() or len(name) > 100:
        errors["name"] = "Give the token a name of 1 to 100 characters (say which device)."
    allowed = set(token_scope_names())
    unknown = [s for s in scopes if s not in allowed]
    if not scopes or unknown:
        errors["scopes"] = f"Choose scopes from: {', '.join(sorted(allowed))}."
    if errors:
        raise InvalidInput(errors=errors)
    secret = "kc_" + secrets.token_urlsafe(32)
    token = ApiToken(
        clinic_id=actor.clinic_id,
        name=name.strip(),
        token_sha256=sha256_hex(secret),
        scopes=" ".join(sorted(set(scopes))),
        created_by_id=actor.user_id,
    )
    db.add(token)
    try:
        db.flush()
    except IntegrityError as exc:
        raise InvalidInput(errors={"name": "A token with that name exists in your clinic."}) from exc
    audit.record(
        db, actor, "token.create", "api_token", resource_id=token.id, detail=f"{token.name}: {token.scopes}"
    )
    return token, secret


def list_api_tokens(db: Session, actor: Principal) -> list[ApiToken]:
    query = select(ApiToken).where(ApiToken.clinic_id == actor.clinic_id).order_by(ApiToken.name)
    return list(db.execute(query).scalars())


def revoke_api_token(db: Session, actor: Principal, token_id: int) -> None:
    token = db.get(ApiToken, token_id)
    if token is None or token.clinic_id != actor.clinic_id:
        raise NotFound("No such token in your clinic.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(db, actor, "token.revoke", "api_token", resource_id=token.id, detail=token.name)


def resolve_api_token(db: Session, secret: str, client_addr: str | None) -> Principal:
    token = db.execute(
        select(ApiToken).where(ApiToken.token_sha256 == sha256_hex(secret))
    ).scalar_one_or_none()
    if token is None or token.revoked_at is not None:
        raise NotAuthenticated("The API token is unknown or revoked.")
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > dt.timedelta(minutes=1):
        token.last_used_at = now
    return Principal(
        user_id=None,
        username=f"token:{token.name}",
        role=None,
        clinic_id=token.clinic_id,
        client_addr=client_addr,
        api_token_id=token.id,
        scopes=frozenset(token.scope_list),
    )


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def staff_counts(db: Session, clinic_id: int) -> dict[str, int]:
    query = (
        select(User.role, func.count())
        .where(User.clinic_id == clinic_id, User.is_active.is_(True))
        .group_by(User.role)
    )
    return {role: n for role, n in db.execute(query).all()}


def recent_failed_logins(db: Session, clinic_id: int, hours: int = 24) -> int:
    since = utcnow() - dt.timedelta(hours=hours)
    usernames = select(User.username).where(User.clinic_id == clinic_id)
    query = (
        select(func.count())
        .select_from(LoginAttempt)
        .where(
            LoginAttempt.succeeded.is_(False),
            LoginAttempt.attempted_at >= since,
            LoginAttempt.username.in_(usernames),
        )
    )
    return int(db.execute(query).scalar_one())


@dataclass(frozen=True)
class StaffEntry:
    id: int
    full_name: str
    role: str
    is_active: bool


def staff_directory(db: Session, clinic_id: int) -> list[StaffEntry]:
    """Names and roles of a clinic's staff for display (no audit entry: not patient data)."""
    rows = db.execute(
        select(User.id, User.full_name, User.role, User.is_active)
        .where(User.clinic_id == clinic_id, User.role != Role.patient.value)
        .order_by(User.full_name)
    ).all()
    return [StaffEntry(*r) for r in rows]


def active_user_ids(db: Session, clinic_id: int, role: str) -> list[int]:
    return list(
        db.execute(
            select(User.id).where(User.clinic_id == clinic_id, User.role == role, User.is_active.is_(True))
        ).scalars()
    )
