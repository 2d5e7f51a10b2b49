"""Jinja2 set-up shared by every feature: template folders, globals, filters, ``render``."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

from ketacare.auth.permissions import ROLE_PERMISSIONS, Permission
from ketacare.auth.principal import Principal
from ketacare.auth.roles import ROLE_LABELS, Role
from ketacare.features import FEATURES
from ketacare.web import csrf

PACKAGE_DIR = Path(__file__).resolve().parent.parent

DISCLAIMER = (
    "KetaCare is decision support for licensed clinicians. It does not replace their "
    "judgement, and nothing here is medical advice for an individual patient."
)

NAV: list[tuple[str, str, Permission]] = [
    ("Dashboard", "/", Permission.dashboard),
    ("Patients", "/patients", Permission.patient_read),
    ("My record", "/me", Permission.patient_self),
    ("My plan", "/my/plans", Permission.consent_sign),
    ("Calendar", "/planning/calendar", Permission.plan_read),
    ("Sessions", "/sessions", Permission.session_read),
    ("Live board", "/sessions-board", Permission.session_read),
    ("Duty", "/planning/duty", Permission.plan_read),
    ("Protocols", "/planning/protocols", Permission.plan_read),
    ("Prices", "/planning/prices", Permission.planning_admin),
    ("Alarm and discharge settings", "/alarm-settings", Permission.session_admin),
    ("Controlled substances", "/ledger", Permission.ledger_read),
    ("Safety", "/safety", Permission.safety_read),
    ("Registry", "/registry", Permission.registry_read),
    ("Research registry", "/research/registry", Permission.research_read),
    ("Pain diary", "/me/diary", Permission.patient_self),
    ("Credentials", "/credentials", Permission.credential_read),
    ("Requests", "/directory/queue", Permission.bookings_read),
    ("Clinic profile", "/directory/profile", Permission.directory_manage),
    ("Review", "/my/review", Permission.review_write),
    ("Staff", "/admin/users", Permission.user_manage),
    ("API tokens", "/admin/tokens", Permission.token_manage),
    ("FHIR exchange", "/fhir-exchange", Permission.fhir_read),
    ("Audit trail", "/audit", Permission.audit_read),
    ("Account", "/account", Permission.account),
]


def _role_label(value: str) -> str:
    return ROLE_LABELS[Role(value)] if value in {r.value for r in Role} else value


def _local_time(value: dt.datetime | None, zone: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(zoneinfo.ZoneInfo(zone)).strftime(fmt)


@lru_cache(maxsize=8)
def build_templates(clinic_time_zone: str) -> Jinja2Templates:
    """One environment per time zone, shared by every app built in the process (a new one
    compiles every template again)."""
    loader = ChoiceLoader(
        [
            FileSystemLoader(str(PACKAGE_DIR / name.replace(".", "/") / "templates"))
            for name in FEATURES
            if (PACKAGE_DIR / name.replace(".", "/") / "templates").is_dir()
        ]
    )
    env = Environment(loader=loader, autoescape=select_autoescape(["html"]), auto_reload=False)
    env.globals["DISCLAIMER"] = DISCLAIMER
    env.globals["csrf_token"] = csrf.form_token
    env.globals["CSRF_FIELD"] = csrf.CSRF_FIELD
    env.filters["role_label"] = lambda value: (
        ROLE_LABELS.get(Role(value), value) if value in set(Role) else value
    )
    env.filters["local"] = lambda value, fmt="%Y-%m-%d %H:%M": _local_time(value, clinic_time_zone, fmt)
    return Jinja2Templates(env=env)


def nav_for(principal: Principal | None) -> list[tuple[str, str]]:
    if principal is None or principal.role is None:
        return []
    held = ROLE_PERMISSIONS[principal.role]
    return [(label, href) for label, href, needed in NAV if needed in held]


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    principal: Principal | None = getattr(request.state, "principal", None)
    full = {
        "principal": principal,
        "nav": nav_for(principal),
        "path": request.url.path,
        "values": {},
        "errors": {},
        **(context or {}),
    }
    response: HTMLResponse = templates.TemplateResponse(request, template, full, status_code=status_code)
    return response
