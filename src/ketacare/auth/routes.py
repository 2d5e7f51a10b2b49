"""Log in and out, two-factor authentication, re-authentication, own account, staff and tokens."""

from __future__ import annotations

import io
from typing import Annotated
from urllib.parse import quote

import segno
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import RedirectResponse, Response

from ketacare.auth import service
from ketacare.auth.models import LoginSession, PrescriberKind, Role, User
from ketacare.auth.permissions import Permission, token_scope_names
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.patients import service as patients
from ketacare.web import csrf
from ketacare.web.deps import (
    SESSION_COOKIE,
    DbSession,
    RowId,
    SettingsDep,
    client_addr,
    mfa_stage,
    public,
    require,
)
from ketacare.web.forms import FormData, FormLists, form_action, safe_next
from ketacare.web.templating import render

router = APIRouter()
MfaStage = Annotated[tuple[LoginSession, User], mfa_stage()]


def _set_session_cookie(response: Response, request: Request, token: str) -> None:
    settings = request.app.state.settings
    request.state.session_token = token  # pages rendered in this response bind their CSRF to it
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    # A fresh CSRF secret at every log-in, so a token seen before log-in is useless after it.
    response.set_cookie(
        csrf.CSRF_COOKIE,
        csrf.new_cookie_value(),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )


# --- log in / out ------------------------------------------------------------------------


@router.get("/login", include_in_schema=False, dependencies=[public()])
def login_page(request: Request, next: str = "/", reason: str = "") -> Response:
    message = "You were logged out after a period without activity." if reason == "idle" else ""
    return render(request, "login.html", {"next": safe_next(next), "message": message})


@router.post("/login", include_in_schema=False, dependencies=[public()])
def login_submit(request: Request, db: DbSession, settings: SettingsDep, form: FormData) -> Response:
    next_url = safe_next(form.get("next"))
    result = service.login(
        db, settings, form.get("username", ""), form.get("password", ""), client_addr(request)
    )
    if result is not None and (previous := request.cookies.get(SESSION_COOKIE)):
        # A new log-in ends the session the browser held (after the attempt's locks: see lock_keys).
        service.logout(db, previous, client_addr(request))
    if result is None:
        return render(
            request,
            "login.html",
            {
                "next": next_url,
                "values": {"username": form.get("username", "")},
                "errors": {"form": "The username or password is not right."},
            },
            status_code=401,
        )
    target = f"/login/mfa?next={quote(next_url)}" if result.mfa_pending else next_url
    response = RedirectResponse(target, status_code=303)
    _set_session_cookie(response, request, result.session_token)
    return response


