"""Registry pages: the clinic's report (registry_read), the de-identified research report and
the de-identified dataset (research_read), each as a page with charts, CSV per table, and a
standalone HTML report."""

from __future__ import annotations

import datetime as dt
import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from starlette.responses import Response

from ketacare.analytics import report as rendering
from ketacare.analytics import service
from ketacare.analytics.registry import Report
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.errors import NotFound
from ketacare.web.deps import DbSession, require
from ketacare.web.templating import render

router = APIRouter()
Director = Annotated[Principal, require(Permission.registry_read)]
Researcher = Annotated[Principal, require(Permission.research_read)]


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _page(request: Request, report: Report, base: str) -> Response:
    figures = {k: json.dumps(v) for k, v in rendering.figures(report).items()}
    return render(
        request,
        "registry.html",
        {"report": report, "figures": figures, "base": base, "notes": rendering.notes(report)},
    )


def _csv(report: Report, table: str) -> Response:
    if table not in report.tables:
        raise NotFound("No such table.")
    body = report.tables[table].frame().to_csv(index=False)
    headers = {"Content-Disposition": f'attachment; filename="registry-{report.scope}-{table}.csv"'}
    return Response(body, media_type="text/csv; charset=utf-8", headers=headers)


def _standalone(report: Report) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="registry-{report.scope}.html"'}
    return Response(rendering.standalone_html(report), media_type="text/html; charset=utf-8", headers=headers)


@router.get("/registry", include_in_schema=False)
def clinic_registry(request: Request, db: DbSession, actor: Director) -> Response:
    return _page(request, service.clinic_report(db, actor, _today()), "/registry")


@router.get("/registry/report.html", include_in_schema=False)
def clinic_registry_html(db: DbSession, actor: Director) -> Response:
    return _standalone(service.clinic_report(db, actor, _today()))


@router.get("/registry/{table}.csv", include_in_schema=False)
def clinic_registry_csv(db: DbSession, actor: Director, table: str) -> Response:
    return _csv(service.clinic_report(db, actor, _today()), table)


@router.get("/research/registry", include_in_schema=False)
def research_registry(request: Request, db: DbSession, actor: Researcher) -> Response:
    return _page(request, service.research_report(db, actor, _today()), "/research/registry")


@router.get("/research/registry/report.html", include_in_schema=False)
def research_registry_html(db: DbSession, actor: Researcher) -> Response:
    return _standalone(service.research_report(db, actor, _today()))


@router.get("/research/registry/{table}.csv", include_in_schema=False)
def research_registry_csv(db: DbSession, actor: Researcher, table: str) -> Response:
    return _csv(service.research_report(db, actor, _today()), table)


@router.get("/research/export.zip", include_in_schema=False)
def research_export(request: Request, db: DbSession, actor: Researcher) -> Response:
    data = service.deidentified(db, actor, request.app.state.settings.secret_key, _today())
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in data.write(Path(tmp)):
            archive.write(path, path.name)
    headers = {"Content-Disposition": 'attachment; filename="ketacare-deidentified.zip"'}
    return Response(buffer.getvalue(), media_type="application/zip", headers=headers)
