"""The dashboard for each role, and the health check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import plotly
from fastapi import APIRouter, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.db import ping
from ketacare.patients import service as patients
from ketacare.web.deps import DbSession, public, require
from ketacare.web.templating import render

router = APIRouter()


@router.get("/healthz", include_in_schema=False, dependencies=[public()])
def healthz(db: DbSession) -> Response:
    ping(db)
    return JSONResponse({"status": "ok"})


@router.get("/api/docs", include_in_schema=False, dependencies=[public()])
def api_docs() -> Response:
    """Swagger UI from vendored files, started by a script file rather than an inline script,
    so the page carries the same security headers (CSP included) as every other page."""
    return HTMLResponse(API_DOCS_HTML)


API_DOCS_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="/static/swagger/swagger-ui.css">
<link rel="icon" href="/static/favicon.svg">
<title>KetaCare API</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="/static/swagger/swagger-ui-bundle.js"></script>
<script src="/static/swagger/swagger-init.js"></script>
</body>
</html>
"""


PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


@router.get("/vendor/plotly.min.js", include_in_schema=False, dependencies=[public()])
def plotly_js() -> Response:
    """Plotly's JavaScript from the installed package: charts work offline, no CDN."""
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/", include_in_schema=False)
def dashboard(
    request: Request, db: DbSession, actor: Annotated[Principal, require(Permission.dashboard)]
) -> Response:
    context: dict[str, object] = {"clinic": auth.clinic(db, actor.clinic_id)}
    if actor.role in (Role.prescriber, Role.nurse, Role.clinic_admin):
        context["patient_count"] = patients.count(db, actor)
        context["recent_patients"] = patients.recently_added(db, actor)
        context["today"] = clinic_time.today(db, actor.clinic_id)
        context["age_years"] = patients.age_years
    if actor.role == Role.clinic_admin:
        context["staff_counts"] = auth.staff_counts(db, actor.clinic_id)
        context["failed_logins"] = auth.recent_failed_logins(db, actor.clinic_id)
    if actor.role == Role.researcher:
        context["condition_counts"] = patients.condition_counts(db, actor)
        context["small_cell"] = patients.SMALL_CELL
    if actor.role == Role.auditor:
        entries, total = audit.search(db, audit.AuditFilter(clinic_id=actor.clinic_id), limit=10, offset=0)
        context["audit_recent"] = entries
        context["audit_total"] = total
    return render(request, "dashboard.html", context)