@router.post("/logout", include_in_schema=False, dependencies=[public()])
def logout(request: Request, db: DbSession) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        service.logout(db, token, client_addr(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- two-factor --------------------------------------------------------------------------


@router.get("/login/mfa", include_in_schema=False)
def mfa_page(request: Request, stage: MfaStage, next: str = "/") -> Response:
    _, user = stage
    if not user.totp_enrolled:
        return RedirectResponse(f"/account/mfa/enroll?next={safe_next(next)}", status_code=303)
    return render(request, "mfa.html", {"next": safe_next(next)})


@router.post("/login/mfa", include_in_schema=False)
def mfa_submit(
    request: Request, db: DbSession, settings: SettingsDep, stage: MfaStage, form: FormData
) -> Response:
    login_session, user = stage
    next_url = safe_next(form.get("next"))
    if not service.complete_mfa(db, settings, login_session, user, form.get("code", ""), enrolling=False):
        errors = {"code": "That code is not right. Codes change every 30 seconds."}
        return render(request, "mfa.html", {"next": next_url, "errors": errors}, status_code=422)
    response = RedirectResponse(next_url, status_code=303)
    _set_session_cookie(response, request, service.rotate_session_token(login_session))
    return response


def _qr_svg(uri: str) -> str:
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=5, xmldecl=False, svgns=True)
    return buffer.getvalue().decode()


@router.get("/account/mfa/enroll", include_in_schema=False)
def enrol_page(request: Request, stage: MfaStage, next: str = "/") -> Response:
    _, user = stage
    if user.totp_enrolled:
        return RedirectResponse(safe_next(next), status_code=303)
    uri = service.start_enrolment(user)
    return render(
        request,
        "mfa_enroll.html",
        {"next": safe_next(next), "qr_svg": _qr_svg(uri), "secret": user.totp_secret},
    )


@router.post("/account/mfa/enroll", include_in_schema=False)
def enrol_submit(
    request: Request, db: DbSession, settings: SettingsDep, stage: MfaStage, form: FormData
) -> Response:
    login_session, user = stage
    next_url = safe_next(form.get("next"))
    if not service.complete_mfa(db, settings, login_session, user, form.get("code", ""), enrolling=True):
        uri = service.start_enrolment(user)
        return render(
            request,
            "mfa_enroll.html",
            {
                "next": next_url,
                "qr_svg": _qr_svg(uri),
                "secret": user.totp_secret,
                "errors": {"code": "That code is not right. Check the clock on your phone."},
            },
            status_code=422,
        )
    response = RedirectResponse(next_url, status_code=303)
    _set_session_cookie(response, request, service.rotate_session_token(login_session))
    return response


# --- re-authentication and own account ---------------------------------------------------


Account = Annotated[Principal, require(Permission.account)]


@router.get("/reauth", include_in_schema=False)
def reauth_page(request: Request, actor: Account, next: str = "/") -> Response:
    return render(
        request, "reauth.html", {"next": safe_next(next), "needs_code": request.state.user.totp_enrolled}
    )


@router.post("/reauth", include_in_schema=False)
def reauth_submit(
    request: Request, db: DbSession, settings: SettingsDep, actor: Account, form: FormData
) -> Response:
    next_url = safe_next(form.get("next"))
    login_session = request.state.login_session
    if not service.reauthenticate(
        db, settings, actor, login_session, form.get("password", ""), form.get("code")
    ):
        return render(
            request,
            "reauth.html",
            {
                "next": next_url,
                "needs_code": request.state.user.totp_enrolled,
                "errors": {"password": "That password (or code) is not right."},
            },
            status_code=422,
        )
    return RedirectResponse(next_url, status_code=303)


@router.get("/account", include_in_schema=False)
def account_page(request: Request, actor: Account) -> Response:
    return render(
        request, "account.html", {"user": request.state.user, "saved": request.query_params.get("saved")}
    )


@router.post("/account/password", include_in_schema=False)
def account_password(request: Request, db: DbSession, actor: Account, form: FormData) -> Response:
    return form_action(
        db,
        lambda: service.change_own_password(
            db, actor, form.get("current_password", ""), form.get("new_password", "")
        ),
        done="/account?saved=password",
        again=lambda errors: render(
            request, "account.html", {"user": request.state.user, "errors": errors}, 422
        ),
    )


# --- staff administration ----------------------------------------------------------------


Admin = Annotated[Principal, require(Permission.user_manage)]
AdminSensitive = Annotated[Principal, require(Permission.user_manage, sensitive=True)]
STAFF_ROLES = list(Role)
ROLE_OPTIONS = [(r.value, r.label) for r in Role]


def _new_user_from_form(db: DbSession, actor: Principal, form: dict[str, str]) -> service.NewUser:
    errors: dict[str, str] = {}
    try:
        role = Role(form.get("role", ""))
    except ValueError:
        errors["role"] = "Choose a role."
        role = Role.nurse
    kind_value = form.get("prescriber_kind") or None
    kind = None
    if kind_value:
        try:
            kind = PrescriberKind(kind_value)
        except ValueError:
            errors["prescriber_kind"] = "Choose physician or nurse practitioner."
    patient_id = None
    if role == Role.patient:
        number = form.get("patient_record_number") or ""
        patient_id = patients.id_by_record_number(db, actor, number) if number.strip() else None
        if patient_id is None:
            errors["patient_record_number"] = "Enter the record number of this person's patient record."
    if errors:
        raise InvalidInput(errors=errors)
    return service.NewUser(
        username=form.get("username", "").strip().lower(),
        full_name=form.get("full_name", ""),
        role=role,
        password=form.get("password", ""),
        email=form.get("email") or None,
        prescriber_kind=kind,
        patient_id=patient_id,
    )


@router.get("/admin/users", include_in_schema=False)
def users_page(request: Request, db: DbSession, actor: Admin) -> Response:
    return render(request, "users.html", {"users": service.list_staff(db, actor)})


@router.get("/admin/users/new", include_in_schema=False)
def user_new_page(request: Request, actor: AdminSensitive) -> Response:
    return render(request, "user_new.html", {"role_options": ROLE_OPTIONS})


@router.post("/admin/users", include_in_schema=False)
def user_create(request: Request, db: DbSession, actor: AdminSensitive, form: FormData) -> Response:
    try:
        user = service.create_user(db, actor, actor.clinic_id, _new_user_from_form(db, actor, form))
    except InvalidInput as exc:
        db.rollback()
        if "patient_id" in exc.errors:
            exc.errors["patient_record_number"] = exc.errors.pop("patient_id")
        values = {k: v for k, v in form.items() if k != "password"}
        return render(
            request,
            "user_new.html",
            {"role_options": ROLE_OPTIONS, "values": values, "errors": exc.errors},
            status_code=422,
        )
    return RedirectResponse(f"/admin/users/{user.id}?created=1", status_code=303)


@router.get("/admin/users/{user_id}", include_in_schema=False)
def user_page(request: Request, db: DbSession, actor: Admin, user_id: RowId) -> Response:
    user = service.staff_user(db, actor, user_id)
    return render(
        request,
        "user_detail.html",
        {
            "user": user,
            "roles": STAFF_ROLES,
            "kinds": list(PrescriberKind),
            "created": request.query_params.get("created"),
        },
    )


@router.post("/admin/users/{user_id}/role", include_in_schema=False)
def user_set_role(
    request: Request, db: DbSession, actor: AdminSensitive, user_id: RowId, form: FormData
) -> Response:
    user = service.staff_user(db, actor, user_id)
    try:
        role = Role(form.get("role", ""))
        kind = PrescriberKind(form["prescriber_kind"]) if form.get("prescriber_kind") else None
    except ValueError as exc:
        raise InvalidInput(errors={"role": "Choose a role and, for prescribers, a kind."}) from exc
    service.set_role(db, actor, user, role, kind)
    return RedirectResponse(f"/admin/users/{user_id}", status_code=303)


@router.post("/admin/users/{user_id}/active", include_in_schema=False)
def user_set_active(
    request: Request, db: DbSession, actor: AdminSensitive, user_id: RowId, form: FormData
) -> Response:
    user = service.staff_user(db, actor, user_id)
    service.set_active(db, actor, user, form.get("active") == "1")
    return RedirectResponse(f"/admin/users/{user_id}", status_code=303)


@router.post("/admin/users/{user_id}/reset-mfa", include_in_schema=False)
def user_reset_mfa(request: Request, db: DbSession, actor: AdminSensitive, user_id: RowId) -> Response:
    service.reset_mfa(db, actor, service.staff_user(db, actor, user_id))
    return RedirectResponse(f"/admin/users/{user_id}", status_code=303)


@router.post("/admin/users/{user_id}/password", include_in_schema=False)
def user_set_password(
    request: Request, db: DbSession, actor: AdminSensitive, user_id: RowId, form: FormData
) -> Response:
    user = service.staff_user(db, actor, user_id)
    service.set_password(db, actor, user, form.get("password", ""))
    return RedirectResponse(f"/admin/users/{user_id}", status_code=303)


# --- API tokens --------------------------------------------------------------------------


Tokens = Annotated[Principal, require(Permission.token_manage)]
TokensSensitive = Annotated[Principal, require(Permission.token_manage, sensitive=True)]


@router.get("/admin/tokens", include_in_schema=False)
def tokens_page(request: Request, db: DbSession, actor: Tokens) -> Response:
    return render(
        request,
        "tokens.html",
        {"tokens": service.list_api_tokens(db, actor), "scopes": token_scope_names()},
    )


@router.post("/admin/tokens", include_in_schema=False)
def token_create(request: Request, db: DbSession, actor: TokensSensitive, form: FormLists) -> Response:
    name = (form.get("name") or [""])[0]
    try:
        token, secret = service.create_api_token(db, actor, name, form.get("scopes", []))
    except InvalidInput as exc:
        db.rollback()
        return render(
            request,
            "tokens.html",
            {
                "tokens": service.list_api_tokens(db, actor),
                "scopes": token_scope_names(),
                "errors": exc.errors,
                "values": {"name": name},
            },
            status_code=422,
        )
    return render(
        request,
        "tokens.html",
        {
            "tokens": service.list_api_tokens(db, actor),
            "scopes": token_scope_names(),
            "new_token": token,
            "new_secret": secret,
        },
    )


@router.post("/admin/tokens/{token_id}/revoke", include_in_schema=False)
def token_revoke(request: Request, db: DbSession, actor: Tokens, token_id: RowId) -> Response:
    service.revoke_api_token(db, actor, token_id)
    return RedirectResponse("/admin/tokens", status_code=303)


# --- JSON API ----------------------------------------------------------------------------


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    full_name: str
    role: str
    prescriber_kind: str | None
    is_active: bool
    totp_enrolled: bool


class UserCreateIn(BaseModel):
    username: str
    full_name: str
    role: Role
    password: str
    email: str | None = None
    prescriber_kind: PrescriberKind | None = None
    patient_id: RowId | None = None


@router.get("/api/v1/users", response_model=list[UserOut], tags=["staff"])
def api_users(db: DbSession, actor: Admin) -> list[User]:
    return service.list_staff(db, actor)


@router.post("/api/v1/users", response_model=UserOut, status_code=201, tags=["staff"])
def api_user_create(db: DbSession, actor: AdminSensitive, body: UserCreateIn) -> User:
    if body.patient_id is not None:
        patients.visible_patient(db, actor, body.patient_id, "user.create")
    return service.create_user(db, actor, actor.clinic_id, service.NewUser(**body.model_dump()))
